//go:build amd64 && !noasm

package cpu

//go:noescape
func gemvBlockAVX512(y, a *float32, lda int, x *float32, cols int, masks uint64)

//go:noescape
func gemvBlock32AVX2(y, a *float32, lda int, x *float32, cols int)

// gemvCMAVX512 is gemvCMGeneric in blocks of 64 rows, the last one masked.
func gemvCMAVX512(y, a []float32, lda int, x []float32) {
	rows, cols := len(y), len(x)
	if rows == 0 || cols == 0 {
		clear(y)
		return
	}
	_ = a[(cols-1)*lda+rows-1]
	for r0 := 0; r0 < rows; r0 += 64 {
		n := min(64, rows-r0)
		var masks uint64
		if n == 64 {
			masks = ^uint64(0)
		} else {
			masks = 1<<n - 1
		}
		gemvBlockAVX512(&y[r0], &a[r0], lda, &x[0], cols, masks)
	}
}

// gemvCMAVX2 runs blocks of 32 rows in AVX2 and the rest in Go.
func gemvCMAVX2(y, a []float32, lda int, x []float32) {
	rows, cols := len(y), len(x)
	if rows == 0 || cols == 0 {
		clear(y)
		return
	}
	_ = a[(cols-1)*lda+rows-1]
	r32 := rows &^ 31
	for r0 := 0; r0 < r32; r0 += 32 {
		gemvBlock32AVX2(&y[r0], &a[r0], lda, &x[0], cols)
	}
	if r32 < rows {
		gemvCMGeneric(y[r32:], a[r32:], lda, x)
	}
}
