package collab

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/p2p/records"
)

// Limits on a member record, checked on every record read from the
// network.
const (
	// MaxRecordBytes bounds a signed member record, envelope included.
	MaxRecordBytes = 16 << 10
	// MaxRoundMembers bounds the members of a round a record names.
	MaxRoundMembers = 200
	// MaxLossPoints bounds the loss curve a record carries.
	MaxLossPoints = 64
	// MaxRecordTTL bounds how far ahead a member record may expire: a
	// member that stops announcing is forgotten within it.
	MaxRecordTTL   = 2 * time.Minute
	maxRecordAddrs = 16
	maxRound       = min(1<<40, math.MaxInt)
)

// RecordDomain and RecordCodec tag the signed envelope of a Member record.
const (
	RecordDomain = "mycel-train-member"
	RecordCodec  = "/mycel/train-member/1"
)

// Member is what a peer training a job announces on the job's topic,
// again every heartbeat: where it stands, so that the members of a round
// agree on who takes part, a peer behind or astray knows it, and a peer
// that joins knows where to get the state. Its owner signs it with the
// peer's libp2p key.
type Member struct {
	// Peer is the member; set from the signing key, never from the
	// payload.
	Peer peer.ID `json:"-"`
	// Job is the job's ID, the record's topic.
	Job string `json:"job"`
	// Round is the round the member is ready for: the optimizer steps
	// done (sync) or the outer rounds done (DiLoCo).
	Round int `json:"round"`
	// Attempt counts the failed tries of Round: the members of a try
	// agree on it, and a member that sees a higher one moves to it.
	Attempt int `json:"attempt,omitempty"`
	// State is the hash of the member's parameters at the start of Round
	// (train.Hash), hex; members of a round hold the same.
	State string `json:"state"`
	// Checkpoint is the CID of the newest checkpoint the member holds and
	// serves, made at the start of round CheckpointRound; empty: none.
	Checkpoint      string `json:"checkpoint,omitempty"`
	CheckpointRound int    `json:"checkpoint_round,omitempty"`
	// Start, when set, says the member has started Round (at Attempt)
	// with these members: the others of the set take part with the same
	// set rather than one of their own, so that a member that saw a
	// change of the group (a peer joining, one gone) later than another
	// does not split the round.
	Start []peer.ID `json:"start,omitempty"`
	// Inner is the CID of the member's inner state (DiLoCo: its AdamW
	// state and error-feedback residual, a checkpoint written by
	// train.WriteInnerCheckpoint) at the start of round InnerRound, try
	// InnerAttempt, where it is checked: its verifier replays the round
	// from it. Empty: none.
	Inner        string `json:"inner,omitempty"`
	InnerRound   int    `json:"inner_round,omitempty"`
	InnerAttempt int    `json:"inner_attempt,omitempty"`
	// Joining, above 0, says the peer has no state of the group's yet and
	// asks to join: the members make a checkpoint at the start of the
	// round they stand at and wait for it. It names the first round the
	// peer lacks.
	Joining int `json:"joining,omitempty"`
	// Rate is the member's training rate, tokens per second.
	Rate float64 `json:"rate,omitempty"`
	// Loss is the group's training loss as the member saw it, as
	// [step, loss] pairs, oldest first: at most MaxLossPoints, the older
	// ones thinned out as the job goes on.
	Loss [][2]float64 `json:"loss,omitempty"`
	// Verdicts are the member's checks of the job's last round (DiLoCo),
	// which has no round after it to refuse a member found wrong in: the
	// others wait for them before they end the job.
	Verdicts []Verdict `json:"verdicts,omitempty"`
	// Left withdraws the member from the job.
	Left bool `json:"leaving,omitempty"`

	Addrs   []ma.Multiaddr `json:"-"`
	Seq     uint64         `json:"seq"`
	Expires time.Time      `json:"-"`
}

// Verdict is a member's check of another's work in the last round: the
// round and try, which of the round's checks (0: its own work; 1: with
// Overlap, the work of the round before, averaged in it), the member
// checked, and why its work was found wrong ("": it was found right).
type Verdict struct {
	Round   int     `json:"round"`
	Attempt int     `json:"attempt,omitempty"`
	Check   int     `json:"check,omitempty"`
	Peer    peer.ID `json:"peer"`
	Wrong   string  `json:"wrong,omitempty"`
}

// maxVerdicts and maxVerdictReason bound a record's verdicts.
const (
	maxVerdicts      = 2
	maxVerdictReason = 512
)

type memberJSON struct {
	Member
	Addrs   []string `json:"addrs"`
	Expires int64    `json:"expires"`
}

// Domain, Codec, MarshalRecord and UnmarshalRecord make *Member a libp2p
// lprecord.Record.
func (*Member) Domain() string { return RecordDomain }

// Codec is the payload type of the signed envelope.
func (*Member) Codec() []byte { return []byte(RecordCodec) }

// MarshalRecord encodes the payload as JSON.
func (m *Member) MarshalRecord() ([]byte, error) {
	j := memberJSON{Member: *m, Expires: m.Expires.Unix()}
	for _, a := range m.Addrs {
		j.Addrs = append(j.Addrs, a.String())
	}
	return json.Marshal(j)
}

// UnmarshalRecord decodes and checks a payload.
func (m *Member) UnmarshalRecord(b []byte) error {
	if len(b) > MaxRecordBytes {
		return fmt.Errorf("member record of %d bytes (max %d)", len(b), MaxRecordBytes)
	}
	var j memberJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("member record: %w", err)
	}
	if len(j.Addrs) > maxRecordAddrs {
		return fmt.Errorf("member record: %d addresses (max %d)", len(j.Addrs), maxRecordAddrs)
	}
	rec := j.Member
	rec.Addrs = nil
	for _, s := range j.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("member record: address %q: %w", s, err)
		}
		rec.Addrs = append(rec.Addrs, a)
	}
	rec.Expires = time.Unix(j.Expires, 0)
	if err := rec.check(); err != nil {
		return err
	}
	*m = rec
	return nil
}

// check validates the fields a payload sets.
func (m *Member) check() error {
	switch {
	case m.Job == "" || len(m.Job) > records.MaxTopic:
		return fmt.Errorf("member record: job id of %d bytes", len(m.Job))
	case m.Round < 0 || m.Round > maxRound || m.CheckpointRound < 0 || m.CheckpointRound > maxRound || m.Joining < 0 || m.Joining > maxRound || m.Attempt < 0 || m.Attempt > maxRound:
		return fmt.Errorf("member record: round %d, checkpoint round %d, joining %d", m.Round, m.CheckpointRound, m.Joining)
	case m.InnerRound < 0 || m.InnerRound > maxRound || m.InnerAttempt < 0 || m.InnerAttempt > maxRound:
		return fmt.Errorf("member record: inner state of round %d, attempt %d", m.InnerRound, m.InnerAttempt)
	case m.Rate < 0 || m.Rate != m.Rate || m.Rate > 1e12:
		return fmt.Errorf("member record: rate %v", m.Rate)
	case len(m.Loss) > MaxLossPoints:
		return fmt.Errorf("member record: %d loss points (max %d)", len(m.Loss), MaxLossPoints)
	case len(m.Start) > MaxRoundMembers:
		return fmt.Errorf("member record: a round of %d members (max %d)", len(m.Start), MaxRoundMembers)
	case len(m.Start) > 0 && m.State == "":
		return fmt.Errorf("member record: a round started without a state")
	case len(m.Verdicts) > maxVerdicts:
		return fmt.Errorf("member record: %d verdicts (max %d)", len(m.Verdicts), maxVerdicts)
	}
	for _, v := range m.Verdicts {
		if v.Round < 0 || v.Round > maxRound || v.Attempt < 0 || v.Attempt > maxRound || v.Check < 0 || v.Check >= maxVerdicts ||
			v.Peer == "" || len(v.Wrong) > maxVerdictReason {
			return fmt.Errorf("member record: verdict on %q of round %d, attempt %d, check %d, with a reason of %d bytes", v.Peer, v.Round, v.Attempt, v.Check, len(v.Wrong))
		}
	}
	for i, pt := range m.Loss {
		if pt[0] < 0 || pt[0] > maxRound || pt[0] != math.Trunc(pt[0]) || math.IsNaN(pt[1]) || math.IsInf(pt[1], 0) || i > 0 && pt[0] <= m.Loss[i-1][0] {
			return fmt.Errorf("member record: loss point %d (%v, %v): steps must rise and losses be finite", i, pt[0], pt[1])
		}
	}
	for i, p := range m.Start {
		if p == "" || i > 0 && p <= m.Start[i-1] {
			return fmt.Errorf("member record: the round's members are not sorted and distinct")
		}
	}
	if m.State != "" {
		if b, err := hex.DecodeString(m.State); err != nil || len(b) != 32 {
			return fmt.Errorf("member record: state %q is not a hex SHA-256", m.State)
		}
	}
	if m.Checkpoint != "" {
		if _, err := cid.Decode(m.Checkpoint); err != nil {
			return fmt.Errorf("member record: checkpoint %q: %w", m.Checkpoint, err)
		}
	}
	if m.Inner != "" {
		if _, err := cid.Decode(m.Inner); err != nil {
			return fmt.Errorf("member record: inner state %q: %w", m.Inner, err)
		}
	}
	return nil
}

// members is the kind of Member for the record machinery.
var members = &records.Kind[Member, *Member]{
	Name:     "member record",
	MaxBytes: MaxRecordBytes,
	MaxTTL:   MaxRecordTTL,
	MaxAddrs: maxRecordAddrs,
	Check:    (*Member).check,
	Leave: func(m *Member, job string) {
		*m = Member{Job: job, Left: true}
	},
}

// Topic is the record's job.
func (m *Member) Topic() string { return m.Job }

// Leaving says the record withdraws its member.
func (m *Member) Leaving() bool { return m.Left }

// Stamp returns the fields the record machinery reads and fills in.
func (m *Member) Stamp() records.Stamp {
	return records.Stamp{Peer: m.Peer, Seq: m.Seq, Expires: m.Expires, Addrs: m.Addrs}
}

// SetStamp sets the fields the record machinery fills in.
func (m *Member) SetStamp(s records.Stamp) {
	m.Peer, m.Seq, m.Expires, m.Addrs = s.Peer, s.Seq, s.Expires, s.Addrs
}
