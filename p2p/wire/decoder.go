package wire

import "fmt"

// Decoder reads the fields of a frame body in order. It remembers the
// first error, after which every read returns a zero value, so a message
// is decoded field by field and checked once at the end (Finish).
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder decodes b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Fail records an error (wrapping ErrProtocol) unless one is recorded
// already.
func (d *Decoder) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
	}
}

// Err is the first error met, nil if none.
func (d *Decoder) Err() error { return d.err }

// Len is the number of bytes not read yet.
func (d *Decoder) Len() int { return len(d.b) }

// Finish is the decoder's error, or an error when bytes are left over:
// every field must be consumed exactly.
func (d *Decoder) Finish(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.Fail("%s: %d bytes after the message", what, len(d.b))
	}
	return d.err
}

// Uvarint reads a uvarint no larger than max.
func (d *Decoder) Uvarint(what string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n, err := Uvarint(d.b)
	if err != nil {
		d.err = fmt.Errorf("%s: %w", what, err)
		return 0
	}
	if v > max {
		d.Fail("%s %d exceeds %d", what, v, max)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Int reads a uvarint no larger than max, as an int.
func (d *Decoder) Int(what string, max int) int { return int(d.Uvarint(what, uint64(max))) }

// Byte reads one byte.
func (d *Decoder) Byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.Fail("%s: frame ends early", what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// Bytes reads a length-prefixed field of at most max bytes. The result
// refers to the frame.
func (d *Decoder) Bytes(what string, max int) []byte {
	n := d.Int(what+" length", max)
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.Fail("%s: %d bytes announced, %d left in the frame", what, n, len(d.b))
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

// String reads a length-prefixed string of at most max bytes.
func (d *Decoder) String(what string, max int) string { return string(d.Bytes(what, max)) }

// Rest returns the bytes not read yet, and consumes them.
func (d *Decoder) Rest() []byte {
	if d.err != nil {
		return nil
	}
	b := d.b
	d.b = nil
	return b
}
