//go:build amd64 && !noasm

package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestExpAVX2 checks the vector exponential against math.Exp inside its
// clamping range, and the clamping outside it, with guard values after the
// output, for every length up to 70 (vector body and scalar tail).
func TestExpAVX2(t *testing.T) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		t.Skip("no AVX2+FMA on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= 70; n++ {
		for _, span := range []float32{1, 30, 200} {
			src := make([]float32, n)
			for i := range src {
				src[i] = (r.Float32()*2 - 1) * span
			}
			dst := make([]float32, n+8)
			for i := range dst {
				dst[i] = float32(math.NaN())
			}
			const shift, scale = 0.25, 0.9
			sum := expShiftedAVX2(dst[:n], src, shift, scale)
			var want64 float64
			for i, v := range src {
				a := float64((v - shift) * scale)
				w := math.Exp(min(max(a, -86), 88))
				if i < n&^7 {
					want64 += w
				} else {
					// The scalar tail does not clamp.
					w = math.Exp(a)
					want64 += w
				}
				if math.IsInf(float64(float32(w)), 1) {
					if !math.IsInf(float64(dst[i]), 1) {
						t.Fatalf("n=%d: exp(%g) = %g, want +Inf", n, a, dst[i])
					}
					continue
				}
				if d := math.Abs(float64(dst[i]) - w); d > 4e-7*w+2e-38 {
					t.Fatalf("n=%d: exp(%g) = %g, want %g (relative error %.2g)", n, a, dst[i], w, d)
				}
			}
			for i := n; i < len(dst); i++ {
				if !math.IsNaN(float64(dst[i])) {
					t.Fatalf("n=%d: wrote past the end at %d", n, i)
				}
			}
			if want64 < math.MaxFloat32 && math.Abs(float64(sum)-want64) > 1e-5*want64+1e-37 {
				t.Errorf("n=%d: sum %g, want %g", n, sum, want64)
			}
		}
	}
}

func BenchmarkSoftmax(b *testing.B) {
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(i%37) * 0.1
	}
	for b.Loop() {
		softmaxScaled(x, 0.125)
	}
}
