package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	lprecord "github.com/libp2p/go-libp2p/core/record"

	"github.com/mycel-net/mycel/train"
)

// Limits on a job, checked on every job read from the network.
const (
	// MaxJobBytes bounds a sealed job, envelope included.
	MaxJobBytes = 64 << 10
	// MaxSpecBytes bounds a job file.
	MaxSpecBytes = 32 << 10
)

// JobDomain and JobCodec tag the signed envelope of a job.
const (
	JobDomain = "mycel-train-job"
	JobCodec  = "/mycel/train-job/1"
)

// Job is a fine-tuning job as published on the swarm: the job file, who
// submitted it and when, signed by the submitter's libp2p key. Anyone may
// relay the sealed bytes unchanged; they remain the submitter's word.
//
// A job is stopped by its submitter alone: the same job (the same spec
// and Created, so the same ID) sealed again with Stopped set. The same
// fields sealed by another key are another job, with another submitter and
// another ID.
type Job struct {
	// ID names the job: IDOf(Submitter, Created, Spec), derived when the
	// job is sealed or opened, never read from the wire.
	ID string
	// Spec is the job file (TOML); it parses with train.ParseJob and names
	// its model and data by CID.
	Spec []byte
	// Submitter signed the job; set from the signing key.
	Submitter peer.ID
	// Created is when the submitter made the job (to the nanosecond).
	Created time.Time
	// Stopped is zero while the job runs, and when its submitter stopped
	// it after.
	Stopped time.Time
}

// New makes a job of spec created at created. The spec must parse
// (train.ParseJob) and name its model and data by CID, so that
// volunteers can fetch them. Seal signs it.
func New(spec []byte, created time.Time) (*Job, error) {
	j := &Job{Spec: bytes.Clone(spec), Created: time.Unix(0, created.UnixNano())}
	if err := j.check(); err != nil {
		return nil, err
	}
	return j, nil
}

// check validates every field but the submitter and the ID.
func (j *Job) check() error {
	switch {
	case len(j.Spec) == 0:
		return errors.New("job: empty job file")
	case len(j.Spec) > MaxSpecBytes:
		return fmt.Errorf("job: job file of %d bytes (max %d)", len(j.Spec), MaxSpecBytes)
	case !utf8.Valid(j.Spec):
		return errors.New("job: job file is not UTF-8")
	case j.Created.UnixNano() <= 0:
		return fmt.Errorf("job: created at %v, before 1970", j.Created)
	case !j.Stopped.IsZero() && j.Stopped.Before(j.Created):
		return fmt.Errorf("job: stopped at %v, before it was created (%v)", j.Stopped, j.Created)
	}
	tj, err := train.ParseJob(j.Spec)
	if err != nil {
		return fmt.Errorf("job: %w", err)
	}
	if _, err := cid.Decode(tj.Model); err != nil {
		return fmt.Errorf("job: job file: model: %q is not a CID (volunteers fetch the model by CID): %w", tj.Model, err)
	}
	if _, err := cid.Decode(tj.Data); err != nil {
		return fmt.Errorf("job: job file: data: %q is not a CID (volunteers fetch the data by CID): %w", tj.Data, err)
	}
	return nil
}

// Train returns the parsed job file.
func (j *Job) Train() (*train.Job, error) { return train.ParseJob(j.Spec) }

// IDOf derives a job's ID: "j" and the lowercase base32 (RFC 4648
// alphabet, no padding) of the first 16 bytes of
// SHA-256(submitter ‖ created ‖ spec), where submitter is the peer ID's
// bytes (its multihash), created the Unix time in nanoseconds as 8 bytes
// big-endian, and spec the job file's bytes: 27 characters.
func IDOf(submitter peer.ID, created time.Time, spec []byte) string {
	h := sha256.New()
	h.Write([]byte(submitter))
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(created.UnixNano()))
	h.Write(t[:])
	h.Write(spec)
	return "j" + idEncoding.EncodeToString(h.Sum(nil)[:16])
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Seal signs the job with key into a libp2p signed envelope, and sets
// Submitter (key's peer) and ID. Sealing with Stopped set stops the job,
// if key is its submitter's.
func (j *Job) Seal(key crypto.PrivKey) ([]byte, error) {
	if err := j.check(); err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("seal job: %w", err)
	}
	env, err := lprecord.Seal(&payload{Spec: string(j.Spec), Created: j.Created.UnixNano(), Stopped: unixNano(j.Stopped)}, key)
	if err != nil {
		return nil, fmt.Errorf("seal job: %w", err)
	}
	b, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("seal job: %w", err)
	}
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("seal job: %d bytes (max %d)", len(b), MaxJobBytes)
	}
	j.Submitter, j.ID = id, IDOf(id, j.Created, j.Spec)
	return b, nil
}

// Open checks a sealed job (size, envelope, signature, domain and payload
// type, every field, the job file) and returns it with Submitter set from
// the signing key and ID derived.
func Open(b []byte) (*Job, error) {
	if len(b) > MaxJobBytes {
		return nil, fmt.Errorf("job of %d bytes (max %d)", len(b), MaxJobBytes)
	}
	var p payload
	env, err := lprecord.ConsumeTypedEnvelope(b, &p)
	if err != nil {
		return nil, fmt.Errorf("job: %w", err)
	}
	if !bytes.Equal(env.PayloadType, []byte(JobCodec)) {
		return nil, fmt.Errorf("job: payload type %q, want %q", env.PayloadType, JobCodec)
	}
	id, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("job: signer: %w", err)
	}
	j := &Job{Spec: []byte(p.Spec), Submitter: id, Created: time.Unix(0, p.Created)}
	if p.Stopped != 0 {
		j.Stopped = time.Unix(0, p.Stopped)
	}
	if err := j.check(); err != nil {
		return nil, err
	}
	j.ID = IDOf(id, j.Created, j.Spec)
	return j, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// payload is a job's signed payload: a JSON object.
type payload struct {
	// Spec is the job file.
	Spec string `json:"spec"`
	// Created and Stopped are Unix times in nanoseconds; Stopped 0: the
	// job runs.
	Created int64 `json:"created"`
	Stopped int64 `json:"stopped,omitempty"`
}

// Domain, Codec, MarshalRecord and UnmarshalRecord make *payload a libp2p
// lprecord.Record.
func (*payload) Domain() string { return JobDomain }

func (*payload) Codec() []byte { return []byte(JobCodec) }

func (p *payload) MarshalRecord() ([]byte, error) { return json.Marshal(p) }

func (p *payload) UnmarshalRecord(b []byte) error {
	if len(b) > MaxJobBytes {
		return fmt.Errorf("job payload of %d bytes (max %d)", len(b), MaxJobBytes)
	}
	var q payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return fmt.Errorf("job payload: %w", err)
	}
	if dec.More() {
		return errors.New("job payload: trailing data")
	}
	*p = q
	return nil
}
