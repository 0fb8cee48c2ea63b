package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// The assembly kernels against their pure-Go twins, on random inputs of
// every length up to a few vector widths and on a few larger ones. The
// two differ only in summation order, so the tolerance is the float32
// rounding bound of a sum, n·u·Σ|terms|.

const u32 = 1.0 / (1 << 24)

func twinLengths() []int {
	var ls []int
	for n := 1; n <= 70; n++ {
		ls = append(ls, n)
	}
	return append(ls, 95, 127, 128, 257, 768, 1000)
}

func randVec(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*r.Float32() - 1
	}
	return s
}

func absDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) * float64(b[i]))
	}
	return s
}

func forEachISA(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer setISA(isa)
	for _, name := range supportedISAs() {
		if name == "go" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			setISA(name)
			f(t)
		})
	}
}

func TestMatvecTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	forEachISA(t, func(t *testing.T) {
		for _, cols := range twinLengths() {
			for _, rows := range []int{1, 2, 3, 4, 5, 8, 11} {
				x := randVec(r, cols)
				wf := randVec(r, rows*cols)
				for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
					data := kernels.Encode(nil, dt, wf)
					dec := make([]float32, rows*cols)
					kernels.Decode(dec, dt, data)
					got := make([]float32, rows+1)
					want := make([]float32, rows)
					got[rows] = 42
					switch dt {
					case kernels.F32:
						matvecF32(got[:rows], dec, cols, x)
						matvecF32Generic(want, dec, cols, x)
					case kernels.F16:
						matvecF16(got[:rows], data, cols, x)
						matvecF16Generic(want, data, cols, x)
					case kernels.BF16:
						matvecBF16(got[:rows], data, cols, x)
						matvecBF16Generic(want, data, cols, x)
					}
					if got[rows] != 42 {
						t.Fatalf("%s %dx%d: wrote past out", dt, rows, cols)
					}
					for i := range want {
						tol := 2 * float64(cols) * u32 * absDot(dec[i*cols:(i+1)*cols], x)
						if d := math.Abs(float64(got[i] - want[i])); d > tol {
							t.Fatalf("%s %dx%d row %d: %v, twin %v (tol %g)", dt, rows, cols, i, got[i], want[i], tol)
						}
					}
				}
			}
		}
	})
}

func TestElementwiseTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	forEachISA(t, func(t *testing.T) {
		for _, n := range twinLengths() {
			a, b, c := randVec(r, n), randVec(r, n), randVec(r, n)
			tol := 2 * float64(n) * u32 * absDot(a, b)
			if d := math.Abs(float64(dotF32(a, b) - dotF32Generic(a, b))); d > tol {
				t.Fatalf("dot n=%d: off by %g", n, d)
			}
			if d := math.Abs(float64(sumSquares(a) - sumSquaresGeneric(a))); d > 2*float64(n)*u32*absDot(a, a) {
				t.Fatalf("sumSquares n=%d: off by %g", n, d)
			}
			got, want := make([]float32, n+1), make([]float32, n)
			got[n] = 42
			scaleMul(got[:n], a, b, 1.7)
			scaleMulGeneric(want, a, b, 1.7)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("scaleMul n=%d [%d]: %v, twin %v", n, i, got[i], want[i])
				}
			}
			y1, y2 := append(append([]float32{}, c...), 42), append([]float32{}, c...)
			addTo(y1[:n], a)
			addToGeneric(y2, a)
			for i := range y2 {
				if y1[i] != y2[i] {
					t.Fatalf("addTo n=%d [%d]: %v, twin %v", n, i, y1[i], y2[i])
				}
			}
			y1, y2 = append(append([]float32{}, c...), 42), append([]float32{}, c...)
			axpy(y1[:n], a, 0.3)
			axpyGeneric(y2, a, 0.3)
			for i := range y2 {
				// FMA rounds once where the twin rounds twice.
				if d := math.Abs(float64(y1[i] - y2[i])); d > 2*u32*(math.Abs(float64(c[i]))+math.Abs(float64(0.3*a[i]))) {
					t.Fatalf("axpy n=%d [%d]: %v, twin %v", n, i, y1[i], y2[i])
				}
			}
			g1, g2 := append(append([]float32{}, a...), 42), make([]float32, n)
			swiglu(g1[:n], a, b)
			swigluGeneric(g2, a, b)
			for i := range g2 {
				if d := math.Abs(float64(g1[i] - g2[i])); d > 4e-6*math.Abs(float64(g2[i])) {
					t.Fatalf("swiglu n=%d [%d]: %v, twin %v", n, i, g1[i], g2[i])
				}
			}
			if y1[n] != 42 || g1[n] != 42 {
				t.Fatalf("n=%d: wrote past the end", n)
			}
		}
	})
}
