//go:build amd64 && !noasm

package cpu

import "github.com/mycel-net/mycel/kernels"

//go:noescape
func gemv16BlockAVX512(y *float32, a *uint16, lda int, x *float32, cols int, masks uint64)

//go:noescape
func gemv16Block32AVX2(y *float32, a *uint16, lda int, x *float32, cols int)

//go:noescape
func gemv16Block8AVX2(y *float32, a *uint16, lda int, x *float32, cols int)

// gemvCM16AVX512 is gemvCM16Generic in blocks of 64 rows, the last one
// masked.
func gemvCM16AVX512(y []float32, a []uint16, lda int, x []float32) {
	rows, cols := len(y), len(x)
	if rows == 0 || cols == 0 {
		clear(y)
		return
	}
	_ = a[(cols-1)*lda+rows-1]
	for r0 := 0; r0 < rows; r0 += 64 {
		n := min(64, rows-r0)
		masks := ^uint64(0)
		if n < 64 {
			masks = 1<<n - 1
		}
		gemv16BlockAVX512(&y[r0], &a[r0], lda, &x[0], cols, masks)
	}
}

// gemvCM16AVX2 runs blocks of 32 rows, then of 8, in AVX2 and the last
// few rows in Go.
func gemvCM16AVX2(y []float32, a []uint16, lda int, x []float32) {
	rows, cols := len(y), len(x)
	if rows == 0 || cols == 0 {
		clear(y)
		return
	}
	_ = a[(cols-1)*lda+rows-1]
	r32 := rows &^ 31
	for r0 := 0; r0 < r32; r0 += 32 {
		gemv16Block32AVX2(&y[r0], &a[r0], lda, &x[0], cols)
	}
	r8 := rows &^ 7
	for r0 := r32; r0 < r8; r0 += 8 {
		gemv16Block8AVX2(&y[r0], &a[r0], lda, &x[0], cols)
	}
	if r8 < rows {
		gemvCM16Generic(y[r8:], a[r8:], lda, x)
	}
}

//go:noescape
func toF16AVX2(dst *uint16, src *float32, n int)

// toF16F16C is toF16Generic with the F16C conversion for all but the last
// len(src)%8 values.
func toF16F16C(dst []uint16, src []float32) {
	n := len(src)
	dst = dst[:n]
	n8 := n &^ 7
	if n8 > 0 {
		toF16AVX2(&dst[0], &src[0], n8)
	}
	for i := n8; i < n; i++ {
		dst[i] = kernels.F32ToF16(src[i])
	}
}
