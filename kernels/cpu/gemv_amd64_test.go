//go:build amd64 && !noasm

package cpu

import (
	"math"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestGemvCM checks the column-major block kernels against the Go twin
// for row counts around the block sizes and odd strides, with NaN guards
// after the output and NaN in the matrix's unused rows (which must not be
// read into the result).
func TestGemvCM(t *testing.T) {
	type impl struct {
		name string
		f    func(y, a []float32, lda int, x []float32)
		ok   bool
	}
	x86 := cpu.X86
	for _, im := range []impl{
		{"avx512", gemvCMAVX512, x86.HasAVX512F && x86.HasAVX512VL},
		{"avx2", gemvCMAVX2, x86.HasAVX2 && x86.HasFMA},
	} {
		if !im.ok {
			continue
		}
		for _, rows := range []int{1, 7, 16, 17, 31, 32, 33, 63, 64, 65, 130, 301} {
			for _, cols := range []int{0, 1, 8, 17, 64} {
				lda := rows + 5
				a := randVecSeed(max(1, cols*lda), uint64(rows*100+cols))
				for c := 0; c < cols; c++ {
					for r := rows; r < lda; r++ {
						a[c*lda+r] = float32(math.NaN())
					}
				}
				x := randVecSeed(cols, 7)
				want := make([]float32, rows)
				gemvCMGeneric(want, a, lda, x)
				buf := make([]float32, rows+16)
				for i := range buf {
					buf[i] = float32(math.NaN())
				}
				im.f(buf[:rows], a, lda, x)
				for r := 0; r < rows; r++ {
					if d := math.Abs(float64(buf[r] - want[r])); d > 1e-5*(1+math.Abs(float64(want[r]))) {
						t.Fatalf("%s rows=%d cols=%d: y[%d] = %v, want %v", im.name, rows, cols, r, buf[r], want[r])
					}
				}
				for r := rows; r < len(buf); r++ {
					if !math.IsNaN(float64(buf[r])) {
						t.Fatalf("%s rows=%d cols=%d: wrote past the end at %d", im.name, rows, cols, r)
					}
				}
			}
		}
	}
}
