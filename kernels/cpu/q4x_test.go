package cpu

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// q4xTestNB covers whole groups of four blocks and every partial one.
var q4xTestNB = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 24, 64, 67}

// q4xSets are the prepared Q4_0 kernels to test: each kernel set's, and
// the Go twins.
func q4xSets() []quantKernels {
	l := []quantKernels{{name: "go-twin", prep4: prepQ4Generic, q4x: matvecQ4PrepGeneric}}
	for _, s := range quantSets() {
		if s.prep4 != nil {
			l = append(l, s)
		}
	}
	return l
}

func TestPrepQ4MatchesTwin(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, set := range q4xSets() {
		for _, nb := range q4xTestNB {
			for iter := 0; iter < 3; iter++ {
				xq := randXQ(r, nb, iter == 2)
				want := make([]byte, q4PrepBytes(nb))
				prepQ4Generic(want, xq, nb)
				got := bytes.Repeat([]byte{0xa5}, len(want)+guard)
				set.prep4(got, xq, nb)
				if i := firstDiff(got, want); i >= 0 {
					t.Fatalf("%s nb=%d: byte %d (group %d, offset %d) = %#x, want %#x", set.name, nb, i,
						i/q4PrepGroup, i%q4PrepGroup, got[i], want[i])
				}
				for _, c := range got[len(want):] {
					if c != 0xa5 {
						t.Fatalf("%s nb=%d: wrote past the end", set.name, nb)
					}
				}
			}
		}
	}
}

// TestMatvecQ4Prep checks the prepared Q4_0 matvecs against the float64
// reference and the plain Go twin, on odd row counts and every partial
// last group, with a guard band after the output.
func TestMatvecQ4Prep(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, set := range q4xSets() {
		for _, rows := range quantTestRows {
			for _, nb := range q4xTestNB {
				for iter := 0; iter < 3; iter++ {
					extreme := iter == 2
					w := randQuantMatrix(r, kernels.Q4_0, rows, nb, extreme)
					xq := randXQ(r, nb, extreme)
					want, mag := refMatvec(kernels.Q4_0, w, rows, nb, xq)
					twin := make([]float32, rows)
					matvecQ4Generic(twin, w, nb, xq)
					xp := make([]byte, q4PrepBytes(nb))
					set.prep4(xp, xq, nb)
					got := make([]float32, rows+guard)
					for i := range got {
						got[i] = float32(math.NaN())
					}
					set.q4x(got[:rows], w, nb, xp)
					name := fmt.Sprintf("%s rows=%d nb=%d extreme=%v", set.name, rows, nb, extreme)
					for i := 0; i < rows; i++ {
						tol := 1e-5*mag[i] + 1e-30
						if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
							t.Fatalf("%s: row %d = %g, float64 reference %g (tol %g)", name, i, got[i], want[i], tol)
						}
						if d := math.Abs(float64(got[i]) - float64(twin[i])); !(d <= tol) {
							t.Fatalf("%s: row %d = %g, generic twin %g (tol %g)", name, i, got[i], twin[i], tol)
						}
					}
					for i := rows; i < len(got); i++ {
						if !math.IsNaN(float64(got[i])) {
							t.Fatalf("%s: wrote out[%d] past the end", name, i)
						}
					}
				}
			}
		}
	}
}

// BenchmarkMatvecQ4Kernels compares, on one thread, the plain Q4_0 matvec
// of each kernel set with the prepared one (its prep4 included), on a
// matrix that fits the L2, one that fits the L3 and several copies of one
// that stream from memory.
func BenchmarkMatvecQ4Kernels(b *testing.B) {
	type kern struct {
		name string
		run  func(out []float32, w []byte, nb int, xq, xp []byte)
	}
	var ks []kern
	for _, s := range quantSets() {
		ks = append(ks, kern{s.name + "/plain", func(out []float32, w []byte, nb int, xq, _ []byte) { s.q4(out, w, nb, xq) }})
		if s.prep4 != nil {
			ks = append(ks, kern{s.name + "/prep", func(out []float32, w []byte, nb int, xq, xp []byte) {
				s.prep4(xp, xq, nb)
				s.q4x(out, w, nb, xp)
			}})
		}
	}
	for _, sh := range [][3]int{{768, 768, 1}, {2048, 768, 1}, {768, 2048, 1}, {4096, 4096, 8}} {
		rows, cols, copies := sh[0], sh[1], sh[2]
		nb := cols / kernels.QK
		ms := make([]*kernels.Matrix, copies)
		for i := range ms {
			ms[i] = quantBenchMatrix(kernels.Q4_0, rows, cols, uint64(i+1))
		}
		xq := make([]byte, nb*kernels.Q8_0BlockBytes)
		quantizeQ8(xq, quantBenchActivations(cols))
		xp := make([]byte, q4PrepBytes(nb))
		out := make([]float32, rows)
		for _, k := range ks {
			b.Run(fmt.Sprintf("%s/%dx%d", k.name, rows, cols), func(b *testing.B) {
				b.SetBytes(int64(len(ms[0].Data)))
				i := 0
				for b.Loop() {
					k.run(out, ms[i].Data, nb, xq, xp)
					i = (i + 1) % len(ms)
				}
			})
		}
	}
}
