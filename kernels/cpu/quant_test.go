package cpu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

var (
	quantTestRows = []int{1, 2, 3, 5, 7, 13, 33, 65, 100}
	quantTestNB   = []int{1, 2, 3, 5, 16, 24, 33, 64}
)

// guard is the slack after every output buffer; it must stay untouched.
const guard = 16

// quantTestInput fills x with values of one of several shapes: normal,
// with zero blocks, with huge and tiny blocks, and exact rounding ties.
func quantTestInput(r *rand.Rand, x []float32, shape int) {
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for b := 0; b < len(x); b += kernels.QK {
		blk := x[b : b+kernels.QK]
		switch shape {
		case 1: // some zero blocks, some blocks with a single value
			switch r.IntN(3) {
			case 0:
				clear(blk)
			case 1:
				clear(blk)
				blk[r.IntN(kernels.QK)] = float32(r.NormFloat64())
			}
		case 2: // extreme magnitudes
			s := float32(math.Pow(10, float64(r.IntN(60)-30)))
			for j := range blk {
				blk[j] *= s
			}
		case 3: // amax = 127·2^k: x·id is exact, so halves are exact ties
			k := float32(math.Ldexp(1, r.IntN(20)-10))
			for j := range blk {
				blk[j] = float32(r.IntN(255)-127) / 2 * k
			}
			blk[r.IntN(kernels.QK)] = 127 * k
			blk[0] = 0.49999997 * k
			blk[1] = -0.5 * k
		case 5: // tiny and subnormal values: 1/d may overflow
			s := float32(math.Ldexp(1, -r.IntN(30)-120))
			for j := range blk {
				blk[j] *= s
			}
		case 6: // multiples of powers of two: halves and near-halves after scaling at every magnitude
			for j := range blk {
				blk[j] = float32(r.IntN(1<<16)) / float32(math.Ldexp(1, r.IntN(16))) * float32(r.IntN(3)-1)
			}
		case 4: // values near ±amax and sign changes
			a := float32(r.Float64()*100 + 1e-3)
			for j := range blk {
				blk[j] = a * float32(r.IntN(3)-1)
			}
		}
	}
}

func TestQuantizeQ8MatchesEncode(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, set := range quantSets() {
		for _, nb := range quantTestNB {
			for shape := 0; shape < 7; shape++ {
				for iter := 0; iter < 20; iter++ {
					x := make([]float32, nb*kernels.QK)
					quantTestInput(r, x, shape)
					want := kernels.Encode(nil, kernels.Q8_0, x)
					got := bytes.Repeat([]byte{0xa5}, len(want)+guard)
					set.quantize(got, x)
					if !bytes.Equal(got[:len(want)], want) {
						b := firstDiff(got, want) / kernels.Q8_0BlockBytes
						t.Fatalf("%s nb=%d shape=%d: block %d differs\n got %x\nwant %x\n   x %v", set.name, nb, shape, b,
							got[b*34:(b+1)*34], want[b*34:(b+1)*34], x[b*32:(b+1)*32])
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
}

func firstDiff(a, b []byte) int {
	for i := range b {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// randF16Scale returns an f16 scale: zero one time in eight, otherwise of
// either sign and a magnitude from 2^-24 (subnormal) to 2^15 (exclusive).
func randF16Scale(r *rand.Rand) uint16 {
	if r.IntN(8) == 0 {
		return 0
	}
	v := float32(math.Ldexp(1+r.Float64(), r.IntN(39)-24))
	if r.IntN(2) == 0 {
		v = -v
	}
	return kernels.F32ToF16(v)
}

// randQuantMatrix makes rows×nb random blocks of type dt. extreme sets
// every quant to its most negative value.
func randQuantMatrix(r *rand.Rand, dt kernels.DType, rows, nb int, extreme bool) []byte {
	bs := dt.BlockBytes()
	w := make([]byte, rows*nb*bs)
	for b := 0; b < rows*nb; b++ {
		blk := w[b*bs : (b+1)*bs]
		binary.LittleEndian.PutUint16(blk, randF16Scale(r))
		for j := 2; j < bs; j++ {
			if extreme {
				if dt == kernels.Q8_0 {
					blk[j] = 0x80
				} else {
					blk[j] = 0
				}
			} else {
				blk[j] = byte(r.UintN(256))
			}
		}
	}
	return w
}

// randXQ makes one Q8_0 activation row with quants in [−127, 127].
func randXQ(r *rand.Rand, nb int, extreme bool) []byte {
	xq := make([]byte, nb*kernels.Q8_0BlockBytes)
	for b := 0; b < nb; b++ {
		blk := xq[b*34 : (b+1)*34]
		binary.LittleEndian.PutUint16(blk, randF16Scale(r))
		for j := 2; j < 34; j++ {
			q := r.IntN(255) - 127
			if extreme {
				q = 127 * (1 - 2*(j&1))
			}
			blk[j] = byte(int8(q))
		}
	}
	return xq
}

// refMatvec is the float64 reference: the dot product of dequantized
// weights and dequantized activations, and the sum of the magnitudes of
// its terms (the scale of the rounding error: the kernels may sum in any
// order, and their per-lane partial sums may cancel).
func refMatvec(dt kernels.DType, w []byte, rows, nb int, xq []byte) (want, mag []float64) {
	n := nb * kernels.QK
	x := make([]float32, n)
	kernels.Decode(x, kernels.Q8_0, xq)
	row := make([]float32, n)
	m, _ := kernels.NewMatrix(dt, rows, n, w)
	want = make([]float64, rows)
	mag = make([]float64, rows)
	for i := 0; i < rows; i++ {
		m.RowF32(row, i)
		for b := 0; b < nb; b++ {
			for j := b * kernels.QK; j < (b+1)*kernels.QK; j++ {
				p := float64(row[j]) * float64(x[j])
				want[i] += p
				mag[i] += math.Abs(p)
			}
		}
	}
	return want, mag
}

func TestMatvecQuant(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, set := range quantSets() {
		for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
			mv := set.q8
			gen := matvecQ8Generic
			if dt == kernels.Q4_0 {
				mv, gen = set.q4, matvecQ4Generic
			}
			for _, rows := range quantTestRows {
				for _, nb := range quantTestNB {
					for iter := 0; iter < 3; iter++ {
						extreme := iter == 2
						w := randQuantMatrix(r, dt, rows, nb, extreme)
						xq := randXQ(r, nb, extreme)
						want, mag := refMatvec(dt, w, rows, nb, xq)
						twin := make([]float32, rows)
						gen(twin, w, nb, xq)
						got := make([]float32, rows+guard)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						mv(got[:rows], w, nb, xq)
						name := fmt.Sprintf("%s %s rows=%d nb=%d extreme=%v", set.name, dt, rows, nb, extreme)
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
}

// TestMatMulQuant checks Backend.MatMul on quantized weights against
// float64 arithmetic on the dequantized weights and the original
// activations, for every kernel set this CPU runs.
func TestMatMulQuant(t *testing.T) {
	defer func() { quantSets()[0].install() }()
	r := rand.New(rand.NewPCG(5, 6))
	for _, set := range quantSets() {
		set.install()
		for _, threads := range []int{1, 2} {
			b := New(threads)
			for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
				for _, shape := range [][2]int{{67, 96}, {256, 768}, {5, 2048}} {
					rows, cols := shape[0], shape[1]
					wf := make([]float32, rows*cols)
					for i := range wf {
						wf[i] = float32(r.NormFloat64())
					}
					m, err := kernels.NewMatrix(dt, rows, cols, kernels.Encode(nil, dt, wf))
					if err != nil {
						t.Fatal(err)
					}
					wd := make([]float32, rows*cols)
					kernels.Decode(wd, dt, m.Data)
					for _, n := range []int{1, 7} {
						x := make([]float32, n*cols)
						for i := range x {
							x[i] = float32(r.NormFloat64())
						}
						out := make([]float32, n*rows+guard)
						for i := range out {
							out[i] = float32(math.NaN())
						}
						b.MatMul(out, m, x, n)
						for tok := 0; tok < n; tok++ {
							xt := x[tok*cols : (tok+1)*cols]
							for i := 0; i < rows; i++ {
								wr := wd[i*cols : (i+1)*cols]
								var want, tol float64
								for c := 0; c < cols; c += kernels.QK {
									var amax float64
									for _, v := range xt[c : c+kernels.QK] {
										amax = max(amax, math.Abs(float64(v)))
									}
									// Quantizing x moves each value by at most
									// half a step, plus the f16 rounding of
									// the scale (2^-11 relative).
									for j := c; j < c+kernels.QK; j++ {
										want += float64(wr[j]) * float64(xt[j])
										tol += math.Abs(float64(wr[j])) * (amax/127*0.5 + math.Abs(float64(xt[j]))*0x1p-11)
									}
								}
								tol += 1e-5 * math.Sqrt(float64(cols))
								got := float64(out[tok*rows+i])
								if !(math.Abs(got-want) <= tol) {
									t.Fatalf("%s threads=%d %s %dx%d n=%d: out[%d,%d] = %g, want %g ± %g",
										set.name, threads, dt, rows, cols, n, tok, i, got, want, tol)
								}
							}
						}
						for i := n * rows; i < len(out); i++ {
							if !math.IsNaN(float64(out[i])) {
								t.Fatalf("%s: MatMul wrote out[%d] past n·rows", set.name, i)
							}
						}
					}
				}
			}
			b.Close()
		}
	}
}

// TestGemmQuant checks the tiled prefill kernels against the matvec twin,
// token by token, with an output stride wider than the rows so that writes
// into the gaps show.
func TestGemmQuant(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, set := range quantSets() {
		for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
			gemm, gen := set.gemm8, matvecQ8Generic
			if dt == kernels.Q4_0 {
				gemm, gen = set.gemm4, matvecQ4Generic
			}
			if gemm == nil {
				continue
			}
			for _, rows := range quantTestRows {
				for _, nb := range quantTestNB {
					for _, n := range []int{1, 2, 4, 5, 8, 11} {
						w := randQuantMatrix(r, dt, rows, nb, false)
						xq := make([]byte, 0, n*nb*kernels.Q8_0BlockBytes)
						for range n {
							xq = append(xq, randXQ(r, nb, false)...)
						}
						ldo := rows + 3
						got := make([]float32, n*ldo+guard)
						for i := range got {
							got[i] = float32(math.NaN())
						}
						gemm(got, ldo, w, rows, nb, xq, n)
						name := fmt.Sprintf("%s %s rows=%d nb=%d n=%d", set.name, dt, rows, nb, n)
						for tok := 0; tok < n; tok++ {
							x := xq[tok*nb*34 : (tok+1)*nb*34]
							want, mag := refMatvec(dt, w, rows, nb, x)
							twin := make([]float32, rows)
							gen(twin, w, nb, x)
							for i := 0; i < rows; i++ {
								g := float64(got[tok*ldo+i])
								tol := 1e-5*mag[i] + 1e-30
								if !(math.Abs(g-want[i]) <= tol) || !(math.Abs(g-float64(twin[i])) <= tol) {
									t.Fatalf("%s: out[%d,%d] = %g, reference %g, twin %g", name, tok, i, g, want[i], twin[i])
								}
							}
						}
						for i := range got {
							if i < n*ldo && i%ldo < rows {
								continue
							}
							if !math.IsNaN(float64(got[i])) {
								t.Fatalf("%s: wrote out[%d] outside the result", name, i)
							}
						}
					}
				}
			}
		}
	}
}

// TestGemmQ8Prepared checks the Q8_0 prefill kernel on prepared activations
// against the matvec twin, with guard bands after the preparation and
// around every output.
func TestGemmQ8Prepared(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, set := range quantSets() {
		if set.prep8 == nil {
			continue
		}
		for _, rows := range quantTestRows {
			for _, nb := range quantTestNB {
				for _, n := range []int{4, 5, 7, 8, 9, 13} {
					extreme := n == 9 // the largest int32 sums
					w := randQuantMatrix(r, kernels.Q8_0, rows, nb, extreme)
					xq := make([]byte, 0, n*nb*kernels.Q8_0BlockBytes)
					for range n {
						xq = append(xq, randXQ(r, nb, extreme)...)
					}
					need := prep8Bytes(nb, n)
					buf := alignedScratch(nil, need+prep8Group)
					for i := range buf {
						buf[i] = 0xa5
					}
					xg := buf[:need]
					set.prep8(xg, xq, nb, n)
					name := fmt.Sprintf("%s rows=%d nb=%d n=%d", set.name, rows, nb, n)
					for i := need; i < len(buf); i++ {
						if buf[i] != 0xa5 {
							t.Fatalf("%s: prep8 wrote byte %d past its %d", name, i, need)
						}
					}
					ldo := rows + 5
					got := make([]float32, n*ldo+guard)
					for i := range got {
						got[i] = float32(math.NaN())
					}
					set.gemm8p(got, ldo, w, rows, nb, xg, xq, n)
					for tok := 0; tok < n; tok++ {
						x := xq[tok*nb*34 : (tok+1)*nb*34]
						want, mag := refMatvec(kernels.Q8_0, w, rows, nb, x)
						twin := make([]float32, rows)
						matvecQ8Generic(twin, w, nb, x)
						for i := 0; i < rows; i++ {
							g := float64(got[tok*ldo+i])
							tol := 1e-5*mag[i] + 1e-30
							if !(math.Abs(g-want[i]) <= tol) || !(math.Abs(g-float64(twin[i])) <= tol) {
								t.Fatalf("%s: out[%d,%d] = %g, reference %g, twin %g", name, tok, i, g, want[i], twin[i])
							}
						}
					}
					for i := range got {
						if i < n*ldo && i%ldo < rows {
							continue
						}
						if !math.IsNaN(float64(got[i])) {
							t.Fatalf("%s: wrote out[%d] outside the result", name, i)
						}
					}
				}
			}
		}
	}
}
