package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The pure-Go row kernels. Each computes out[i] = dot(row i of w, x) for
// i < len(out); the assembly versions must agree with them.

func matvecF32Generic(out, w []float32, cols int, x []float32) {
	x = x[:cols]
	for i := range out {
		out[i] = dotF32Generic(w[i*cols:(i+1)*cols], x)
	}
}

func dotF32Generic(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func matvecF16Generic(out []float32, w []byte, cols int, x []float32) {
	for i := range out {
		row := w[i*cols*2 : (i+1)*cols*2]
		var s float32
		for j := 0; j < cols; j++ {
			s += kernels.F16ToF32(binary.LittleEndian.Uint16(row[2*j:])) * x[j]
		}
		out[i] = s
	}
}

func matvecBF16Generic(out []float32, w []byte, cols int, x []float32) {
	for i := range out {
		row := w[i*cols*2 : (i+1)*cols*2]
		var s float32
		for j := 0; j < cols; j++ {
			s += math.Float32frombits(uint32(binary.LittleEndian.Uint16(row[2*j:]))<<16) * x[j]
		}
		out[i] = s
	}
}

// quantizeQ8Generic quantizes x (a multiple of 32 values) to Q8_0 blocks.
func quantizeQ8Generic(dst []byte, x []float32) {
	kernels.Encode(dst[:0], kernels.Q8_0, x)
}

func matvecQ8Generic(out []float32, w []byte, nb int, xq []byte) {
	rb := nb * kernels.Q8_0BlockBytes
	for i := range out {
		row := w[i*rb : (i+1)*rb]
		var s float32
		for b := 0; b < nb; b++ {
			wb := row[b*kernels.Q8_0BlockBytes : (b+1)*kernels.Q8_0BlockBytes]
			xb := xq[b*kernels.Q8_0BlockBytes : (b+1)*kernels.Q8_0BlockBytes]
			var acc int32
			for j := 2; j < kernels.Q8_0BlockBytes; j++ {
				acc += int32(int8(wb[j])) * int32(int8(xb[j]))
			}
			s += float32(acc) * kernels.F16ToF32(binary.LittleEndian.Uint16(wb)) * kernels.F16ToF32(binary.LittleEndian.Uint16(xb))
		}
		out[i] = s
	}
}

func matvecQ4Generic(out []float32, w []byte, nb int, xq []byte) {
	rb := nb * kernels.Q4_0BlockBytes
	for i := range out {
		row := w[i*rb : (i+1)*rb]
		var s float32
		for b := 0; b < nb; b++ {
			wb := row[b*kernels.Q4_0BlockBytes : (b+1)*kernels.Q4_0BlockBytes]
			xb := xq[b*kernels.Q8_0BlockBytes : (b+1)*kernels.Q8_0BlockBytes]
			var acc int32
			for j := 0; j < kernels.QK/2; j++ {
				q := wb[2+j]
				acc += (int32(q&0x0f) - 8) * int32(int8(xb[2+j]))
				acc += (int32(q>>4) - 8) * int32(int8(xb[2+j+kernels.QK/2]))
			}
			s += float32(acc) * kernels.F16ToF32(binary.LittleEndian.Uint16(wb)) * kernels.F16ToF32(binary.LittleEndian.Uint16(xb))
		}
		out[i] = s
	}
}

// gemvCMGeneric computes y[r] = Σ_c x[c]·a[c·lda + r] for r < len(y), c <
// len(x): a matrix-vector product with the matrix stored column by column
// (column c at a[c·lda:]). The attention kernels use it both ways round:
// scores from transposed keys, and outputs from values.
func gemvCMGeneric(y, a []float32, lda int, x []float32) {
	clear(y)
	for c, xc := range x {
		col := a[c*lda : c*lda+len(y)]
		for r := range y {
			y[r] += xc * col[r]
		}
	}
}

// gemvCM16Generic is gemvCMGeneric over a half-precision matrix: y[r] =
// Σ_c x[c]·f32(a[c·lda + r]), each value widened exactly. It is the
// attention kernels' loop over an f16 KV cache.
func gemvCM16Generic(y []float32, a []uint16, lda int, x []float32) {
	clear(y)
	for c, xc := range x {
		col := a[c*lda : c*lda+len(y)]
		for r := range y {
			y[r] += xc * kernels.F16ToF32(col[r])
		}
	}
}
