package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// TestTrainer runs every kernels.Trainer method of tr on random inputs of
// awkward sizes and compares the results with the float64 references,
// within tolerances derived from float32 rounding: each output may be off
// by a small multiple of u times the sum of the magnitudes of the terms
// that make it up, which the references return beside it. Every output
// lies between NaN-filled guard bands, and an output that is overwritten
// starts as NaN, so that reading it shows. It then checks each backward
// against central finite differences of the float64 forward references
// (GradCheck). TestBackend runs it for every backend that implements
// kernels.Trainer.
func TestTrainer(t *testing.T, tr kernels.Trainer) {
	t.Run("MatMulT", func(t *testing.T) { testMatMulT(t, tr) })
	t.Run("MatMulTLarge", func(t *testing.T) { testMatMulTLarge(t, tr) })
	t.Run("MatMulGrad", func(t *testing.T) { testMatMulGrad(t, tr) })
	t.Run("RMSNormBackward", func(t *testing.T) { testRMSNormBackward(t, tr) })
	t.Run("RoPEBackward", func(t *testing.T) { testRoPEBackward(t, tr) })
	t.Run("SwiGLUBackward", func(t *testing.T) { testSwiGLUBackward(t, tr) })
	t.Run("SoftmaxBackward", func(t *testing.T) { testSoftmaxBackward(t, tr) })
	t.Run("AttentionBackward", func(t *testing.T) { testAttentionBackward(t, tr) })
	t.Run("CrossEntropy", func(t *testing.T) { testCrossEntropy(t, tr) })
	t.Run("GradCheck", func(t *testing.T) { testGradCheck(t, tr) })
}

// weightTypes are the weight types MatMul reads, which MatMulT must read too.
var weightTypes = []kernels.DType{kernels.F32, kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0}

func checkMatMulT(t *testing.T, tr kernels.Trainer, r *rand.Rand, dt kernels.DType, rows, cols, n int, acc bool) {
	t.Helper()
	w := randMatrix(r, dt, rows, cols)
	dy := randF32(r, n*rows, 1)
	dy0 := slices.Clone(dy)
	var init []float32
	if acc {
		init = randF32(r, n*cols, 1)
	}
	buf, dx := guarded(n*cols, init)
	tr.MatMulT(dx, w, dy, n, acc)
	what := fmt.Sprintf("%s %dx%d, n=%d, accumulate=%v", dt, rows, cols, n, acc)
	checkGuards(t, what, buf, n*cols)
	if !slices.Equal(dy, dy0) {
		t.Errorf("%s: MatMulT changed dy", what)
	}
	want, abs := matMulTAbs(decodeMatrix(w), rows, cols, f64(dy), n)
	if acc {
		for i, v := range init {
			want[i] += float64(v)
			abs[i] += math.Abs(float64(v))
		}
	}
	compare(t, what, dx, want, func(i int) float64 { return float64(rows+8)*u*abs[i] + 1e-30 })
}

func testMatMulT(t *testing.T, tr kernels.Trainer) {
	r := newRand(21)
	for _, dt := range weightTypes {
		cols := floatCols
		if dt.Quantized() {
			cols = quantCols
		}
		for _, rows := range []int{1, 7, 33, 65} {
			for _, c := range cols {
				for _, n := range []int{1, 5, 37} {
					for _, acc := range []bool{false, true} {
						checkMatMulT(t, tr, r, dt, rows, c, n, acc)
					}
				}
			}
		}
	}
	// The types that are only read, on whole blocks of their size.
	for _, dt := range readTypes {
		for _, rows := range []int{1, 33} {
			for _, c := range []int{dt.BlockLen(), 2 * kernels.QKK} {
				for _, n := range []int{1, 37} {
					checkMatMulT(t, tr, r, dt, rows, c, n, n == 1)
				}
			}
		}
	}
}

// testMatMulTLarge covers shapes past the cache blocking of a GEMM: depth
// (w.Rows) beyond a few hundred, more rows of dy than one block, partial
// tiles on every side.
func testMatMulTLarge(t *testing.T, tr kernels.Trainer) {
	if testing.Short() {
		t.Skip("short")
	}
	r := newRand(22)
	for _, dt := range weightTypes {
		checkMatMulT(t, tr, r, dt, 333, 608, 207, false)
		checkMatMulT(t, tr, r, dt, 1000, 1056, 3, true)
		checkMatMulT(t, tr, r, dt, 131, 2080, 29, false)
		checkMatMulT(t, tr, r, dt, 77, 160, 400, true)
	}
	for _, dt := range []kernels.DType{kernels.Q4_K, kernels.Q6_K, kernels.Q5_0} {
		checkMatMulT(t, tr, r, dt, 333, 768, 207, false)
		checkMatMulT(t, tr, r, dt, 131, 2048, 29, true)
	}
}

func checkMatMulGrad(t *testing.T, tr kernels.Trainer, r *rand.Rand, rows, cols, n int) {
	t.Helper()
	dy := randF32(r, n*rows, 1)
	x := randF32(r, n*cols, 1)
	dy0, x0 := slices.Clone(dy), slices.Clone(x)
	init := randF32(r, rows*cols, 1)
	buf, dw := guarded(rows*cols, init)
	tr.MatMulGrad(dw, dy, x, n, rows, cols)
	what := fmt.Sprintf("%dx%d, n=%d", rows, cols, n)
	checkGuards(t, what, buf, rows*cols)
	if !slices.Equal(dy, dy0) || !slices.Equal(x, x0) {
		t.Errorf("%s: MatMulGrad changed its inputs", what)
	}
	want, abs := matMulGradAbs(f64(dy), f64(x), n, rows, cols)
	for i, v := range init {
		want[i] += float64(v)
		abs[i] += math.Abs(float64(v))
	}
	compare(t, what, dw, want, func(i int) float64 { return float64(n+8)*u*abs[i] + 1e-30 })
}

func testMatMulGrad(t *testing.T, tr kernels.Trainer) {
	r := newRand(23)
	for _, rows := range []int{1, 7, 33, 65} {
		for _, cols := range floatCols {
			for _, n := range []int{1, 5, 37} {
				checkMatMulGrad(t, tr, r, rows, cols, n)
			}
		}
	}
	if testing.Short() {
		return
	}
	checkMatMulGrad(t, tr, r, 400, 300, 300)
	checkMatMulGrad(t, tr, r, 13, 1030, 520)
	checkMatMulGrad(t, tr, r, 700, 5, 40)
	checkMatMulGrad(t, tr, r, 211, 290, 7)
}

func testRMSNormBackward(t *testing.T, tr kernels.Trainer) {
	r := newRand(24)
	const eps = 1e-5
	for _, d := range []int{1, 3, 17, 64, 95, 257, 768} {
		for _, rows := range []int{1, 3, 70} {
			x := randF32(r, rows*d, 3)
			w := randF32(r, d, 2)
			dy := randF32(r, rows*d, 1)
			dw0 := randF32(r, d, 1)
			want, wantW, adx, adw := rmsNormBackwardAbs(f64(dy), f64(x), f64(w), eps)
			for i, v := range dw0 {
				wantW[i] += float64(v)
				adw[i] += math.Abs(float64(v))
			}
			tolX := func(i int) float64 { return float64(d+16)*u*adx[i] + 1e-30 }
			tolW := func(i int) float64 { return float64(rows+d+16)*u*adw[i] + 1e-30 }
			what := fmt.Sprintf("d=%d rows=%d", d, rows)

			xbuf, dx := guarded(rows*d, nil)
			wbuf, dw := guarded(d, dw0)
			dy0, x0 := slices.Clone(dy), slices.Clone(x)
			tr.RMSNormBackward(dx, dw, dy, x, w, eps)
			checkGuards(t, what+" dx", xbuf, rows*d)
			checkGuards(t, what+" dweight", wbuf, d)
			if !slices.Equal(dy, dy0) || !slices.Equal(x, x0) {
				t.Errorf("%s: RMSNormBackward changed its inputs", what)
			}
			compare(t, what+" dx", dx, want, tolX)
			compare(t, what+" dweight", dw, wantW, tolW)

			// In place, without the weight's gradient.
			buf, inplace := guarded(rows*d, dy)
			tr.RMSNormBackward(inplace, nil, inplace, x, w, eps)
			checkGuards(t, what+" in place", buf, rows*d)
			compare(t, what+" in place", inplace, want, tolX)
		}
	}
}

func testRoPEBackward(t *testing.T, tr kernels.Trainer) {
	r := newRand(25)
	for _, style := range []kernels.RopeStyle{kernels.RopeAdjacent, kernels.RopeNeoX} {
		for _, c := range []struct{ heads, hd, pos0, rows int }{
			{1, 2, 0, 1}, {3, 6, 7, 2}, {4, 64, 0, 5}, {2, 34, 1000, 3}, {5, 128, 31, 1}, {6, 48, 0, 70},
		} {
			p := kernels.RopeParams{Heads: c.heads, HeadDim: c.hd, Pos0: c.pos0, Theta: 10000, Style: style}
			if c.hd == 128 {
				p.Theta = 1e6
			}
			n := c.rows * c.heads * c.hd
			dy := randF32(r, n, 2)
			want := RoPEBackward(dy, p)
			buf, s := guarded(n, dy)
			tr.RoPEBackward(s, p)
			what := fmt.Sprintf("%s %+v", style, c)
			checkGuards(t, what, buf, n)
			compare(t, what, s, want, func(i int) float64 { return 8 * u * 4 })
		}
	}
}

func testSwiGLUBackward(t *testing.T, tr kernels.Trainer) {
	r := newRand(26)
	for _, n := range []int{1, 7, 33, 257, 2048, 40000} {
		g := randF32(r, n, 12)
		up := randF32(r, n, 3)
		dout := randF32(r, n, 1)
		wantG, wantU, adg := swigluBackwardAbs(f64(dout), f64(g), f64(up))
		tolG := func(i int) float64 { return 16*u*(1+math.Abs(float64(g[i])))*adg[i] + 1e-30 }
		tolU := func(i int) float64 { return 16*u*math.Abs(wantU[i]) + 1e-30 }
		what := fmt.Sprintf("n=%d", n)

		gbuf, dg := guarded(n, nil)
		ubuf, du := guarded(n, nil)
		g0, up0, dout0 := slices.Clone(g), slices.Clone(up), slices.Clone(dout)
		tr.SwiGLUBackward(dg, du, dout, g, up)
		checkGuards(t, what+" dgate", gbuf, n)
		checkGuards(t, what+" dup", ubuf, n)
		if !slices.Equal(g, g0) || !slices.Equal(up, up0) || !slices.Equal(dout, dout0) {
			t.Errorf("%s: SwiGLUBackward changed its inputs", what)
		}
		compare(t, what+" dgate", dg, wantG, tolG)
		compare(t, what+" dup", du, wantU, tolU)

		// dgate in place of dout, then dup in place of dout.
		gbuf, dg = guarded(n, dout)
		ubuf, du = guarded(n, nil)
		tr.SwiGLUBackward(dg, du, dg, g, up)
		checkGuards(t, what+" dgate=dout", gbuf, n)
		checkGuards(t, what+" dgate=dout", ubuf, n)
		compare(t, what+" dgate=dout: dgate", dg, wantG, tolG)
		compare(t, what+" dgate=dout: dup", du, wantU, tolU)

		gbuf, dg = guarded(n, nil)
		ubuf, du = guarded(n, dout)
		tr.SwiGLUBackward(dg, du, du, g, up)
		checkGuards(t, what+" dup=dout", gbuf, n)
		checkGuards(t, what+" dup=dout", ubuf, n)
		compare(t, what+" dup=dout: dgate", dg, wantG, tolG)
		compare(t, what+" dup=dout: dup", du, wantU, tolU)
	}
}

func testSoftmaxBackward(t *testing.T, tr kernels.Trainer) {
	r := newRand(27)
	for _, w := range []int{1, 3, 17, 64, 257, 1000} {
		for _, n := range []int{1, 3, 9} {
			y := f32(Softmax(randF32(r, n*w, 4), n))
			dy := randF32(r, n*w, 1)
			want, abs := softmaxBackwardAbs(f64(dy), f64(y), n)
			tol := func(i int) float64 { return float64(w+8)*u*abs[i] + 1e-30 }
			what := fmt.Sprintf("width=%d n=%d", w, n)

			buf, dx := guarded(n*w, nil)
			y0, dy0 := slices.Clone(y), slices.Clone(dy)
			tr.SoftmaxBackward(dx, dy, y, n)
			checkGuards(t, what, buf, n*w)
			if !slices.Equal(y, y0) || !slices.Equal(dy, dy0) {
				t.Errorf("%s: SoftmaxBackward changed its inputs", what)
			}
			compare(t, what, dx, want, tol)

			buf, inplace := guarded(n*w, dy)
			tr.SoftmaxBackward(inplace, inplace, y, n)
			checkGuards(t, what+" in place", buf, n*w)
			compare(t, what+" in place", inplace, want, tol)
		}
	}
}

// f32 rounds x to float32.
func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// attnBackwardCases are causal grouped-query shapes with Heads/KVHeads of
// 1, 2 and 4, head sizes on both sides of a vector's width and sequences
// from one position to past a hundred.
var attnBackwardCases = []kernels.AttnParams{
	{Heads: 1, KVHeads: 1, HeadDim: 1, N: 1},
	{Heads: 2, KVHeads: 2, HeadDim: 8, N: 3},
	{Heads: 4, KVHeads: 2, HeadDim: 8, N: 7},
	{Heads: 4, KVHeads: 1, HeadDim: 16, N: 30},
	{Heads: 6, KVHeads: 6, HeadDim: 48, N: 64},
	{Heads: 8, KVHeads: 2, HeadDim: 17, N: 33},
	{Heads: 8, KVHeads: 4, HeadDim: 64, N: 100},
	{Heads: 3, KVHeads: 3, HeadDim: 33, N: 129},
	{Heads: 4, KVHeads: 1, HeadDim: 80, N: 70},
	{Heads: 2, KVHeads: 1, HeadDim: 5, N: 2},
	{Heads: 2, KVHeads: 1, HeadDim: 8, N: 300},
}

func testAttentionBackward(t *testing.T, tr kernels.Trainer) {
	r := newRand(28)
	for _, c := range attnBackwardCases {
		c.Scale = float32(1 / math.Sqrt(float64(c.HeadDim)))
		qw, kw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		what := fmt.Sprintf("%+v", c)
		q := randF32(r, c.N*qw, 2)
		k := randF32(r, c.N*kw, 2)
		v := randF32(r, c.N*kw, 1)
		dout := randF32(r, c.N*qw, 1)
		in0 := [][]float32{slices.Clone(q), slices.Clone(k), slices.Clone(v), slices.Clone(dout)}
		qbuf, dq := guarded(c.N*qw, nil)
		kbuf, dk := guarded(c.N*kw, nil)
		vbuf, dv := guarded(c.N*kw, nil)
		tr.AttentionBackward(dq, dk, dv, dout, q, k, v, c)
		checkGuards(t, what+" dq", qbuf, c.N*qw)
		checkGuards(t, what+" dk", kbuf, c.N*kw)
		checkGuards(t, what+" dv", vbuf, c.N*kw)
		for i, in := range [][]float32{q, k, v, dout} {
			if !slices.Equal(in, in0[i]) {
				t.Errorf("%s: AttentionBackward changed input %d", what, i)
			}
		}
		wq, wk, wv, aq, ak, av := attentionBackwardAbs(f64(dout), f64(q), f64(k), f64(v), c)
		// The weights are off by the error of the scores (see
		// attnTolerance) and of the softmax over N positions; every
		// gradient is a sum of terms scaled by weights.
		eps := attnTolerance(c, c.N)
		compare(t, what+" dq", dq, wq, func(i int) float64 { return eps*aq[i] + 1e-30 })
		compare(t, what+" dk", dk, wk, func(i int) float64 { return eps*ak[i] + 1e-30 })
		compare(t, what+" dv", dv, wv, func(i int) float64 { return eps*av[i] + 1e-30 })
	}
}

func testCrossEntropy(t *testing.T, tr kernels.Trainer) {
	r := newRand(29)
	for _, vocab := range []int{1, 5, 33, 1000, 32000} {
		for _, n := range []int{1, 4, 17} {
			logits := randF32(r, n*vocab, 8)
			targets := make([]int, n)
			weights := make([]float32, n)
			for i := range targets {
				targets[i] = r.IntN(vocab)
				weights[i] = []float32{1, 1, 0, 0.5, 2.5}[r.IntN(5)]
				if weights[i] == 0 {
					// Masked rows: their targets must not be read.
					targets[i] = []int{-1, vocab, math.MaxInt32}[r.IntN(3)]
				}
			}
			what := fmt.Sprintf("vocab=%d n=%d", vocab, n)
			x := f64(logits)
			w := f64(weights)
			want := crossEntropy64(x, targets, w, vocab)
			wantD := crossEntropyBackward64(x, targets, w, vocab)
			var lossTol float64
			dTol := make([]float64, n*vocab)
			for i := 0; i < n; i++ {
				if w[i] == 0 {
					continue
				}
				row := x[i*vocab : (i+1)*vocab]
				m := slices.Max(row)
				lossTol += w[i] * 16 * u * (1 + math.Abs(m) + math.Abs(row[targets[i]]) + math.Log(float64(vocab)))
				sm := softmax64(row, 1)
				for j, v := range row {
					dTol[i*vocab+j] = w[i] * (16*u*(1+math.Abs(v)+math.Abs(m))*sm[j] + 2*u)
				}
			}
			tol := func(i int) float64 { return dTol[i] + 1e-30 }
			checkLoss := func(what string, got float64) {
				t.Helper()
				if d := math.Abs(got - want); !(d <= lossTol) {
					t.Errorf("%s: loss %v, want %v (error %.3g > tolerance %.3g)", what, got, want, d, lossTol)
				}
			}

			l0 := slices.Clone(logits)
			checkLoss(what+" without gradient", tr.CrossEntropy(nil, logits, targets, weights, vocab))
			buf, d := guarded(n*vocab, nil)
			checkLoss(what, tr.CrossEntropy(d, logits, targets, weights, vocab))
			checkGuards(t, what, buf, n*vocab)
			if !slices.Equal(logits, l0) {
				t.Errorf("%s: CrossEntropy changed the logits", what)
			}
			compare(t, what, d, wantD, tol)

			buf, inplace := guarded(n*vocab, logits)
			checkLoss(what+" in place", tr.CrossEntropy(inplace, inplace, targets, weights, vocab))
			checkGuards(t, what+" in place", buf, n*vocab)
			compare(t, what+" in place", inplace, wantD, tol)
		}
	}
}

// TestTrainerDeterminism checks that every kernels.Trainer method of the
// backend that open makes returns bitwise the same results with 1, 2 and
// 3 threads, on shapes large enough to be split between them.
func TestTrainerDeterminism(t *testing.T, open kernels.Factory) {
	var runs [][][]float32
	for _, threads := range []int{1, 2, 3} {
		be, err := open(threads)
		if err != nil {
			t.Fatal(err)
		}
		tr, ok := be.(kernels.Trainer)
		if !ok {
			be.Close()
			t.Fatalf("%s does not implement kernels.Trainer", be.Name())
		}
		runs = append(runs, trainerOutputs(tr))
		be.Close()
	}
	names := trainerOutputNames()
	for i := 1; i < len(runs); i++ {
		for j, out := range runs[i] {
			if !bitsEqual(out, runs[0][j]) {
				t.Errorf("%s: %d threads differ from 1", names[j], i+1)
			}
		}
	}
}

func trainerOutputNames() []string {
	var names []string
	for _, dt := range weightTypes {
		names = append(names, "MatMulT "+dt.String(), "MatMulT accumulate "+dt.String())
	}
	return append(names, "MatMulGrad", "MatMulGrad deep", "RMSNormBackward dx", "RMSNormBackward dweight",
		"RoPEBackward", "SwiGLUBackward dgate", "SwiGLUBackward dup", "SoftmaxBackward",
		"AttentionBackward dq", "AttentionBackward dk", "AttentionBackward dv",
		"CrossEntropy loss", "CrossEntropy dlogits")
}

// trainerOutputs runs every method on fixed inputs and returns the results
// in the order of trainerOutputNames.
func trainerOutputs(tr kernels.Trainer) [][]float32 {
	r := newRand(30)
	var outs [][]float32
	for _, dt := range weightTypes {
		w := randMatrix(r, dt, 160, 352)
		dy := randF32(r, 211*160, 1)
		dx := make([]float32, 211*352)
		tr.MatMulT(dx, w, dy, 211, false)
		acc := randF32(r, 211*352, 1)
		tr.MatMulT(acc, w, dy, 211, true)
		outs = append(outs, dx, acc)
	}
	dy, x := randF32(r, 97*300, 1), randF32(r, 97*200, 1)
	dw := randF32(r, 300*200, 1)
	tr.MatMulGrad(dw, dy, x, 97, 300, 200)
	dy, x = randF32(r, 600*40, 1), randF32(r, 600*70, 1)
	dw2 := make([]float32, 40*70)
	tr.MatMulGrad(dw2, dy, x, 600, 40, 70)
	outs = append(outs, dw, dw2)

	x, dy = randF32(r, 300*288, 3), randF32(r, 300*288, 1)
	nw := randF32(r, 288, 2)
	dx, dnw := make([]float32, len(x)), randF32(r, 288, 1)
	tr.RMSNormBackward(dx, dnw, dy, x, nw, 1e-5)
	outs = append(outs, dx, dnw)

	rp := randF32(r, 300*6*48, 2)
	tr.RoPEBackward(rp, kernels.RopeParams{Heads: 6, HeadDim: 48, Pos0: 5, Theta: 10000, Style: kernels.RopeNeoX})
	outs = append(outs, rp)

	g, up, dout := randF32(r, 100000, 8), randF32(r, 100000, 2), randF32(r, 100000, 1)
	dg, du := make([]float32, len(g)), make([]float32, len(g))
	tr.SwiGLUBackward(dg, du, dout, g, up)
	outs = append(outs, dg, du)

	y := f32(Softmax(randF32(r, 200*500, 4), 200))
	sdy := randF32(r, 200*500, 1)
	sdx := make([]float32, len(y))
	tr.SoftmaxBackward(sdx, sdy, y, 200)
	outs = append(outs, sdx)

	ap := kernels.AttnParams{Heads: 8, KVHeads: 2, HeadDim: 32, N: 300}
	ap.Scale = float32(1 / math.Sqrt(32))
	q, k, v := randF32(r, 300*256, 2), randF32(r, 300*64, 2), randF32(r, 300*64, 1)
	ao := randF32(r, 300*256, 1)
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
	tr.AttentionBackward(dq, dk, dv, ao, q, k, v, ap)
	outs = append(outs, dq, dk, dv)

	const vocab = 3000
	logits := randF32(r, 70*vocab, 8)
	targets, weights := make([]int, 70), make([]float32, 70)
	for i := range targets {
		targets[i], weights[i] = r.IntN(vocab), float32(r.IntN(3))
	}
	dl := make([]float32, len(logits))
	loss := tr.CrossEntropy(dl, logits, targets, weights, vocab)
	bits := math.Float64bits(loss)
	outs = append(outs, []float32{math.Float32frombits(uint32(bits)), math.Float32frombits(uint32(bits >> 32))}, dl)
	return outs
}

// testGradCheck checks each backward of tr against central finite
// differences of the float64 forward references: for random directions e,
// (L(x+h·e) − L(x−h·e))/2h, with L = Σ g·f(x) for a random g (the
// gradient of the output), must equal Σ_i dL/dx_i·e_i from tr's gradient,
// within float32 rounding.
func testGradCheck(t *testing.T, tr kernels.Trainer) {
	r := newRand(31)
	// check compares tr's gradient grad of L with respect to x with
	// finite differences along three random directions.
	check := func(what string, L func(x []float64) float64, x []float64, grad []float32) {
		t.Helper()
		for dir := 0; dir < 3; dir++ {
			e := f64(randF32(r, len(x), 1))
			const h = 1e-5
			xp, xm := slices.Clone(x), slices.Clone(x)
			for i := range x {
				xp[i] += h * e[i]
				xm[i] -= h * e[i]
			}
			fd := (L(xp) - L(xm)) / (2 * h)
			var got, abs float64
			for i, gv := range grad {
				got += float64(gv) * e[i]
				abs += math.Abs(float64(gv) * e[i])
			}
			if d := math.Abs(got - fd); !(d <= 1e-4*abs+1e-9) {
				t.Errorf("%s: directional derivative %v, finite differences %v (error %.3g)", what, got, fd, d)
			}
		}
	}
	dot := func(g []float32, y []float64) float64 {
		var s float64
		for i, v := range y {
			s += float64(g[i]) * v
		}
		return s
	}

	// MatMul: L = Σ g·(x·Wᵀ).
	{
		const rows, cols, n = 7, 19, 5
		w, x, g := randF32(r, rows*cols, 1), randF32(r, n*cols, 1), randF32(r, n*rows, 1)
		m, _ := kernels.NewMatrix(kernels.F32, rows, cols, kernels.Encode(nil, kernels.F32, w))
		dx := make([]float32, n*cols)
		tr.MatMulT(dx, m, g, n, false)
		check("MatMulT", func(xv []float64) float64 { return dot(g, matMul64(f64(w), rows, cols, xv, n)) }, f64(x), dx)
		dw := make([]float32, rows*cols)
		tr.MatMulGrad(dw, g, x, n, rows, cols)
		check("MatMulGrad", func(wv []float64) float64 { return dot(g, matMul64(wv, rows, cols, f64(x), n)) }, f64(w), dw)
	}
	// RMSNorm.
	{
		const d, rows = 23, 3
		x, w, g := randF32(r, rows*d, 3), randF32(r, d, 2), randF32(r, rows*d, 1)
		dx, dw := make([]float32, rows*d), make([]float32, d)
		tr.RMSNormBackward(dx, dw, g, x, w, 1e-5)
		check("RMSNormBackward dx", func(xv []float64) float64 { return dot(g, rmsNorm64(xv, f64(w), 1e-5)) }, f64(x), dx)
		check("RMSNormBackward dweight", func(wv []float64) float64 { return dot(g, rmsNorm64(f64(x), wv, 1e-5)) }, f64(w), dw)
	}
	// RoPE, both styles.
	for _, style := range []kernels.RopeStyle{kernels.RopeAdjacent, kernels.RopeNeoX} {
		p := kernels.RopeParams{Heads: 3, HeadDim: 8, Pos0: 11, Theta: 10000, Style: style}
		x, g := randF32(r, 4*24, 2), randF32(r, 4*24, 1)
		dx := slices.Clone(g)
		tr.RoPEBackward(dx, p)
		check("RoPEBackward "+style.String(), func(xv []float64) float64 { return dot(g, rope64(xv, p, 1)) }, f64(x), dx)
	}
	// SwiGLU.
	{
		gate, up, g := randF32(r, 40, 6), randF32(r, 40, 2), randF32(r, 40, 1)
		dg, du := make([]float32, 40), make([]float32, 40)
		tr.SwiGLUBackward(dg, du, g, gate, up)
		check("SwiGLUBackward dgate", func(v []float64) float64 { return dot(g, swiglu64(v, f64(up))) }, f64(gate), dg)
		check("SwiGLUBackward dup", func(v []float64) float64 { return dot(g, swiglu64(f64(gate), v)) }, f64(up), du)
	}
	// Softmax: the gradient with respect to the logits.
	{
		const w, n = 13, 3
		x, g := randF32(r, n*w, 3), randF32(r, n*w, 1)
		y := f32(softmax64(f64(x), n))
		dx := make([]float32, n*w)
		tr.SoftmaxBackward(dx, g, y, n)
		check("SoftmaxBackward", func(xv []float64) float64 { return dot(g, softmax64(xv, n)) }, f64(x), dx)
	}
	// Attention, Heads/KVHeads of 1, 2 and 4.
	for _, p := range []kernels.AttnParams{
		{Heads: 2, KVHeads: 2, HeadDim: 4, N: 5},
		{Heads: 4, KVHeads: 2, HeadDim: 3, N: 6},
		{Heads: 4, KVHeads: 1, HeadDim: 8, N: 4},
	} {
		p.Scale = float32(1 / math.Sqrt(float64(p.HeadDim)))
		qw, kw := p.Heads*p.HeadDim, p.KVHeads*p.HeadDim
		q, k, v := randF32(r, p.N*qw, 2), randF32(r, p.N*kw, 2), randF32(r, p.N*kw, 1)
		g := randF32(r, p.N*qw, 1)
		dq, dk, dv := make([]float32, p.N*qw), make([]float32, p.N*kw), make([]float32, p.N*kw)
		tr.AttentionBackward(dq, dk, dv, g, q, k, v, p)
		what := fmt.Sprintf("AttentionBackward %d/%d heads", p.Heads, p.KVHeads)
		check(what+" dq", func(x []float64) float64 { return dot(g, attention64(x, f64(k), f64(v), p)) }, f64(q), dq)
		check(what+" dk", func(x []float64) float64 { return dot(g, attention64(f64(q), x, f64(v), p)) }, f64(k), dk)
		check(what+" dv", func(x []float64) float64 { return dot(g, attention64(f64(q), f64(k), x, p)) }, f64(v), dv)
	}
	// Cross-entropy with a masked row: L is the loss itself.
	{
		const vocab = 11
		logits := randF32(r, 4*vocab, 4)
		targets := []int{3, -1, 10, 0}
		weights := []float32{1, 0, 0.5, 2}
		d := make([]float32, len(logits))
		tr.CrossEntropy(d, logits, targets, weights, vocab)
		check("CrossEntropy", func(x []float64) float64 { return crossEntropy64(x, targets, f64(weights), vocab) }, f64(logits), d)
	}
}
