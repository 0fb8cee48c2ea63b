package checkpoints

import (
	"encoding/binary"
	"fmt"
	"io"
)

// TensorSpec describes one tensor to write. Exactly one of Data and Write
// supplies its bytes.
type TensorSpec struct {
	Name string
	Type GGMLType
	// Dims are innermost first: a matrix of out rows of in values is
	// [in, out].
	Dims []uint64
	// Data holds the stored bytes.
	Data []byte
	// Write streams the stored bytes to w; it must write exactly the
	// tensor's size. It is called once, in tensor order, so a large model
	// need never be held in memory whole.
	Write func(w io.Writer) error
}

// WriteGGUF writes a GGUF v3 file: the metadata in the order given, the
// tensor infos, then each tensor's data aligned to general.alignment (32
// unless kvs sets it). Tensor data is streamed in order.
func WriteGGUF(w io.Writer, kvs []KV, tensors []TensorSpec) error {
	align := uint64(GGUFDefaultAlignment)
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		if seen[kv.Key] {
			return fmt.Errorf("gguf write: metadata key %q appears twice", kv.Key)
		}
		seen[kv.Key] = true
		if !kv.Value.typ.valid() || (kv.Value.typ == TypeArray && kv.Value.arr == nil) {
			return fmt.Errorf("gguf write: metadata %q: invalid value", kv.Key)
		}
		if kv.Key == "general.alignment" {
			a, ok := kv.Value.Uint()
			if !ok || a == 0 || a&(a-1) != 0 || a > ggufMaxAlignment {
				return fmt.Errorf("gguf write: general.alignment %s must be a power of two in [1, %d]", kv.Value, ggufMaxAlignment)
			}
			align = a
		}
	}
	sizes := make([]uint64, len(tensors))
	offsets := make([]uint64, len(tensors))
	names := make(map[string]bool, len(tensors))
	var off uint64
	for i := range tensors {
		t := &tensors[i]
		if names[t.Name] {
			return fmt.Errorf("gguf write: tensor %s appears twice", t.Name)
		}
		names[t.Name] = true
		if len(t.Dims) > ggufMaxDims {
			return fmt.Errorf("gguf write: tensor %s: %d dimensions, at most %d allowed", t.Name, len(t.Dims), ggufMaxDims)
		}
		n, err := tensorBytes(&TensorInfo{Name: t.Name, Dims: t.Dims, Type: t.Type})
		if err != nil {
			return fmt.Errorf("gguf write: tensor %s: %w", t.Name, err)
		}
		if (t.Data != nil && t.Write != nil) || (t.Data == nil && t.Write == nil && n != 0) {
			return fmt.Errorf("gguf write: tensor %s: give exactly one of Data and Write", t.Name)
		}
		if t.Data != nil && uint64(len(t.Data)) != n {
			return fmt.Errorf("gguf write: tensor %s: %d bytes of data, its shape %v of %s needs %d", t.Name, len(t.Data), t.Dims, t.Type, n)
		}
		sizes[i], offsets[i] = n, off
		off = alignUp(off+n, align)
	}

	var hdr []byte
	hdr = binary.LittleEndian.AppendUint32(hdr, ggufMagic)
	hdr = binary.LittleEndian.AppendUint32(hdr, 3)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(tensors)))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(kvs)))
	cw := &countWriter{w: w}
	if _, err := cw.Write(hdr); err != nil {
		return err
	}
	for _, kv := range kvs {
		b := binary.LittleEndian.AppendUint64(hdr[:0], uint64(len(kv.Key)))
		b = append(b, kv.Key...)
		b = binary.LittleEndian.AppendUint32(b, uint32(kv.Value.typ))
		if kv.Value.typ == TypeArray {
			// Arrays can be large: write their elements directly.
			b = binary.LittleEndian.AppendUint32(b, uint32(kv.Value.arr.elem))
			b = binary.LittleEndian.AppendUint64(b, uint64(kv.Value.arr.n))
			if _, err := cw.Write(b); err != nil {
				return err
			}
			if _, err := cw.Write(kv.Value.arr.raw); err != nil {
				return err
			}
			hdr = b[:0]
			continue
		}
		b = appendValue(b, kv.Value)
		if _, err := cw.Write(b); err != nil {
			return err
		}
		hdr = b[:0]
	}
	for i, t := range tensors {
		b := binary.LittleEndian.AppendUint64(hdr[:0], uint64(len(t.Name)))
		b = append(b, t.Name...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Dims)))
		for _, d := range t.Dims {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.Type))
		b = binary.LittleEndian.AppendUint64(b, offsets[i])
		if _, err := cw.Write(b); err != nil {
			return err
		}
		hdr = b[:0]
	}
	if err := cw.pad(align); err != nil {
		return err
	}
	dataStart := cw.n
	for i, t := range tensors {
		if err := cw.pad(align); err != nil {
			return err
		}
		if cw.n-dataStart != offsets[i] {
			return fmt.Errorf("gguf write: tensor %s: at data offset %d, want %d", t.Name, cw.n-dataStart, offsets[i])
		}
		before := cw.n
		var err error
		switch {
		case t.Data != nil:
			_, err = cw.Write(t.Data)
		case t.Write != nil:
			err = t.Write(cw)
		}
		if err != nil {
			return fmt.Errorf("gguf write: tensor %s: %w", t.Name, err)
		}
		if got := cw.n - before; got != sizes[i] {
			return fmt.Errorf("gguf write: tensor %s: wrote %d bytes, its shape %v of %s needs %d", t.Name, got, t.Dims, t.Type, sizes[i])
		}
	}
	return nil
}

func alignUp(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		n += a - r
	}
	return n
}

// countWriter counts bytes written and pads to an alignment.
type countWriter struct {
	w io.Writer
	n uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

var zeros [ggufMaxAlignment]byte

func (c *countWriter) pad(align uint64) error {
	if r := c.n % align; r != 0 {
		_, err := c.Write(zeros[:align-r])
		return err
	}
	return nil
}
