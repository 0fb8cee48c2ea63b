package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrProtocol is wrapped by every error about malformed or unexpected bytes
// from a peer.
var ErrProtocol = errors.New("protocol violation")

// ErrFrameTooLarge is wrapped (with ErrProtocol) when a frame's length
// exceeds the reader's bound; nothing of the body was read or allocated.
var ErrFrameTooLarge = errors.New("frame too large")

// Reader is what the stream readers need: bytes one at a time (the
// uvarints) and in bulk (the bodies). *bufio.Reader is one.
type Reader interface {
	io.Reader
	io.ByteReader
}

// ReadUvarint reads one uvarint: at most 10 bytes, in its shortest form.
// The end of the stream before its first byte is io.EOF, inside it
// io.ErrUnexpectedEOF; a malformed one wraps ErrProtocol.
func ReadUvarint(r io.ByteReader) (uint64, error) {
	var v uint64
	for i := range binary.MaxVarintLen64 {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 {
				err = noEOF(err)
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, fmt.Errorf("%w: varint overflows 64 bits", ErrProtocol)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, fmt.Errorf("%w: varint not in shortest form", ErrProtocol)
			}
			return v, nil
		}
	}
	panic("unreachable: the tenth byte either ends the varint or overflows")
}

// ReadBounded reads a uvarint and checks that it lies in lo..hi. what
// names the field in errors.
func ReadBounded(r io.ByteReader, what string, lo, hi uint64) (uint64, error) {
	v, err := ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%w: %s %d out of range (%d..%d)", ErrProtocol, what, v, lo, hi)
	}
	return v, nil
}

// Uvarint decodes a uvarint at the start of b, by the same rules as
// ReadUvarint, and returns it with the bytes it took.
func Uvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("%w: varint cut short", ErrProtocol)
	case n < 0:
		return 0, 0, fmt.Errorf("%w: varint overflows 64 bits", ErrProtocol)
	case n != UvarintLen(v):
		return 0, 0, fmt.Errorf("%w: varint not in shortest form", ErrProtocol)
	}
	return v, n, nil
}

// UvarintLen is the length of v's uvarint.
func UvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// noEOF turns an io.EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
