package swarm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p/wire"
)

// MsgType is the first byte of every frame's body.
type MsgType uint8

// The message types of /mycel/infer/1.
const (
	MsgOpen   MsgType = 0x01 // client → server: open a session
	MsgOK     MsgType = 0x02 // server → client: the session is open
	MsgError  MsgType = 0x03 // either way: a request failed
	MsgStep   MsgType = 0x04 // client → server: run positions through the span
	MsgResult MsgType = 0x05 // server → client: the step's output
	MsgClose  MsgType = 0x06 // client → server: end the session
	// MsgExperts (on /mycel/experts/1): a server → a holder of experts:
	// run these experts on these rows; answered by RESULT or ERROR.
	MsgExperts MsgType = 0x07
)

func (t MsgType) String() string {
	switch t {
	case MsgOpen:
		return "OPEN"
	case MsgOK:
		return "OK"
	case MsgError:
		return "ERROR"
	case MsgStep:
		return "STEP"
	case MsgResult:
		return "RESULT"
	case MsgClose:
		return "CLOSE"
	case MsgExperts:
		return "EXPERTS"
	}
	return fmt.Sprintf("0x%02x", uint8(t))
}

// Wire limits that do not depend on a session.
const (
	// MaxControlFrame bounds every frame that carries no tensor (OPEN, OK,
	// ERROR, CLOSE), and every frame read before a session is open.
	MaxControlFrame = 4 << 10
	// MaxModelID and MaxErrorMessage bound the two strings on the wire.
	MaxModelID      = 256
	MaxErrorMessage = 1024
	// MaxRank is the most dimensions a tensor header may list.
	MaxRank = wire.MaxRank
	// tensorHeaderMax bounds everything in a STEP or RESULT frame before
	// the tensor's bytes: type, three uvarints, dtype, rank, four dims.
	tensorHeaderMax = 1 + 3*binary.MaxVarintLen64 + wire.TensorHeaderMax
)

// ErrProtocol is wrapped by every error about malformed or unexpected
// bytes from a peer (it is wire.ErrProtocol).
var ErrProtocol = wire.ErrProtocol

// Message is one decoded message: *Open, *OK, *Error, *Step, *Result or
// *Close.
type Message interface {
	Type() MsgType
	appendBody(b []byte) []byte
}

// Open asks a server for a session over layers [First, Last).
type Open struct {
	Model        string
	First, Last  int
	MaxPositions int
	DType        kernels.DType // activations on the wire: F32, F16 or BF16
}

// OK accepts a session and states its limits.
type OK struct {
	Session      uint64
	First, Last  int
	MaxPositions int
	Dim          int // width of the hidden state
	MaxStep      int // most positions in one STEP
	IdleMillis   int // the server frees a session idle this long
}

// Error reports a failed request. Step is the step it concerns, 0 if none.
type Error struct {
	Code    ErrorCode
	Step    uint64
	Message string
}

// Step runs N positions, from Start on, through the session's span.
type Step struct {
	ID     uint64
	Start  int
	N      int
	Tensor Tensor
}

// Result is the output of step ID.
type Result struct {
	ID     uint64
	Tensor Tensor
}

// Close ends the session.
type Close struct{}

// Experts asks a holder of some routed experts of Layer to run them on
// the rows of Tensor ([rows, dim]): each row has K slots, Pick[r*K+j] an
// expert (-1: none) and Weight[r*K+j] its weight, and the answer (RESULT
// of the same ID) is, for each row, the sum of its experts' outputs
// times their weights.
type Experts struct {
	ID     uint64
	Model  string
	Layer  int
	K      int
	Pick   []int32
	Weight []float32
	Tensor Tensor
}

// MaxExpertSlots bounds K of an EXPERTS message, and MaxExpertRows its
// rows: what one request may make a server allocate before it checks
// the request against its model.
const (
	MaxExpertSlots = 64
	MaxExpertRows  = 1 << 12
)

// Tensor is a header and raw little-endian bytes (wire.Tensor). Data of a
// decoded tensor refers to the frame it was read from.
type Tensor = wire.Tensor

func (*Open) Type() MsgType    { return MsgOpen }
func (*OK) Type() MsgType      { return MsgOK }
func (*Error) Type() MsgType   { return MsgError }
func (*Step) Type() MsgType    { return MsgStep }
func (*Result) Type() MsgType  { return MsgResult }
func (*Close) Type() MsgType   { return MsgClose }
func (*Experts) Type() MsgType { return MsgExperts }

func (m *Open) appendBody(b []byte) []byte {
	b = wire.AppendString(b, m.Model)
	b = wire.AppendUvarint(b, uint64(m.First))
	b = wire.AppendUvarint(b, uint64(m.Last))
	b = wire.AppendUvarint(b, uint64(m.MaxPositions))
	return append(b, byte(m.DType))
}

func (m *OK) appendBody(b []byte) []byte {
	for _, v := range []int{int(m.Session), m.First, m.Last, m.MaxPositions, m.Dim, m.MaxStep, m.IdleMillis} {
		b = wire.AppendUvarint(b, uint64(v))
	}
	return b
}

func (m *Error) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, uint64(m.Code))
	b = wire.AppendUvarint(b, m.Step)
	return wire.AppendString(b, m.Message)
}

func (m *Step) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, m.ID)
	b = wire.AppendUvarint(b, uint64(m.Start))
	b = wire.AppendUvarint(b, uint64(m.N))
	return wire.AppendTensor(b, &m.Tensor)
}

func (m *Result) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, m.ID)
	return wire.AppendTensor(b, &m.Tensor)
}

func (*Close) appendBody(b []byte) []byte { return b }

func (m *Experts) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, m.ID)
	b = wire.AppendString(b, m.Model)
	b = wire.AppendUvarint(b, uint64(m.Layer))
	b = wire.AppendUvarint(b, uint64(m.K))
	b = wire.AppendUvarint(b, uint64(len(m.Pick)))
	for i, e := range m.Pick {
		b = wire.AppendUvarint(b, uint64(int64(e)+1))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(m.Weight[i]))
	}
	return wire.AppendTensor(b, &m.Tensor)
}

// AppendMessage appends m as one frame: the body's length as a uvarint,
// then the type byte and the body.
func AppendMessage(dst []byte, m Message) []byte {
	dst, start := wire.BeginFrame(dst)
	dst = append(dst, byte(m.Type()))
	dst = m.appendBody(dst)
	return wire.EndFrame(dst, start)
}

// DecodeMessage decodes a frame body: the type byte and what follows. A
// Step's or Result's tensor refers to body. Every error wraps ErrProtocol;
// an unknown type also wraps ErrUnknownType.
func DecodeMessage(body []byte) (Message, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	d := wire.NewDecoder(body[1:])
	const maxInt = 1<<31 - 1
	var m Message
	switch t := MsgType(body[0]); t {
	case MsgOpen:
		o := &Open{}
		o.Model = d.String("model id", MaxModelID)
		o.First = d.Int("first layer", maxInt)
		o.Last = d.Int("last layer", maxInt)
		o.MaxPositions = d.Int("max positions", maxInt)
		o.DType = d.DType("activation dtype")
		m = o
	case MsgOK:
		o := &OK{}
		o.Session = d.Uvarint("session", 1<<63-1)
		o.First = d.Int("first layer", maxInt)
		o.Last = d.Int("last layer", maxInt)
		o.MaxPositions = d.Int("max positions", maxInt)
		o.Dim = d.Int("dim", maxInt)
		o.MaxStep = d.Int("max step", maxInt)
		o.IdleMillis = d.Int("idle timeout", maxInt)
		m = o
	case MsgError:
		e := &Error{}
		e.Code = ErrorCode(d.Uvarint("error code", 255))
		e.Step = d.Uvarint("step", 1<<64-1)
		e.Message = d.String("error message", MaxErrorMessage)
		m = e
	case MsgStep:
		s := &Step{}
		s.ID = d.Uvarint("step id", 1<<64-1)
		s.Start = d.Int("start", maxInt)
		s.N = d.Int("positions", maxInt)
		s.Tensor = d.Tensor()
		m = s
	case MsgResult:
		r := &Result{}
		r.ID = d.Uvarint("step id", 1<<64-1)
		r.Tensor = d.Tensor()
		m = r
	case MsgClose:
		m = &Close{}
	case MsgExperts:
		m = decodeExperts(d)
	default:
		return nil, fmt.Errorf("%w: %w %s", ErrProtocol, ErrUnknownType, t)
	}
	if err := d.Finish(m.Type().String()); err != nil {
		return nil, fmt.Errorf("%s: %w", MsgType(body[0]), err)
	}
	return m, nil
}

// decodeExperts reads an EXPERTS body: its slots bounded before they
// are allocated, and their count, K and the tensor's rows checked
// against each other.
func decodeExperts(d *wire.Decoder) *Experts {
	x := &Experts{}
	x.ID = d.Uvarint("request id", 1<<64-1)
	x.Model = d.String("model id", MaxModelID)
	x.Layer = d.Int("layer", 1<<31-1)
	x.K = d.Int("slots a row", MaxExpertSlots)
	n := d.Int("slots", MaxExpertSlots*MaxExpertRows)
	if d.Err() == nil && n > d.Len()/5 {
		d.Fail("%d slots in %d bytes", n, d.Len())
	}
	if d.Err() != nil {
		return x
	}
	x.Pick, x.Weight = make([]int32, n), make([]float32, n)
	for i := range n {
		x.Pick[i] = int32(d.Int("expert", model.MaxExperts)) - 1
		var w [4]byte
		for j := range w {
			w[j] = d.Byte("weight")
		}
		x.Weight[i] = math.Float32frombits(binary.LittleEndian.Uint32(w[:]))
		if v := float64(x.Weight[i]); d.Err() == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			d.Fail("slot %d: weight %v", i, v)
		}
	}
	x.Tensor = d.Tensor()
	switch t := &x.Tensor; {
	case d.Err() != nil:
	case x.K < 1:
		d.Fail("EXPERTS of %d slots a row", x.K)
	case len(t.Shape) != 2 || t.Shape[0] < 1 || t.Shape[0] > MaxExpertRows:
		d.Fail("EXPERTS tensor of shape %v", t.Shape)
	case t.Shape[0]*x.K != n:
		d.Fail("EXPERTS of %d slots for %d rows of %d", n, t.Shape[0], x.K)
	}
	return x
}

// ErrUnknownType is wrapped by the error for a frame of an unknown type.
// The frame was read whole, so the stream is still in step.
var ErrUnknownType = errors.New("unknown message type")

// ErrFrameTooLarge is wrapped when a frame's length exceeds the reader's
// bound; nothing of the body was read or allocated (it is
// wire.ErrFrameTooLarge).
var ErrFrameTooLarge = wire.ErrFrameTooLarge

// ReadMessage reads and decodes one frame of at most max body bytes. A
// tensor in the message is a fresh copy.
func ReadMessage(r *bufio.Reader, max int) (Message, error) {
	b, err := wire.ReadFrame(r, max)
	if err != nil {
		return nil, err
	}
	return DecodeMessage(b)
}

// tensorFrameMax is the largest STEP or RESULT body for n positions of
// width dim in dtype t.
func tensorFrameMax(n, dim int, t kernels.DType) int {
	return tensorHeaderMax + n*dim*activationSize(t)
}

// activationSize is the bytes per value of a wire activation dtype, 0 for
// a dtype that may not travel.
func activationSize(t kernels.DType) int { return wire.ElemSize(t) }
