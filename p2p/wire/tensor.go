package wire

import (
	"encoding/binary"

	"github.com/mycel-net/mycel/kernels"
)

// MaxRank is the most dimensions a tensor header may list.
const MaxRank = 4

// TensorHeaderMax bounds a tensor's header: dtype, rank and MaxRank dims.
// A frame that holds a tensor of n values of size s needs at most this
// plus n×s bytes for it.
const TensorHeaderMax = 2 + MaxRank*binary.MaxVarintLen64

// Tensor is a header (dtype, shape) and the values as raw little-endian
// bytes, row-major. Data of a decoded tensor refers to the frame it was
// read from.
type Tensor struct {
	DType kernels.DType
	Shape []int
	Data  []byte
}

// ElemSize is the bytes per value of a dtype that travels as raw values
// (4 for F32, 2 for F16 and BF16), and 0 for one that may not travel.
func ElemSize(t kernels.DType) int {
	switch t {
	case kernels.F32:
		return 4
	case kernels.F16, kernels.BF16:
		return 2
	}
	return 0
}

// AppendTensor appends t: dtype, rank, dims, values. The caller keeps the
// shape within MaxRank and Data exactly product(Shape) values long.
func AppendTensor(b []byte, t *Tensor) []byte {
	b = append(b, byte(t.DType), byte(len(t.Shape)))
	for _, d := range t.Shape {
		b = binary.AppendUvarint(b, uint64(d))
	}
	return append(b, t.Data...)
}

// DType reads one byte of dtype and checks that the dtype may travel
// (ElemSize).
func (d *Decoder) DType(what string) kernels.DType {
	t := kernels.DType(d.Byte(what))
	if d.err == nil && ElemSize(t) == 0 {
		d.Fail("%s: %s cannot travel as raw values (f32, f16 or bf16)", what, t)
	}
	return t
}

// Tensor reads a tensor that runs to the end of the frame. The element
// count is bounded by the bytes present before anything is multiplied.
func (d *Decoder) Tensor() Tensor {
	var t Tensor
	t.DType = d.DType("tensor dtype")
	rank := int(d.Byte("tensor rank"))
	if d.err != nil {
		return t
	}
	if rank < 1 || rank > MaxRank {
		d.Fail("tensor rank %d outside 1..%d", rank, MaxRank)
		return t
	}
	size := ElemSize(t.DType)
	count := 1
	t.Shape = make([]int, rank)
	for i := range t.Shape {
		// Every dim is at least 1, so each is at most the values left.
		dim := d.Int("tensor dim", len(d.b)/size)
		if d.err != nil {
			return t
		}
		if dim == 0 {
			d.Fail("tensor dim %d is zero", i)
			return t
		}
		if count > len(d.b)/size/dim {
			d.Fail("tensor shape %v: more values than the frame holds", t.Shape[:i+1])
			return t
		}
		count *= dim
		t.Shape[i] = dim
	}
	if count*size != len(d.b) {
		d.Fail("tensor %v of %s needs %d bytes, the frame has %d", t.Shape, t.DType, count*size, len(d.b))
		return t
	}
	t.Data = d.b
	d.b = nil
	return t
}
