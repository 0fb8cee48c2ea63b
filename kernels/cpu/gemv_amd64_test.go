//go:build amd64 && !noasm

package cpu

import (
	"math"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/mycel-net/mycel/kernels"
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

// TestGemvCM16 checks the half-precision column-major kernels against the
// Go twin as TestGemvCM does: row counts around the block sizes (64 for
// AVX-512; 32 and 8 for AVX2), odd strides, NaN guards after the output
// and NaN in the matrix's unused rows.
func TestGemvCM16(t *testing.T) {
	type impl struct {
		name string
		f    func(y []float32, a []uint16, lda int, x []float32)
		ok   bool
	}
	x86 := cpu.X86
	for _, im := range []impl{
		{"avx512", gemvCM16AVX512, x86.HasAVX512F && x86.HasAVX512VL && x86.HasAVX512BW},
		{"avx2", gemvCM16AVX2, x86.HasAVX2 && x86.HasFMA && x86.HasF16C},
	} {
		if !im.ok {
			continue
		}
		for _, rows := range []int{1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 47, 63, 64, 65, 130, 301} {
			for _, cols := range []int{0, 1, 2, 3, 5, 8, 17, 64} {
				lda := rows + 5
				af := randVecSeed(max(1, cols*lda), uint64(rows*100+cols))
				a := make([]uint16, len(af))
				for i, v := range af {
					a[i] = kernels.F32ToF16(v)
				}
				for c := 0; c < cols; c++ {
					for r := rows; r < lda; r++ {
						a[c*lda+r] = 0x7e00 // NaN
					}
				}
				x := randVecSeed(cols, 7)
				want := make([]float32, rows)
				gemvCM16Generic(want, a, lda, x)
				buf := make([]float32, rows+16)
				for i := range buf {
					buf[i] = float32(math.NaN())
				}
				im.f(buf[:rows], a[:max(0, (cols-1)*lda+rows)], lda, x)
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

// TestToF16 checks the F16C rounding of the f16 cache stores against
// kernels.F32ToF16, bit for bit: every half, the midpoints between
// neighbouring halves and their float32 neighbours, values past the half
// range, random float32 of every exponent, in lengths with and without a
// tail for the Go loop, and with guards after the output.
func TestToF16(t *testing.T) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasF16C {
		t.Skip("no F16C")
	}
	var src []float32
	for h := 0; h < 0x7c00; h++ {
		a := kernels.F16ToF32(uint16(h))
		b := kernels.F16ToF32(uint16(h + 1))
		mid := float32((float64(a) + float64(b)) / 2)
		src = append(src, a, -a, mid, -mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9))
	}
	src = append(src, 65519, 65520, 1e30, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-30, -1e-30)
	r := uint64(1)
	for range 1 << 16 {
		r = r*6364136223846793005 + 1442695040888963407
		if x := math.Float32frombits(uint32(r >> 32)); !math.IsNaN(float64(x)) {
			src = append(src, x)
		}
	}
	for _, n := range []int{len(src), len(src) - 1, 7, 8, 9, 0} {
		dst := make([]uint16, n+8)
		for i := range dst {
			dst[i] = 0xabcd
		}
		toF16F16C(dst[:n], src[:n])
		for i := 0; i < n; i++ {
			if want := kernels.F32ToF16(src[i]); dst[i] != want {
				t.Fatalf("n=%d: f16(%v) = %#04x, want %#04x", n, src[i], dst[i], want)
			}
		}
		for i := n; i < len(dst); i++ {
			if dst[i] != 0xabcd {
				t.Fatalf("n=%d: wrote past the end at %d", n, i)
			}
		}
	}
	nan := []float32{float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0}
	out := make([]uint16, 8)
	toF16F16C(out, nan)
	if f := kernels.F16ToF32(out[0]); f == f {
		t.Errorf("f16(NaN) = %#04x, not a NaN", out[0])
	}
}

// TestMaxF32 checks the AVX2 maximum against the Go twin for lengths
// around its 8- and 32-value steps, with the maximum at every place.
func TestMaxF32(t *testing.T) {
	if !cpu.X86.HasAVX2 {
		t.Skip("no AVX2")
	}
	for _, n := range []int{1, 2, 7, 8, 9, 31, 32, 33, 40, 63, 64, 65, 192, 301} {
		x := randVecSeed(n, uint64(n))
		for i := range x {
			x[i] -= 3 // all negative: a zero start would be wrong
		}
		for at := range n {
			y := append([]float32(nil), x...)
			y[at] = -0.5
			if got, want := maxF32AVX2(y), maxF32Generic(y); got != want || got != -0.5 {
				t.Fatalf("n=%d, largest at %d: got %v, want %v", n, at, got, want)
			}
		}
	}
}
