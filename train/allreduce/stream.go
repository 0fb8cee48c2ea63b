package allreduce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p/wire"
)

// stream is one end of a round's stream: frames through a conn whose
// watchdog bounds every read and write, reset when ctx ends, bytes
// counted toward the round.
type stream struct {
	c    *wire.Conn
	rd   *round
	peer peer.ID
	stop func() bool
}

func newStream(ctx context.Context, st network.Stream, rd *round) *stream {
	c := wire.NewConn(st, connBuf)
	return &stream{c: c, rd: rd, peer: st.Conn().RemotePeer(), stop: context.AfterFunc(ctx, c.Reset)}
}

// open opens a stream to member j.
func (rd *round) open(ctx context.Context, j int) (*stream, error) {
	st, err := rd.s.h.NewStream(ctx, rd.members[j], Protocol)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s: %w", rd.members[j], err)
	}
	return newStream(ctx, st, rd), nil
}

// finish closes the stream gracefully (what was written arrives).
func (x *stream) finish() {
	x.stop()
	x.c.Finish()
}

// reset aborts the stream.
func (x *stream) reset() {
	x.stop()
	x.c.Reset()
}

// until is the time left to t, at least a millisecond.
func until(t time.Time) time.Duration { return max(time.Millisecond, time.Until(t)) }

func (x *stream) write(b []byte, by time.Time) error {
	if err := x.c.Write(b, until(by)); err != nil {
		return err
	}
	if x.rd != nil {
		x.rd.sent.Add(int64(len(b)))
	}
	return nil
}

// send writes a header frame.
func (x *stream) send(m message, by time.Time) error {
	return x.write(appendMessage(nil, m), by)
}

// sendError writes an ERROR; it is the last frame of the stream.
func (x *stream) sendError(code errCode, format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
	}
	x.send(&errorMsg{Code: code, Text: text}, time.Now().Add(headerWait))
}

// sendData writes b as a data frame.
func (x *stream) sendData(b []byte, by time.Time) error {
	if err := x.write(wire.AppendUvarint(nil, uint64(len(b))), by); err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	return x.write(b, by)
}

// sendValues writes src in encoding enc as a data frame; f32 values go
// out as they are in memory where that is their encoding.
func (x *stream) sendValues(enc Encoding, src []float32, by time.Time) error {
	if enc != F32 {
		b := getBuf(EncodedLen(enc, len(src)))
		quantizeInto(enc, b, src)
		err := x.sendData(b, by)
		putBuf(b)
		return err
	}
	if err := x.write(wire.AppendUvarint(nil, uint64(4*len(src))), by); err != nil {
		return err
	}
	if nativeLE {
		if len(src) == 0 {
			return nil
		}
		return x.write(f32Bytes(src), by)
	}
	const step = 64 << 10
	buf := make([]byte, 4*min(step, len(src)))
	for len(src) > 0 {
		n := min(step, len(src))
		for i, v := range src[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		if err := x.write(buf[:4*n], by); err != nil {
			return err
		}
		src = src[n:]
	}
	return nil
}

// sendPart writes a PART and its data frame.
func (x *stream) sendPart(m *partMsg, by time.Time) error { return x.sendWith(m, m.Data, by) }

// sendWith writes a header frame and the data frame b after it: the
// header and the data's length in one write, the data in another.
func (x *stream) sendWith(m message, b []byte, by time.Time) error {
	if err := x.write(wire.AppendUvarint(appendMessage(nil, m), uint64(len(b))), by); err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	return x.write(b, by)
}

// recvMsg reads a header frame whose first byte must come by first and
// the rest by by. An ERROR is returned as a *remoteError.
func (x *stream) recvMsg(first, by time.Time) (message, error) {
	b, err := x.c.ReadFrame(MaxHeader, until(first), until(by))
	if err != nil {
		return nil, err
	}
	if x.rd != nil {
		x.rd.recv.Add(int64(wire.UvarintLen(uint64(len(b))) + len(b)))
	}
	m, err := decodeMessage(b)
	if err != nil {
		return nil, err
	}
	if e, ok := m.(*errorMsg); ok {
		return nil, &remoteError{peer: x.peer, code: e.Code, text: e.Text}
	}
	return m, nil
}

// recvData reads a data frame of exactly n bytes, by by, into a buffer
// from the pool (nil when n is 0): the caller's, to give back with
// putBuf once nothing uses it.
func (x *stream) recvData(n int, by time.Time) ([]byte, error) {
	var b []byte
	if n > 0 {
		b = getBuf(n)
	}
	size, err := x.c.ReadFrameInto(b, until(by))
	if x.rd != nil && size > 0 {
		x.rd.recv.Add(int64(size))
	}
	if err != nil {
		putBuf(b)
		return nil, err
	}
	return b, nil
}

// remoteError is an ERROR a peer sent.
type remoteError struct {
	peer peer.ID
	code errCode
	text string
}

func (e *remoteError) Error() string {
	return fmt.Sprintf("%s refused: %s: %s", e.peer, e.code, e.text)
}

func (e *remoteError) Unwrap() error {
	switch e.code {
	case codeMismatch:
		return ErrMismatch
	case codeSuperseded:
		return ErrLate
	}
	return nil
}

// codeOf is the refusal code err carries, 0 if none.
func codeOf(err error) errCode {
	var re *remoteError
	if errors.As(err, &re) {
		return re.code
	}
	return 0
}

// joinErrs joins errors for a message that names each.
func joinErrs(errs []error) error { return errors.Join(errs...) }
