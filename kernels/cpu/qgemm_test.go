package cpu

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// qgSets are the quantized GEMM kernels to test: the Go twins and each
// kernel set's.
func qgSets() map[string]qgKernels {
	m := map[string]qgKernels{"go-twin": {pack4: qgPack4Generic, pack8: qgPack8Generic, prep: qgPrepGeneric, gemm: qgGemmGeneric}}
	for _, s := range quantSets() {
		if s.qg.gemm != nil {
			m[s.name] = s.qg
		}
	}
	return m
}

var qgTestNB = []int{1, 2, 3, 5, 9, 24, 64}

// qgOffsets returns the row offsets of a panel of nr rows of rb bytes,
// the rows past nr repeating the last.
func qgOffsets(nr, rb int) *[qgRows]int32 {
	var offs [qgRows]int32
	for i := range offs {
		offs[i] = int32(min(i, nr-1) * rb)
	}
	return &offs
}

func TestQGPackMatchesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for name, set := range qgSets() {
		for _, dt := range []kernels.DType{kernels.Q4_0, kernels.Q8_0} {
			pack, twin := set.pack4, qgPack4Generic
			if dt == kernels.Q8_0 {
				pack, twin = set.pack8, qgPack8Generic
			}
			for _, nb := range qgTestNB {
				for _, nr := range []int{1, 5, 16, 17, 31, 32} {
					rb := nb * dt.BlockBytes()
					w := randQuantMatrix(r, dt, nr, nb, false)
					offs := qgOffsets(nr, rb)
					want := make([]byte, nb*qgPanelBlock)
					twin(want, w, offs, nb)
					got := bytes.Repeat([]byte{0xa5}, len(want)+guard)
					pack(got, w, offs, nb)
					if i := firstDiff(got, want); i >= 0 {
						t.Fatalf("%s %s nb=%d rows=%d: byte %d (block %d, offset %d) = %#x, want %#x",
							name, dt, nb, nr, i, i/qgPanelBlock, i%qgPanelBlock, got[i], want[i])
					}
					for _, c := range got[len(want):] {
						if c != 0xa5 {
							t.Fatalf("%s %s nb=%d: wrote past the panel", name, dt, nb)
						}
					}
				}
			}
		}
	}
}

func TestQGPrepMatchesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for name, set := range qgSets() {
		for _, nb := range qgTestNB {
			for _, m := range []int{8, 128} {
				for iter := 0; iter < 3; iter++ {
					xb := nb*kernels.Q8_0BlockBytes + 34*iter // rows further apart than they are long
					xq := make([]byte, qgToks*xb)
					for tok := 0; tok < qgToks; tok++ {
						copy(xq[tok*xb:], randXQ(r, nb, iter == 2))
					}
					want := make([]byte, nb*qgGroupBlock)
					qgPrepGeneric(want, xq, xb, nb, m)
					got := bytes.Repeat([]byte{0xa5}, len(want)+guard)
					set.prep(got, xq, xb, nb, m)
					if i := firstDiff(got, want); i >= 0 {
						t.Fatalf("%s nb=%d m=%d: byte %d (block %d, offset %d) = %#x, want %#x",
							name, nb, m, i, i/qgGroupBlock, i%qgGroupBlock, got[i], want[i])
					}
					for _, c := range got[len(want):] {
						if c != 0xa5 {
							t.Fatalf("%s nb=%d: wrote past the group", name, nb)
						}
					}
				}
			}
		}
	}
}

// TestQGGemm checks each set's whole pipeline (pack, prepare, tiles)
// against the float64 reference and the plain matvec twin, for partial
// panels, one and several groups, with a stride wider than the rows so
// that writes outside the result show.
func TestQGGemm(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for name, set := range qgSets() {
		for _, dt := range []kernels.DType{kernels.Q4_0, kernels.Q8_0} {
			pack, gen := set.pack4, matvecQ4Generic
			if dt == kernels.Q8_0 {
				pack, gen = set.pack8, matvecQ8Generic
			}
			for _, nb := range qgTestNB {
				for _, nr := range []int{1, 7, 16, 23, 32} {
					for _, ng := range []int{1, 3} {
						extreme := ng == 3 && nb == 64
						rb := nb * dt.BlockBytes()
						xb := nb * kernels.Q8_0BlockBytes
						w := randQuantMatrix(r, dt, nr, nb, extreme)
						n := ng * qgToks
						xq := make([]byte, 0, n*xb)
						for range n {
							xq = append(xq, randXQ(r, nb, extreme)...)
						}
						panel := alignedScratch(nil, nb*qgPanelBlock)
						pack(panel, w, qgOffsets(nr, rb), nb)
						xg := alignedScratch(nil, ng*nb*qgGroupBlock)
						for g := 0; g < ng; g++ {
							set.prep(xg[g*nb*qgGroupBlock:], xq[g*qgToks*xb:], xb, nb, qgCorrection(dt))
						}
						ldo := nr + 3
						got := make([]float32, n*ldo+guard)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						set.gemm(got, ldo, panel, nb, xg, ng, uint32(1<<nr-1), w)
						what := fmt.Sprintf("%s %s rows=%d nb=%d groups=%d", name, dt, nr, nb, ng)
						for tok := 0; tok < n; tok++ {
							x := xq[tok*xb : (tok+1)*xb]
							want, mag := refMatvec(dt, w, nr, nb, x)
							twin := make([]float32, nr)
							gen(twin, w, nb, x)
							for i := 0; i < nr; i++ {
								g := float64(got[tok*ldo+i])
								tol := 1e-5*mag[i] + 1e-30
								if !(math.Abs(g-want[i]) <= tol) || !(math.Abs(g-float64(twin[i])) <= tol) {
									t.Fatalf("%s: out[%d,%d] = %g, reference %g, twin %g", what, tok, i, g, want[i], twin[i])
								}
							}
						}
						for i := range got {
							if i < n*ldo && i%ldo < nr {
								continue
							}
							if !math.IsNaN(float64(got[i])) {
								t.Fatalf("%s: wrote out[%d] outside the result", what, i)
							}
						}
					}
				}
			}
		}
	}
}

// TestQGemmThreads checks that MatMul on quantized weights with many rows
// of activations gives bitwise the same result with 1, 2 and 3 threads,
// on shapes with a partial last panel and a partial last group.
func TestQGemmThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	for _, dt := range []kernels.DType{kernels.Q4_0, kernels.Q8_0} {
		for _, s := range [][3]int{{37, 100, 96}, {64, 288, 288}, {13, 33, 256}, {5, 70, 64}} {
			n, rows, cols := s[0], s[1], s[2]
			wf := make([]float32, rows*cols)
			for i := range wf {
				wf[i] = float32(r.NormFloat64())
			}
			m, err := kernels.NewMatrix(dt, rows, cols, kernels.Encode(nil, dt, wf))
			if err != nil {
				t.Fatal(err)
			}
			x := randVecSeed(n*cols, uint64(n))
			sameOverThreads(t, m, x, n)
		}
	}
}

// sameOverThreads checks that m·x over n tokens gives bitwise the same
// result with 1, 2 and 3 threads.
func sameOverThreads(t *testing.T, m *kernels.Matrix, x []float32, n int) {
	t.Helper()
	var first []float32
	for _, threads := range []int{1, 2, 3} {
		b := New(threads)
		out := make([]float32, n*m.Rows)
		b.MatMul(out, m, x, n)
		b.Close()
		if first == nil {
			first = out
		} else if !bitsEqualF32(out, first) {
			t.Errorf("%s n=%d %dx%d: %d threads differ from 1", m.Type, n, m.Rows, m.Cols, threads)
		}
	}
}
