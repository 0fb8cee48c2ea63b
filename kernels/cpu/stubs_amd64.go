//go:build amd64 && !noasm

package cpu

import (
	"math"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

// Assembly kernels; see matvec_amd64.s and vec_amd64.s for their reference
// loops.

//go:noescape
func mv1F32AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols int, mask uint64)

//go:noescape
func mv1F16AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols int, mask uint64)

//go:noescape
func mv1BF16AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols int, mask uint64)

//go:noescape
func mv4F32AVX2(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int)

//go:noescape
func mv4F16AVX2(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int)

//go:noescape
func mv4BF16AVX2(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int)

//go:noescape
func gemm12x32AVX512(kc int, a, b, c *float32, ldc, acc int)

//go:noescape
func gemm6x16AVX2(kc int, a, b, c *float32, ldc, acc int)

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func scaleMulAVX2(out, x, w *float32, n int, s float32)

//go:noescape
func addToAVX2(dst, src *float32, n int)

//go:noescape
func axpyAVX2(y, x *float32, n int, a float32)

// mvKind selects a four-row matvec kernel by weight type. The kernels are
// called directly, not through a function value, so that the compiler can
// see that the leftover rows' stack buffer does not escape.
type mvKind uint8

const (
	mvF32 mvKind = iota
	mvF16
	mvBF16
)

func mv4AVX2(k mvKind, out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int) {
	switch k {
	case mvF32:
		mv4F32AVX2(out, w, x, rows, cols, stride)
	case mvF16:
		mv4F16AVX2(out, w, x, rows, cols, stride)
	case mvBF16:
		mv4BF16AVX2(out, w, x, rows, cols, stride)
	}
}

// matvecAVX2 runs k over out's rows, four at a time; each leftover row
// runs alone with a zero stride (four copies of one row). esize is the size
// of a stored weight in bytes. The asm covers cols&^7 and the caller adds
// the rest.
func matvecAVX2(k mvKind, out []float32, w unsafe.Pointer, esize, cols int, x []float32) {
	rows := len(out)
	if rows == 0 {
		return
	}
	stride := cols * esize
	c8 := cols &^ 7
	r4 := rows &^ 3
	if r4 > 0 {
		mv4AVX2(k, &out[0], w, &x[0], r4, c8, stride)
	}
	for r := r4; r < rows; r++ {
		var t [4]float32
		mv4AVX2(k, &t[0], unsafe.Add(w, r*stride), &x[0], 4, c8, 0)
		out[r] = t[0]
	}
}

func matvecF32AVX512(out, w []float32, cols int, x []float32) {
	if len(out) == 0 {
		return
	}
	_, _ = w[len(out)*cols-1], x[cols-1]
	mv1F32AVX512(&out[0], unsafe.Pointer(&w[0]), &x[0], len(out), cols, uint64(1)<<(cols&15)-1)
}

func matvecF16AVX512(out []float32, w []byte, cols int, x []float32) {
	if len(out) == 0 {
		return
	}
	_, _ = w[2*len(out)*cols-1], x[cols-1]
	mv1F16AVX512(&out[0], unsafe.Pointer(&w[0]), &x[0], len(out), cols, uint64(1)<<(cols&15)-1)
}

func matvecBF16AVX512(out []float32, w []byte, cols int, x []float32) {
	if len(out) == 0 {
		return
	}
	_, _ = w[2*len(out)*cols-1], x[cols-1]
	mv1BF16AVX512(&out[0], unsafe.Pointer(&w[0]), &x[0], len(out), cols, uint64(1)<<(cols&15)-1)
}

func matvecF32AVX2(out, w []float32, cols int, x []float32) {
	if len(out) == 0 {
		return
	}
	_, _ = w[len(out)*cols-1], x[cols-1]
	matvecAVX2(mvF32, out, unsafe.Pointer(&w[0]), 4, cols, x)
	if c8 := cols &^ 7; c8 < cols {
		for r := range out {
			var s float32
			for c := c8; c < cols; c++ {
				s += w[r*cols+c] * x[c]
			}
			out[r] += s
		}
	}
}

func matvecF16AVX2(out []float32, w []byte, cols int, x []float32) {
	if len(out) == 0 {
		return
	}
	_, _ = w[2*len(out)*cols-1], x[cols-1]
	matvecAVX2(mvF16, out, unsafe.Pointer(&w[0]), 2, cols, x)
	if c8 := cols &^ 7; c8 < cols {
		h := kernels.BytesU16(w)
		for r := range out {
			var s float32
			for c := c8; c < cols; c++ {
				s += kernels.F16ToF32(h[r*cols+c]) * x[c]
			}
			out[r] += s
		}
	}
}

func matvecBF16AVX2(out []float32, w []byte, cols int, x []float32) {
	if len(out) == 0 {
		return
	}
	_, _ = w[2*len(out)*cols-1], x[cols-1]
	matvecAVX2(mvBF16, out, unsafe.Pointer(&w[0]), 2, cols, x)
	if c8 := cols &^ 7; c8 < cols {
		h := kernels.BytesU16(w)
		for r := range out {
			var s float32
			for c := c8; c < cols; c++ {
				s += math.Float32frombits(uint32(h[r*cols+c])<<16) * x[c]
			}
			out[r] += s
		}
	}
}

func dotF32AVX2(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	n8 := n &^ 7
	var s float32
	if n8 > 0 {
		s = dotAVX2(&a[0], &b[0], n8)
	}
	for i := n8; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func sumSquaresAVX2(x []float32) float32 { return dotF32AVX2(x, x) }

func scaleMulAVX2Go(out, x, w []float32, s float32) {
	n := len(x)
	out, w = out[:n], w[:n]
	n8 := n &^ 7
	if n8 > 0 {
		scaleMulAVX2(&out[0], &x[0], &w[0], n8, s)
	}
	for i := n8; i < n; i++ {
		out[i] = x[i] * s * w[i]
	}
}

func addToAVX2Go(dst, src []float32) {
	n := len(dst)
	src = src[:n]
	n8 := n &^ 7
	if n8 > 0 {
		addToAVX2(&dst[0], &src[0], n8)
	}
	for i := n8; i < n; i++ {
		dst[i] += src[i]
	}
}

func axpyAVX2Go(y, x []float32, a float32) {
	n := len(y)
	x = x[:n]
	n8 := n &^ 7
	if n8 > 0 {
		axpyAVX2(&y[0], &x[0], n8, a)
	}
	for i := n8; i < n; i++ {
		y[i] += a * x[i]
	}
}

//go:noescape
func sumAVX2(x *float32, n int) float32

// readSum sums x (a multiple of 64 values) as fast as memory allows.
func readSum(x []float32) float32 {
	if !hasAVX2() {
		return sumSquaresGeneric(x)
	}
	return sumAVX2(&x[0], len(x)&^63)
}

func hasAVX2() bool { return len(supportedISAs()) > 1 }

//go:noescape
func pack8F32AVX2(dst *float32, nr int, src unsafe.Pointer, stride, kc int)

//go:noescape
func pack8F16AVX2(dst *float32, nr int, src unsafe.Pointer, stride, kc int)

//go:noescape
func pack8BF16AVX2(dst *float32, nr int, src unsafe.Pointer, stride, kc int)

// pack8AVX2 packs rows [r0, r0+8) of w, columns [pc, pc+kc&^7), into dst
// as packW does; it reports how many columns it did.
func pack8AVX2(dst []float32, w *kernels.Matrix, r0, nr, pc, kc int) int {
	k8 := kc &^ 7
	if k8 == 0 {
		return 0
	}
	K := w.Cols
	_ = dst[(k8-1)*nr+7]
	switch w.Type {
	case kernels.F32:
		src := w.Data[4*(r0*K+pc) : 4*((r0+7)*K+pc+k8)]
		pack8F32AVX2(&dst[0], nr, unsafe.Pointer(&src[0]), K, k8)
	case kernels.F16:
		src := w.Data[2*(r0*K+pc) : 2*((r0+7)*K+pc+k8)]
		pack8F16AVX2(&dst[0], nr, unsafe.Pointer(&src[0]), K, k8)
	case kernels.BF16:
		src := w.Data[2*(r0*K+pc) : 2*((r0+7)*K+pc+k8)]
		pack8BF16AVX2(&dst[0], nr, unsafe.Pointer(&src[0]), K, k8)
	default:
		return 0
	}
	return k8
}
