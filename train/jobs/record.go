package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/p2p/records"
)

// Limits on a node record, checked on every record read from the network.
const (
	// MaxRecordBytes bounds a signed node record, envelope included.
	MaxRecordBytes = 256 << 10
	// MaxCarried bounds the jobs one node record holds.
	MaxCarried = 32
	// MaxRecordTTL bounds how far ahead a node record may expire: the jobs
	// of a node that stops announcing are forgotten within it, unless
	// another node carries them.
	MaxRecordTTL   = 30 * time.Minute
	maxRecordAddrs = 16
	// recordSlack is room in a node record for all but its jobs: the
	// envelope (key, signature), the addresses and the other fields.
	recordSlack = 8 << 10
)

// NodeDomain and NodeCodec tag the signed envelope of a node record.
const (
	NodeDomain = "mycel-train-jobs"
	NodeCodec  = "/mycel/train-jobs/1"
)

// nodeRecord is what a node announces on the jobs topic: the sealed jobs
// it carries (those it submitted and those it trains).
type nodeRecord struct {
	// Peer is the node; set from the signing key.
	Peer peer.ID `json:"-"`
	// Scope is the record's topic, jobsTopic.
	Scope string `json:"topic"`
	// Jobs are sealed jobs, at most MaxCarried, of distinct IDs.
	Jobs [][]byte `json:"jobs,omitempty"`
	// Left withdraws the node: it carries no job.
	Left bool `json:"leaving,omitempty"`

	Addrs   []ma.Multiaddr `json:"-"`
	Seq     uint64         `json:"seq"`
	Expires time.Time      `json:"-"`

	// opened are Jobs opened, in the same order (check sets them).
	opened []*Job
}

type nodeJSON struct {
	nodeRecord
	Addrs   []string `json:"addrs"`
	Expires int64    `json:"expires"`
}

// Domain, Codec, MarshalRecord and UnmarshalRecord make *nodeRecord a
// libp2p lprecord.Record.
func (*nodeRecord) Domain() string { return NodeDomain }

func (*nodeRecord) Codec() []byte { return []byte(NodeCodec) }

func (r *nodeRecord) MarshalRecord() ([]byte, error) {
	j := nodeJSON{nodeRecord: *r, Expires: r.Expires.Unix()}
	for _, a := range r.Addrs {
		j.Addrs = append(j.Addrs, a.String())
	}
	return json.Marshal(j)
}

func (r *nodeRecord) UnmarshalRecord(b []byte) error {
	if len(b) > MaxRecordBytes {
		return fmt.Errorf("jobs record of %d bytes (max %d)", len(b), MaxRecordBytes)
	}
	var j nodeJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("jobs record: %w", err)
	}
	if len(j.Addrs) > maxRecordAddrs {
		return fmt.Errorf("jobs record: %d addresses (max %d)", len(j.Addrs), maxRecordAddrs)
	}
	rec := j.nodeRecord
	rec.Addrs = nil
	for _, s := range j.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("jobs record: address %q: %w", s, err)
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

// check validates the record and opens its jobs into r.opened: a record
// whose jobs do not all open is refused whole.
func (r *nodeRecord) check() error {
	switch {
	case r.Scope != jobsTopic:
		return fmt.Errorf("jobs record: topic %q, want %q", r.Scope, jobsTopic)
	case len(r.Jobs) > MaxCarried:
		return fmt.Errorf("jobs record: %d jobs (max %d)", len(r.Jobs), MaxCarried)
	case r.Left && len(r.Jobs) > 0:
		return fmt.Errorf("jobs record: leaving with %d jobs", len(r.Jobs))
	}
	opened := make([]*Job, 0, len(r.Jobs))
	seen := make(map[string]bool, len(r.Jobs))
	for i, b := range r.Jobs {
		j, err := Open(b)
		if err != nil {
			return fmt.Errorf("jobs record: job %d: %w", i, err)
		}
		if seen[j.ID] {
			return fmt.Errorf("jobs record: job %s twice", j.ID)
		}
		seen[j.ID] = true
		opened = append(opened, j)
	}
	r.opened = opened
	return nil
}

// recordCost is what a sealed job takes in a node record's payload: its
// base64 and the JSON around it.
func recordCost(sealed []byte) int { return (len(sealed)+2)/3*4 + 3 }

// nodes is the kind of nodeRecord for the record machinery.
var nodes = &records.Kind[nodeRecord, *nodeRecord]{
	Name:     "jobs record",
	MaxBytes: MaxRecordBytes,
	MaxTTL:   MaxRecordTTL,
	MaxAddrs: maxRecordAddrs,
	Check:    (*nodeRecord).check,
	Leave: func(r *nodeRecord, topic string) {
		*r = nodeRecord{Scope: topic, Left: true}
	},
}

// Topic is the record's topic, jobsTopic.
func (r *nodeRecord) Topic() string { return r.Scope }

// Leaving says the record withdraws its node.
func (r *nodeRecord) Leaving() bool { return r.Left }

// Stamp returns the fields the record machinery reads and fills in.
func (r *nodeRecord) Stamp() records.Stamp {
	return records.Stamp{Peer: r.Peer, Seq: r.Seq, Expires: r.Expires, Addrs: r.Addrs}
}

// SetStamp sets the fields the record machinery fills in.
func (r *nodeRecord) SetStamp(s records.Stamp) {
	r.Peer, r.Seq, r.Expires, r.Addrs = s.Peer, s.Seq, s.Expires, s.Addrs
}
