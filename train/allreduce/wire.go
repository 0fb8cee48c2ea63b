package allreduce

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/mycel-net/mycel/p2p/wire"
)

// Limits of /mycel/allreduce/2 (docs/protocol.md).
const (
	// MaxMembers is the most members a round may have.
	MaxMembers = 256
	// MaxRoundID bounds a round's ID in bytes.
	MaxRoundID = 256
	// MaxElements bounds the length of the averaged vector.
	MaxElements = 1<<31 - 1
	// MaxHeader bounds every frame but a data frame: a data frame's
	// length is what the receiver's own round says for that part, exactly.
	MaxHeader = 64 << 10
	// MaxReason bounds the reason given for a member left out of a part,
	// and maxErrorText an error message.
	MaxReason    = 200
	maxErrorText = 512
)

// msgType is the first byte of every header frame.
type msgType uint8

const (
	msgContrib msgType = 0x01 // a member's slice of a part (then a data frame)
	msgPart    msgType = 0x02 // an averaged part (then a data frame)
	msgError   msgType = 0x03 // a refusal
	msgFetch   msgType = 0x04 // an arbiter asks for a copy of a part, or the member's slice of it
	msgRecover msgType = 0x05 // a member asks a replacement reducer for a part
	msgReady   msgType = 0x06 // a reducer takes a CONTRIB: send the data
	msgPiece   msgType = 0x07 // a piece of an averaged part (then a data frame)
)

// PieceValues is the length of the pieces a part travels in on a
// contribution's stream: the contribution goes out piece by piece, and
// the reducer averages each piece once every contribution's copy of it is
// in and sends it back at once. A multiple of BlockSize; a part's last
// piece takes the rest.
const PieceValues = 1 << 18

func (t msgType) String() string {
	switch t {
	case msgContrib:
		return "CONTRIB"
	case msgPart:
		return "PART"
	case msgError:
		return "ERROR"
	case msgFetch:
		return "FETCH"
	case msgRecover:
		return "RECOVER"
	case msgReady:
		return "READY"
	case msgPiece:
		return "PIECE"
	}
	return fmt.Sprintf("0x%02x", uint8(t))
}

// errCode says why a peer refused a request.
type errCode uint8

const (
	codeMismatch    errCode = 1 // the round's parameters differ (hash)
	codeUnknown     errCode = 2 // no round of that ID started here in time
	codeNotMember   errCode = 3 // the sender is not the member it claims to be
	codeBusy        errCode = 4 // too many streams; try again later
	codeClosed      errCode = 5 // the service is closing
	codeBadRequest  errCode = 6 // a request this member cannot serve (wrong part, duplicate)
	codeUnavailable errCode = 7 // the part is not here and cannot be made here
	codeConflict    errCode = 8 // another member is recovering the same part
	codeSuperseded  errCode = 9 // the sender's part was recovered without it: it is late
)

func (c errCode) String() string {
	switch c {
	case codeMismatch:
		return "round parameters differ"
	case codeUnknown:
		return "unknown round"
	case codeNotMember:
		return "not a member"
	case codeBusy:
		return "busy"
	case codeClosed:
		return "closing"
	case codeBadRequest:
		return "bad request"
	case codeUnavailable:
		return "unavailable"
	case codeConflict:
		return "conflicting recovery"
	case codeSuperseded:
		return "superseded"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// message is a decoded header frame: *contribMsg, *partMsg, *errorMsg or
// *requestMsg.
type message interface {
	kind() msgType
	appendBody(b []byte) []byte
}

// contribMsg precedes the sender's slice of a part in the round's
// encoding: one data frame per piece on a contribution's stream, one
// data frame in all in answer to FETCH, a single empty one when the
// weight is 0. SumSquares is the sum of the squares of the values the
// slice decodes to, added in order in float64: the reducer judges norms
// on it before the data is in and checks it against the data.
type contribMsg struct {
	Hash       [32]byte
	ID         string
	Deadline   int64 // the sender's round deadline, Unix milliseconds
	Sender     int
	Part       int
	Weight     float64
	SumSquares float64
}

// pieceMsg precedes a data frame holding piece Piece of an averaged
// part, on a contribution's stream.
type pieceMsg struct {
	Piece int
}

// exclusion says why a member's contribution is not in a part.
type exclusion struct {
	Member int
	Kind   uint8 // exclMissing or exclRejected
	Reason string
}

const (
	exclMissing  uint8 = 0 // nothing arrived in time
	exclRejected uint8 = 1 // it arrived and was refused
)

// partMsg precedes a data frame holding an averaged part in the round's
// encoding. Data is that frame, kept with the header so that the same
// bytes can be served again.
type partMsg struct {
	Hash     [32]byte
	Part     int
	Reducer  int // the member that computed it: the part's reducer, or its replacement
	Weight   float64
	Included []byte // bitmap over members, bit i%8 of byte i/8
	Excluded []exclusion
	Data     []byte
}

// errorMsg refuses a request.
type errorMsg struct {
	Code errCode
	Text string
}

// readyMsg answers a CONTRIB that the reducer takes: the contributor
// sends its data frame only then.
type readyMsg struct{}

// requestMsg is a FETCH or a RECOVER for a part.
type requestMsg struct {
	Type     msgType
	Hash     [32]byte
	ID       string
	Deadline int64
	Sender   int
	Part     int
}

func (*contribMsg) kind() msgType   { return msgContrib }
func (*partMsg) kind() msgType      { return msgPart }
func (*errorMsg) kind() msgType     { return msgError }
func (m *requestMsg) kind() msgType { return m.Type }
func (*readyMsg) kind() msgType     { return msgReady }
func (*pieceMsg) kind() msgType     { return msgPiece }

func (m *pieceMsg) appendBody(b []byte) []byte {
	return wire.AppendUvarint(append(b, byte(msgPiece)), uint64(m.Piece))
}

func (*readyMsg) appendBody(b []byte) []byte { return append(b, byte(msgReady)) }

func appendF64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func (m *contribMsg) appendBody(b []byte) []byte {
	b = append(b, byte(msgContrib))
	b = append(b, m.Hash[:]...)
	b = wire.AppendString(b, m.ID)
	b = wire.AppendUvarint(b, uint64(m.Deadline))
	b = wire.AppendUvarint(b, uint64(m.Sender))
	b = wire.AppendUvarint(b, uint64(m.Part))
	b = appendF64(b, m.Weight)
	return appendF64(b, m.SumSquares)
}

func (m *partMsg) appendBody(b []byte) []byte {
	b = append(b, byte(msgPart))
	b = append(b, m.Hash[:]...)
	b = wire.AppendUvarint(b, uint64(m.Part))
	b = wire.AppendUvarint(b, uint64(m.Reducer))
	b = appendF64(b, m.Weight)
	b = wire.AppendFrame(b, m.Included)
	b = wire.AppendUvarint(b, uint64(len(m.Excluded)))
	for _, e := range m.Excluded {
		b = wire.AppendUvarint(b, uint64(e.Member))
		b = append(b, e.Kind)
		b = wire.AppendString(b, e.Reason)
	}
	return b
}

func (m *errorMsg) appendBody(b []byte) []byte {
	b = append(b, byte(msgError), byte(m.Code))
	return wire.AppendString(b, m.Text)
}

func (m *requestMsg) appendBody(b []byte) []byte {
	b = append(b, byte(m.Type))
	b = append(b, m.Hash[:]...)
	b = wire.AppendString(b, m.ID)
	b = wire.AppendUvarint(b, uint64(m.Deadline))
	b = wire.AppendUvarint(b, uint64(m.Sender))
	return wire.AppendUvarint(b, uint64(m.Part))
}

// appendMessage appends m as a frame.
func appendMessage(b []byte, m message) []byte {
	b, start := wire.BeginFrame(b)
	b = m.appendBody(b)
	return wire.EndFrame(b, start)
}

// maxDeadline bounds the deadline field (Unix milliseconds): year 2262.
const maxDeadline = math.MaxInt64 / int64(1e6)

// decodeMessage decodes a header frame's body. Member and part indices
// are bounded by MaxMembers here; the caller checks them against its
// round.
func decodeMessage(b []byte) (message, error) {
	d := wire.NewDecoder(b)
	t := msgType(d.Byte("message type"))
	var m message
	switch t {
	case msgContrib:
		c := &contribMsg{}
		copy(c.Hash[:], hashBytes(d))
		c.ID = d.String("round ID", MaxRoundID)
		c.Deadline = int64(d.Uvarint("deadline", uint64(maxDeadline)))
		c.Sender = d.Int("sender", MaxMembers-1)
		c.Part = d.Int("part", MaxMembers-1)
		c.Weight = f64(d, "weight")
		c.SumSquares = f64(d, "sum of squares")
		m = c
	case msgPart:
		p := &partMsg{}
		copy(p.Hash[:], hashBytes(d))
		p.Part = d.Int("part", MaxMembers-1)
		p.Reducer = d.Int("reducer", MaxMembers-1)
		p.Weight = f64(d, "weight")
		p.Included = append([]byte(nil), d.Bytes("included", (MaxMembers+7)/8)...)
		n := d.Int("exclusions", MaxMembers)
		for range n {
			var e exclusion
			e.Member = d.Int("excluded member", MaxMembers-1)
			e.Kind = d.Byte("exclusion kind")
			if d.Err() == nil && e.Kind > exclRejected {
				d.Fail("exclusion kind %d", e.Kind)
			}
			e.Reason = d.String("exclusion reason", MaxReason)
			if d.Err() != nil {
				break
			}
			p.Excluded = append(p.Excluded, e)
		}
		m = p
	case msgError:
		e := &errorMsg{}
		e.Code = errCode(d.Byte("error code"))
		e.Text = d.String("error text", maxErrorText)
		m = e
	case msgReady:
		m = &readyMsg{}
	case msgPiece:
		m = &pieceMsg{Piece: d.Int("piece", MaxElements/PieceValues)}
	case msgFetch, msgRecover:
		r := &requestMsg{Type: t}
		copy(r.Hash[:], hashBytes(d))
		r.ID = d.String("round ID", MaxRoundID)
		r.Deadline = int64(d.Uvarint("deadline", uint64(maxDeadline)))
		r.Sender = d.Int("sender", MaxMembers-1)
		r.Part = d.Int("part", MaxMembers-1)
		m = r
	default:
		if d.Err() == nil {
			d.Fail("unknown message type %s", t)
		}
	}
	if err := d.Finish(t.String()); err != nil {
		return nil, err
	}
	return m, nil
}

func hashBytes(d *wire.Decoder) []byte {
	var h []byte
	for range 32 {
		h = append(h, d.Byte("round hash"))
	}
	return h
}

func f64(d *wire.Decoder, what string) float64 {
	var b [8]byte
	for i := range b {
		b[i] = d.Byte(what)
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
}
