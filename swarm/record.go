package swarm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p/records"
)

// State is where a server stands with a model.
type State string

const (
	// StateServing: the server answers OPEN for its span.
	StateServing State = "serving"
	// StateJoining: the server is loading the span it announced; it does
	// not serve yet, but others count it when they choose their spans, so
	// two nodes do not rush to the same gap.
	StateJoining State = "joining"
	// StateLeaving: the server withdrew; forget it.
	StateLeaving State = "leaving"
)

// Limits on a server record, checked on every record read from the
// network.
const (
	// MaxRecordBytes bounds a signed record (envelope included).
	MaxRecordBytes = 4 << 10
	// MaxRecordTTL bounds how far in the future a record may expire, so
	// that a record cannot outlive its server by long.
	MaxRecordTTL    = time.Hour
	maxRecordAddrs  = 16
	maxModelID      = records.MaxTopic
	maxRecordLayers = 1 << 12
	maxSoftware     = 64
)

// RecordDomain and RecordCodec tag the signed envelope of a ServerRecord
// (libp2p's signed envelopes: the signature covers the domain, the codec
// and the payload).
const (
	RecordDomain = "mycel-server-record"
	RecordCodec  = "/mycel/server-record/1"
)

// ServerRecord is a server's announcement for one model: which layers it
// serves and how fast. Its owner signs it with the peer's libp2p key; a
// record passes from peer to peer unchanged and anyone can check it.
type ServerRecord struct {
	// Peer is the server; set from the signing key when a record is
	// opened, never trusted from the payload.
	Peer peer.ID `json:"-"`
	// Model is the model's id (its manifest CID).
	Model string `json:"model"`
	// Span is the layers served.
	Span Span `json:"span"`
	// Experts are the routed experts of the span's layers of experts
	// that the server holds (a bitmap, base64 in JSON); absent (nil):
	// every one. The server runs the others' rows on their holders.
	Experts model.ExpertSet `json:"experts,omitempty"`
	// ExpertLoad is, for each routed expert, how often the router of
	// this server's layers chose it over the last minute, averaged over
	// the span's layers of experts: one byte an expert on a log scale
	// (LoadByte; base64 in JSON). Absent: no rows routed, or a dense
	// model. Servers choosing experts to hold weigh it (ChooseExperts).
	ExpertLoad []byte `json:"expert_load,omitempty"`
	// Throughput is decode tokens per second through the whole span, one
	// session at a time, as the server measured it.
	Throughput float64 `json:"throughput"`
	// FreePositions is how many more KV-cache positions (for the whole
	// span) the server's budget has room for.
	FreePositions int `json:"free_positions"`
	// MaxPositions is the most positions one session may hold.
	MaxPositions int `json:"max_positions"`
	// State is serving, joining or leaving.
	State State `json:"state"`
	// Addrs are where the server listens.
	Addrs []ma.Multiaddr `json:"-"`
	// Seq orders the records of one peer: a higher one replaces a lower.
	Seq uint64 `json:"seq"`
	// Expires is when the record stops being valid.
	Expires time.Time `json:"-"`
	// Software is the server's version string.
	Software string `json:"software,omitempty"`
}

// recordJSON is the payload as it travels: addresses as strings, expiry
// as Unix seconds.
type recordJSON struct {
	ServerRecord
	Addrs   []string `json:"addrs"`
	Expires int64    `json:"expires"`
}

// Domain, Codec, MarshalRecord and UnmarshalRecord make *ServerRecord a
// libp2p lprecord.Record.
func (*ServerRecord) Domain() string { return RecordDomain }

// Codec is the payload type of the signed envelope.
func (*ServerRecord) Codec() []byte { return []byte(RecordCodec) }

// MarshalRecord encodes the payload as JSON.
func (r *ServerRecord) MarshalRecord() ([]byte, error) {
	j := recordJSON{ServerRecord: *r, Expires: r.Expires.Unix()}
	for _, a := range r.Addrs {
		j.Addrs = append(j.Addrs, a.String())
	}
	return json.Marshal(j)
}

// UnmarshalRecord decodes and checks a payload.
func (r *ServerRecord) UnmarshalRecord(b []byte) error {
	if len(b) > MaxRecordBytes {
		return fmt.Errorf("server record of %d bytes (max %d)", len(b), MaxRecordBytes)
	}
	var j recordJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("server record: %w", err)
	}
	if len(j.Addrs) > maxRecordAddrs {
		return fmt.Errorf("server record: %d addresses (max %d)", len(j.Addrs), maxRecordAddrs)
	}
	rec := j.ServerRecord
	rec.Addrs = nil
	for _, s := range j.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("server record: address %q: %w", s, err)
		}
		rec.Addrs = append(rec.Addrs, a)
	}
	rec.Expires = time.Unix(j.Expires, 0)
	if err := rec.check(); err != nil {
		return err
	}
	*r = rec
	return nil
}

// check validates the fields a payload sets.
func (r *ServerRecord) check() error {
	switch {
	case r.Model == "" || len(r.Model) > maxModelID:
		return fmt.Errorf("server record: model id of %d bytes", len(r.Model))
	case r.Span.First < 0 || r.Span.Last > maxRecordLayers || r.Span.First >= r.Span.Last:
		return fmt.Errorf("server record: bad span %s", r.Span)
	case math.IsNaN(r.Throughput) || math.IsInf(r.Throughput, 0) || r.Throughput < 0:
		return fmt.Errorf("server record: bad throughput %v", r.Throughput)
	case r.FreePositions < 0 || r.MaxPositions < 0:
		return errors.New("server record: negative positions")
	case r.State != StateServing && r.State != StateJoining && r.State != StateLeaving:
		return fmt.Errorf("server record: unknown state %q", r.State)
	case len(r.Software) > maxSoftware:
		return errors.New("server record: software string too long")
	case r.Experts != nil && (len(r.Experts) > model.MaxExperts/8 || r.Experts.Count(len(r.Experts)*8) == 0):
		return fmt.Errorf("server record: expert set of %d bytes holding %d experts (1 to %d)", len(r.Experts), r.Experts.Count(len(r.Experts)*8), model.MaxExperts)
	case len(r.ExpertLoad) > model.MaxExperts:
		return fmt.Errorf("server record: load of %d experts (max %d)", len(r.ExpertLoad), model.MaxExperts)
	}
	return nil
}

// serverRecords is the kind of ServerRecord for the record machinery
// (package p2p/records): its limits, its checks, and its withdrawal.
var serverRecords = &records.Kind[ServerRecord, *ServerRecord]{
	Name:     "server record",
	MaxBytes: MaxRecordBytes,
	MaxTTL:   MaxRecordTTL,
	MaxAddrs: maxRecordAddrs,
	Check:    (*ServerRecord).check,
	Leave: func(r *ServerRecord, model string) {
		r.Model, r.State = model, StateLeaving
		if r.Span.Len() <= 0 {
			r.Span = Span{0, 1}
		}
	},
}

// Topic is the record's model: a directory keeps server records by model.
func (r *ServerRecord) Topic() string { return r.Model }

// Leaving says the record withdraws its server.
func (r *ServerRecord) Leaving() bool { return r.State == StateLeaving }

// Stamp returns the fields the record machinery reads and fills in.
func (r *ServerRecord) Stamp() records.Stamp {
	return records.Stamp{Peer: r.Peer, Seq: r.Seq, Expires: r.Expires, Addrs: r.Addrs}
}

// SetStamp sets the fields the record machinery fills in.
func (r *ServerRecord) SetStamp(s records.Stamp) {
	r.Peer, r.Seq, r.Expires, r.Addrs = s.Peer, s.Seq, s.Expires, s.Addrs
}

// Valid says whether the record can be used at now: not expired and not
// too far in the future.
func (r *ServerRecord) Valid(now time.Time) bool { return serverRecords.Valid(r.Stamp(), now) }

// SignRecord seals r with key; r.Peer is set to key's peer.
func SignRecord(r *ServerRecord, key crypto.PrivKey) ([]byte, error) {
	b, err := serverRecords.Seal(r, key)
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	return b, nil
}

// OpenRecord checks a signed record and returns it with Peer set to its
// signer. It does not check expiry (see Valid).
func OpenRecord(b []byte) (*ServerRecord, error) {
	r, err := serverRecords.Open(b)
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	return r, nil
}
