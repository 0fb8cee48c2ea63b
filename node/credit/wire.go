package credit

import (
	"fmt"

	"github.com/mycel-net/mycel/p2p/wire"
)

// MsgType is the first byte of every frame of /mycel/credit/1.
type MsgType uint8

// The messages of /mycel/credit/1.
const (
	MsgReceipt     MsgType = 0x01 // server → client: a receipt and the server's signature
	MsgCountersign MsgType = 0x02 // client → server: the client's signature of it
	MsgRefuse      MsgType = 0x03 // client → server: no signature, the tokens it counted and why
	MsgRoundSig    MsgType = 0x04 // member → member: a round's summary and the sender's signature
	MsgAck         MsgType = 0x05 // member → member: the signature was taken
	MsgError       MsgType = 0x06 // either way: the request failed, and why
)

func (t MsgType) String() string {
	switch t {
	case MsgReceipt:
		return "RECEIPT"
	case MsgCountersign:
		return "COUNTERSIGN"
	case MsgRefuse:
		return "REFUSE"
	case MsgRoundSig:
		return "ROUNDSIG"
	case MsgAck:
		return "ACK"
	case MsgError:
		return "ERROR"
	}
	return fmt.Sprintf("0x%02x", uint8(t))
}

// Message is one decoded message: *ReceiptMsg, *Countersign, *Refuse,
// *RoundSig, *Ack or *ErrorMsg.
type Message interface {
	Type() MsgType
	appendBody(b []byte) []byte
}

// ReceiptMsg carries a receipt signed by its server.
type ReceiptMsg struct {
	Receipt Receipt
	Sig     Sig
}

// Countersign carries the client's signature of the receipt.
type Countersign struct{ Sig Sig }

// Refuse says the client does not sign: Counted is the tokens it
// counted for the session, Reason why it refuses.
type Refuse struct {
	Counted uint64
	Reason  string
}

// RoundSig carries a round's summary signed by its member at index
// Member.
type RoundSig struct {
	Round  Round
	Member int
	Sig    Sig
}

// Ack acknowledges a RoundSig.
type Ack struct{}

// ErrorMsg reports a failed request.
type ErrorMsg struct{ Message string }

func (*ReceiptMsg) Type() MsgType  { return MsgReceipt }
func (*Countersign) Type() MsgType { return MsgCountersign }
func (*Refuse) Type() MsgType      { return MsgRefuse }
func (*RoundSig) Type() MsgType    { return MsgRoundSig }
func (*Ack) Type() MsgType         { return MsgAck }
func (*ErrorMsg) Type() MsgType    { return MsgError }

func (m *ReceiptMsg) appendBody(b []byte) []byte { return m.Sig.appendTo(m.Receipt.appendBody(b)) }
func (m *Countersign) appendBody(b []byte) []byte {
	return m.Sig.appendTo(b)
}
func (m *Refuse) appendBody(b []byte) []byte {
	return wire.AppendString(wire.AppendUvarint(b, m.Counted), m.Reason)
}
func (m *RoundSig) appendBody(b []byte) []byte {
	b = m.Round.appendBody(b)
	b = wire.AppendUvarint(b, uint64(m.Member))
	return m.Sig.appendTo(b)
}
func (*Ack) appendBody(b []byte) []byte        { return b }
func (m *ErrorMsg) appendBody(b []byte) []byte { return wire.AppendString(b, m.Message) }

// AppendMessage appends m as one frame: its length, the type byte and
// the body.
func AppendMessage(dst []byte, m Message) []byte {
	dst, start := wire.BeginFrame(dst)
	dst = append(dst, byte(m.Type()))
	dst = m.appendBody(dst)
	return wire.EndFrame(dst, start)
}

// DecodeMessage decodes a frame's body. Every error wraps
// wire.ErrProtocol.
func DecodeMessage(body []byte) (Message, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty frame", wire.ErrProtocol)
	}
	d := wire.NewDecoder(body[1:])
	var m Message
	switch t := MsgType(body[0]); t {
	case MsgReceipt:
		r := &ReceiptMsg{}
		r.Receipt.decode(d)
		r.Sig = decodeSig(d)
		m = r
	case MsgCountersign:
		m = &Countersign{Sig: decodeSig(d)}
	case MsgRefuse:
		r := &Refuse{}
		r.Counted = d.Uvarint("counted", 1<<48)
		r.Reason = d.String("reason", MaxNote)
		m = r
	case MsgRoundSig:
		r := &RoundSig{}
		r.Round.decode(d)
		r.Member = d.Int("member", max(len(r.Round.Members)-1, 0))
		r.Sig = decodeSig(d)
		m = r
	case MsgAck:
		m = &Ack{}
	case MsgError:
		m = &ErrorMsg{Message: d.String("error message", MaxNote)}
	default:
		return nil, fmt.Errorf("%w: unknown message type %s", wire.ErrProtocol, t)
	}
	if err := d.Finish(m.Type().String()); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Type(), err)
	}
	return m, nil
}
