package swarm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/mycel-net/mycel/kernels"
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
	MaxRank = 4
	// tensorHeaderMax bounds everything in a STEP or RESULT frame before
	// the tensor's bytes: type, three uvarints, dtype, rank, four dims.
	tensorHeaderMax = 1 + 3*binary.MaxVarintLen64 + 2 + MaxRank*binary.MaxVarintLen64
)

// ErrProtocol is wrapped by every error about malformed or unexpected
// bytes from a peer.
var ErrProtocol = errors.New("protocol violation")

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

// Tensor is a header and raw little-endian bytes. Data of a decoded tensor
// refers to the frame it was read from.
type Tensor struct {
	DType kernels.DType
	Shape []int
	Data  []byte
}

func (*Open) Type() MsgType   { return MsgOpen }
func (*OK) Type() MsgType     { return MsgOK }
func (*Error) Type() MsgType  { return MsgError }
func (*Step) Type() MsgType   { return MsgStep }
func (*Result) Type() MsgType { return MsgResult }
func (*Close) Type() MsgType  { return MsgClose }

// activationSize is the bytes per value of a wire activation dtype, 0 for
// a dtype that may not travel.
func activationSize(t kernels.DType) int {
	switch t {
	case kernels.F32:
		return 4
	case kernels.F16, kernels.BF16:
		return 2
	}
	return 0
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (m *Open) appendBody(b []byte) []byte {
	b = appendString(b, m.Model)
	b = appendUvarint(b, uint64(m.First))
	b = appendUvarint(b, uint64(m.Last))
	b = appendUvarint(b, uint64(m.MaxPositions))
	return append(b, byte(m.DType))
}

func (m *OK) appendBody(b []byte) []byte {
	for _, v := range []int{int(m.Session), m.First, m.Last, m.MaxPositions, m.Dim, m.MaxStep, m.IdleMillis} {
		b = appendUvarint(b, uint64(v))
	}
	return b
}

func (m *Error) appendBody(b []byte) []byte {
	b = appendUvarint(b, uint64(m.Code))
	b = appendUvarint(b, m.Step)
	return appendString(b, m.Message)
}

func (t *Tensor) append(b []byte) []byte {
	b = append(b, byte(t.DType), byte(len(t.Shape)))
	for _, d := range t.Shape {
		b = appendUvarint(b, uint64(d))
	}
	return append(b, t.Data...)
}

func (m *Step) appendBody(b []byte) []byte {
	b = appendUvarint(b, m.ID)
	b = appendUvarint(b, uint64(m.Start))
	b = appendUvarint(b, uint64(m.N))
	return m.Tensor.append(b)
}

func (m *Result) appendBody(b []byte) []byte {
	b = appendUvarint(b, m.ID)
	return m.Tensor.append(b)
}

func (*Close) appendBody(b []byte) []byte { return b }

// AppendMessage appends m as one frame: the body's length as a uvarint,
// then the type byte and the body.
func AppendMessage(dst []byte, m Message) []byte {
	// Encode the body after room for the longest length prefix, then move
	// it down: one pass, no second buffer.
	start := len(dst)
	dst = append(dst, make([]byte, binary.MaxVarintLen64)...)
	dst = append(dst, byte(m.Type()))
	dst = m.appendBody(dst)
	body := len(dst) - start - binary.MaxVarintLen64
	var pre [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(pre[:], uint64(body))
	copy(dst[start:], pre[:k])
	copy(dst[start+k:], dst[start+binary.MaxVarintLen64:])
	return dst[:start+k+body]
}

// decoder reads fields from a frame body, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
	}
}

// uvarint reads a canonical (shortest-form) uvarint no larger than max.
func (d *decoder) uvarint(what string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	if n != uvarintLen(v) {
		d.fail("%s: varint not in shortest form", what)
		return 0
	}
	if v > max {
		d.fail("%s %d exceeds %d", what, v, max)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (d *decoder) int(what string, max int) int { return int(d.uvarint(what, uint64(max))) }

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("%s: frame ends early", what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string(what string, max int) string {
	n := d.int(what+" length", max)
	if d.err != nil {
		return ""
	}
	if n > len(d.b) {
		d.fail("%s: %d bytes announced, %d left in the frame", what, n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) dtype(what string) kernels.DType {
	t := kernels.DType(d.byte(what))
	if d.err == nil && activationSize(t) == 0 {
		d.fail("%s: %s cannot travel as activations (f32, f16 or bf16)", what, t)
	}
	return t
}

// tensor reads a tensor that runs to the end of the frame. The element
// count is bounded by the bytes present before anything is multiplied.
func (d *decoder) tensor() Tensor {
	var t Tensor
	t.DType = d.dtype("tensor dtype")
	rank := int(d.byte("tensor rank"))
	if d.err != nil {
		return t
	}
	if rank < 1 || rank > MaxRank {
		d.fail("tensor rank %d outside 1..%d", rank, MaxRank)
		return t
	}
	size := activationSize(t.DType)
	count := 1
	t.Shape = make([]int, rank)
	for i := range t.Shape {
		// Every dim is at least 1, so each is at most the values left.
		dim := d.int("tensor dim", len(d.b)/size)
		if d.err != nil {
			return t
		}
		if dim == 0 {
			d.fail("tensor dim %d is zero", i)
			return t
		}
		if count > len(d.b)/size/dim {
			d.fail("tensor shape %v: more values than the frame holds", t.Shape[:i+1])
			return t
		}
		count *= dim
		t.Shape[i] = dim
	}
	if count*size != len(d.b) {
		d.fail("tensor %v of %s needs %d bytes, the frame has %d", t.Shape, t.DType, count*size, len(d.b))
		return t
	}
	t.Data = d.b
	d.b = nil
	return t
}

// DecodeMessage decodes a frame body: the type byte and what follows. A
// Step's or Result's tensor refers to body. Every error wraps ErrProtocol;
// an unknown type also wraps ErrUnknownType.
func DecodeMessage(body []byte) (Message, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	d := &decoder{b: body[1:]}
	const maxInt = 1<<31 - 1
	var m Message
	switch t := MsgType(body[0]); t {
	case MsgOpen:
		o := &Open{}
		o.Model = d.string("model id", MaxModelID)
		o.First = d.int("first layer", maxInt)
		o.Last = d.int("last layer", maxInt)
		o.MaxPositions = d.int("max positions", maxInt)
		o.DType = d.dtype("activation dtype")
		m = o
	case MsgOK:
		o := &OK{}
		o.Session = d.uvarint("session", 1<<63-1)
		o.First = d.int("first layer", maxInt)
		o.Last = d.int("last layer", maxInt)
		o.MaxPositions = d.int("max positions", maxInt)
		o.Dim = d.int("dim", maxInt)
		o.MaxStep = d.int("max step", maxInt)
		o.IdleMillis = d.int("idle timeout", maxInt)
		m = o
	case MsgError:
		e := &Error{}
		e.Code = ErrorCode(d.uvarint("error code", 255))
		e.Step = d.uvarint("step", 1<<64-1)
		e.Message = d.string("error message", MaxErrorMessage)
		m = e
	case MsgStep:
		s := &Step{}
		s.ID = d.uvarint("step id", 1<<64-1)
		s.Start = d.int("start", maxInt)
		s.N = d.int("positions", maxInt)
		s.Tensor = d.tensor()
		m = s
	case MsgResult:
		r := &Result{}
		r.ID = d.uvarint("step id", 1<<64-1)
		r.Tensor = d.tensor()
		m = r
	case MsgClose:
		m = &Close{}
	default:
		return nil, fmt.Errorf("%w: %w %s", ErrProtocol, ErrUnknownType, t)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%s: %d bytes after the message", m.Type(), len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%s: %w", MsgType(body[0]), d.err)
	}
	return m, nil
}

// ErrUnknownType is wrapped by the error for a frame of an unknown type.
// The frame was read whole, so the stream is still in step.
var ErrUnknownType = errors.New("unknown message type")

// ErrFrameTooLarge is wrapped when a frame's length exceeds the reader's
// bound; nothing of the body was read or allocated.
var ErrFrameTooLarge = errors.New("frame too large")

// frameReader reads frames into one buffer it reuses.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

// readBody reads one frame and returns its body, valid until the next
// call. A length above max is refused before anything is allocated.
func (f *frameReader) readBody(max int) ([]byte, error) {
	n, err := f.readLength()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %w: %d bytes, at most %d here", ErrProtocol, ErrFrameTooLarge, n, max)
	}
	if cap(f.buf) < int(n) {
		f.buf = make([]byte, n)
	}
	b := f.buf[:n]
	if _, err := io.ReadFull(f.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("frame body: %w", err)
	}
	return b, nil
}

// readLength reads a frame's length prefix: a canonical uvarint of at
// most 10 bytes. A clean end of stream before it is io.EOF.
func (f *frameReader) readLength() (uint64, error) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := f.r.ReadByte()
		if err != nil {
			if i == 0 && errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("frame length: %w", err)
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrProtocol)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, fmt.Errorf("%w: frame length not in shortest form", ErrProtocol)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: frame length longer than 10 bytes", ErrProtocol)
}

// ReadMessage reads and decodes one frame of at most max body bytes. A
// tensor in the message is a fresh copy.
func ReadMessage(r *bufio.Reader, max int) (Message, error) {
	f := frameReader{r: r}
	b, err := f.readBody(max)
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
