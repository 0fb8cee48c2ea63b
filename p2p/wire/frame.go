package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// AppendUvarint appends v as a uvarint.
func AppendUvarint(dst []byte, v uint64) []byte { return binary.AppendUvarint(dst, v) }

// AppendFrame appends body as a frame: its length as a uvarint, then the
// bytes. A string on the wire is such a frame too.
func AppendFrame(dst, body []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

// AppendString appends s as a frame.
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// BeginFrame starts a frame whose body the caller appends next, before its
// length is known; EndFrame(dst, start) then puts the length in front:
//
//	dst, start := wire.BeginFrame(dst)
//	dst = append(dst, body...)
//	dst = wire.EndFrame(dst, start)
//
// The body is moved once, down over the room left for the longest length
// prefix: no second buffer.
func BeginFrame(dst []byte) ([]byte, int) {
	start := len(dst)
	return append(dst, make([]byte, binary.MaxVarintLen64)...), start
}

// EndFrame ends the frame BeginFrame started at start.
func EndFrame(dst []byte, start int) []byte {
	body := len(dst) - start - binary.MaxVarintLen64
	var pre [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(pre[:], uint64(body))
	copy(dst[start:], pre[:k])
	copy(dst[start+k:], dst[start+binary.MaxVarintLen64:])
	return dst[:start+k+body]
}

// ReadFrame reads one frame of at most max bytes into a fresh slice. A
// length above max is refused before anything is allocated. The end of the
// stream before the frame is io.EOF.
func ReadFrame(r Reader, max int) ([]byte, error) {
	var f FrameReader
	f.r = r
	b, err := f.Next(max)
	if err != nil {
		return nil, err
	}
	return b[:len(b):len(b)], nil
}

// FrameReader reads frames into one buffer it reuses.
type FrameReader struct {
	r   Reader
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r Reader) *FrameReader { return &FrameReader{r: r} }

// Next reads one frame of at most max bytes and returns its body, valid
// until the next call. A length above max is refused before anything is
// read or allocated. The end of the stream before the frame is io.EOF.
func (f *FrameReader) Next(max int) ([]byte, error) {
	n, err := ReadUvarint(f.r)
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("frame length: %w", err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %w: %d bytes, at most %d here", ErrProtocol, ErrFrameTooLarge, n, max)
	}
	if cap(f.buf) < int(n) {
		f.buf = make([]byte, n)
	}
	b := f.buf[:n]
	if _, err := io.ReadFull(f.r, b); err != nil {
		return nil, fmt.Errorf("frame body: %w", noEOF(err))
	}
	return b, nil
}
