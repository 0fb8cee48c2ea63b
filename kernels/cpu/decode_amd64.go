//go:build amd64 && !noasm

package cpu

import (
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

//go:noescape
func decQ4AVX512(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)

//go:noescape
func decQ8AVX512(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)

//go:noescape
func decQ4AVX2(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)

//go:noescape
func decQ8AVX2(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)

//go:noescape
func decBF16AVX2(dst *float32, ld int, w unsafe.Pointer, rb, kc, n8 int)

//go:noescape
func decF16AVX2(dst *float32, ld int, w unsafe.Pointer, rb, kc, n8 int)

func decodeRowsAVX512(dst []float32, ld int, w *kernels.Matrix, r0, kc, c0, cnt int) int {
	return decodeRowsAsm(dst, ld, w, r0, kc, c0, cnt, decQ4AVX512, decQ8AVX512)
}

func decodeRowsAVX2(dst []float32, ld int, w *kernels.Matrix, r0, kc, c0, cnt int) int {
	return decodeRowsAsm(dst, ld, w, r0, kc, c0, cnt, decQ4AVX2, decQ8AVX2)
}

// decodeRowsAsm checks the bounds of a strip and runs the decoder of its
// type: whole pieces of 16 values (half blocks) for Q4_0 and Q8_0, of 8
// for BF16 and F16.
func decodeRowsAsm(dst []float32, ld int, w *kernels.Matrix, r0, kc, c0, cnt int,
	q4, q8 func(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)) int {
	if kc <= 0 || cnt <= 0 || r0 < 0 || c0 < 0 || c0+cnt > w.Cols || r0+kc > w.Rows {
		return 0
	}
	switch w.Type {
	case kernels.Q4_0, kernels.Q8_0:
		n16 := cnt / 16
		if c0%16 != 0 || n16 == 0 {
			return 0
		}
		bs := w.Type.BlockBytes()
		rb := w.Cols / kernels.QK * bs
		_ = dst[(kc-1)*ld+16*n16-1]
		_ = w.Data[(r0+kc-1)*rb+(c0+16*n16-1)/kernels.QK*bs+bs-1]
		dec := q4
		if w.Type == kernels.Q8_0 {
			dec = q8
		}
		dec(&dst[0], ld, &w.Data[r0*rb], rb, kc, c0/16, n16)
		return 16 * n16
	case kernels.BF16, kernels.F16:
		n8 := cnt / 8
		if n8 == 0 {
			return 0
		}
		C := w.Cols
		_ = dst[(kc-1)*ld+8*n8-1]
		_ = w.Data[2*((r0+kc-1)*C+c0+8*n8)-1]
		p := unsafe.Pointer(&w.Data[2*(r0*C+c0)])
		if w.Type == kernels.BF16 {
			decBF16AVX2(&dst[0], ld, p, 2*C, kc, n8)
		} else {
			decF16AVX2(&dst[0], ld, p, 2*C, kc, n8)
		}
		return 8 * n8
	}
	return 0
}
