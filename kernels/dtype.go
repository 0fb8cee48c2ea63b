package kernels

import (
	"fmt"
	"math"
	"unsafe"
)

// DType is the element type of a stored tensor.
type DType uint8

// The element types. The block-quantized ones use GGUF's block layouts:
//
//	Q8_0: 34 bytes per 32 values: f16 scale d, then 32 int8 q; value = q·d.
//	Q4_0: 18 bytes per 32 values: f16 scale d, then 16 bytes; byte j holds
//	      value j in its low nibble and value j+16 in its high nibble;
//	      value = (nibble − 8)·d.
//
// The other block types (Q4_1 to IQ4_XS) are laid out in kquant.go. The
// kernels read them; only F32 to Q4_0 can also be written (Encodable).
const (
	F32 DType = iota
	F16
	BF16
	Q8_0
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	IQ4_NL
	IQ4_XS
)

// QK is the number of values in one block of Q8_0 or Q4_0.
const QK = 32

// Bytes per block of the block-quantized types.
const (
	Q8_0BlockBytes = 2 + QK
	Q4_0BlockBytes = 2 + QK/2
)

var dtypeNames = [...]string{F32: "f32", F16: "f16", BF16: "bf16", Q8_0: "q8_0", Q4_0: "q4_0",
	Q4_1: "q4_1", Q5_0: "q5_0", Q5_1: "q5_1", Q2_K: "q2_k", Q3_K: "q3_k", Q4_K: "q4_k",
	Q5_K: "q5_k", Q6_K: "q6_k", IQ4_NL: "iq4_nl", IQ4_XS: "iq4_xs"}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// ParseDType maps a name such as "q8_0" or "f16" to its DType, one that
// values can be converted to (Encodable): the types a user asks for.
func ParseDType(s string) (DType, error) {
	d, err := DTypeNamed(s)
	if err == nil && !d.Encodable() {
		err = fmt.Errorf("dtype %q can be read but not written (want f32, f16, bf16, q8_0 or q4_0)", s)
	}
	return d, err
}

// DTypeNamed maps the name of any known type, readable or writable, to its
// DType: the types a stored tensor may have.
func DTypeNamed(s string) (DType, error) {
	for i, n := range dtypeNames {
		if n == s {
			return DType(i), nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q (want f32, f16, bf16, q8_0 or q4_0)", s)
}

// Encodable reports whether Encode can convert values to d.
func (d DType) Encodable() bool { return d <= Q4_0 }

// Valid reports whether d is one of the known types.
func (d DType) Valid() bool { return int(d) < len(dtypeNames) }

// BlockLen is the number of values in one storage block: 32 for Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL, 256 (QKK) for the K-quants and
// IQ4_XS, 1 otherwise.
func (d DType) BlockLen() int {
	switch d {
	case Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL:
		return QK
	case Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS:
		return QKK
	}
	return 1
}

// BlockBytes is the size in bytes of one storage block.
func (d DType) BlockBytes() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	case Q8_0:
		return Q8_0BlockBytes
	case Q4_0:
		return Q4_0BlockBytes
	}
	if int(d) < len(blockBytes) {
		return blockBytes[d]
	}
	return 0
}

// Quantized reports whether d is a block-quantized type.
func (d DType) Quantized() bool { return d >= Q8_0 && d.Valid() }

// RowBytes is the size of n consecutive values of type d. n must be a
// multiple of BlockLen.
func (d DType) RowBytes(n int) (int, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("unknown dtype %d", uint8(d))
	}
	if n < 0 {
		return 0, fmt.Errorf("negative length %d", n)
	}
	bl := d.BlockLen()
	if n%bl != 0 {
		return 0, fmt.Errorf("%s needs a multiple of %d values, got %d", d, bl, n)
	}
	return n / bl * d.BlockBytes(), nil
}

// Matrix is a weight tensor in its stored form: Rows rows of Cols values of
// type Type, row-major. Data may be a window into a memory-mapped file; the
// Matrix never copies it.
type Matrix struct {
	Type       DType
	Rows, Cols int
	Data       []byte
}

// NewMatrix checks that data holds exactly rows×cols values of type t.
func NewMatrix(t DType, rows, cols int, data []byte) (*Matrix, error) {
	if rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("matrix shape %dx%d: dimensions must be positive", rows, cols)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return nil, fmt.Errorf("matrix %dx%d: %w", rows, cols, err)
	}
	if rows > math.MaxInt/rb {
		return nil, fmt.Errorf("matrix %dx%d of %s is too large", rows, cols, t)
	}
	if len(data) != rows*rb {
		return nil, fmt.Errorf("matrix %dx%d of %s needs %d bytes, got %d", rows, cols, t, rows*rb, len(data))
	}
	return &Matrix{Type: t, Rows: rows, Cols: cols, Data: data}, nil
}

// RowBytes is the size of one row in bytes.
func (m *Matrix) RowBytes() int {
	n, _ := m.Type.RowBytes(m.Cols)
	return n
}

// Row returns the stored bytes of row i.
func (m *Matrix) Row(i int) []byte {
	rb := m.RowBytes()
	return m.Data[i*rb : (i+1)*rb : (i+1)*rb]
}

// RowF32 decodes row i into dst (len Cols).
func (m *Matrix) RowF32(dst []float32, i int) {
	Decode(dst[:m.Cols], m.Type, m.Row(i))
}

// Bytes is the total stored size of the matrix.
func (m *Matrix) Bytes() int { return len(m.Data) }

// F32 views a float32 matrix's data as floats. It panics for other types.
func (m *Matrix) F32() []float32 {
	if m.Type != F32 {
		panic("kernels: F32 view of a " + m.Type.String() + " matrix")
	}
	return BytesF32(m.Data)
}

// BytesF32 views little-endian float32 bytes as a []float32 without copying.
func BytesF32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// F32Bytes views a []float32 as its bytes without copying.
func F32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(f)*4)
}

// BytesU16 views little-endian 16-bit values as a []uint16 without copying.
func BytesU16(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}
