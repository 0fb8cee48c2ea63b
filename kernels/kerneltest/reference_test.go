package kerneltest

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// The backward references against central finite differences of the
// float64 forward references, component by component: with L = Σ g·f(x)
// for a random output gradient g, dL/dx_i ≈ (L(x+h·e_i) − L(x−h·e_i))/2h.

// gradCheck fails t where grad differs from the finite differences of L
// at x.
func gradCheck(t *testing.T, what string, L func(x []float64) float64, x, grad []float64) {
	t.Helper()
	const h = 1e-5
	bad := 0
	for i := range x {
		xp, xm := slices.Clone(x), slices.Clone(x)
		xp[i] += h
		xm[i] -= h
		fd := (L(xp) - L(xm)) / (2 * h)
		if d := math.Abs(fd - grad[i]); !(d <= 1e-7*(1+math.Abs(fd))) {
			if bad < 3 {
				t.Errorf("%s: [%d] = %v, finite differences %v (error %.3g)", what, i, grad[i], fd, d)
			}
			bad++
		}
	}
}

func dot64(g, y []float64) float64 {
	var s float64
	for i, v := range y {
		s += g[i] * v
	}
	return s
}

func TestReferenceGradients(t *testing.T) {
	r := newRand(40)
	rnd := func(n int, scale float32) []float64 { return f64(randF32(r, n, scale)) }

	{
		const rows, cols, n = 5, 7, 3
		w, x, g := rnd(rows*cols, 1), rnd(n*cols, 1), rnd(n*rows, 1)
		dx, _ := matMulTAbs(w, rows, cols, g, n)
		gradCheck(t, "MatMulT", func(v []float64) float64 { return dot64(g, matMul64(w, rows, cols, v, n)) }, x, dx)
		dw, _ := matMulGradAbs(g, x, n, rows, cols)
		gradCheck(t, "MatMulGrad", func(v []float64) float64 { return dot64(g, matMul64(v, rows, cols, x, n)) }, w, dw)
	}
	{
		const d, rows = 9, 3
		x, w, g := rnd(rows*d, 3), rnd(d, 2), rnd(rows*d, 1)
		dx, dw, _, _ := rmsNormBackwardAbs(g, x, w, 1e-5)
		gradCheck(t, "RMSNormBackward dx", func(v []float64) float64 { return dot64(g, rmsNorm64(v, w, 1e-5)) }, x, dx)
		gradCheck(t, "RMSNormBackward dweight", func(v []float64) float64 { return dot64(g, rmsNorm64(x, v, 1e-5)) }, w, dw)
	}
	for _, style := range []kernels.RopeStyle{kernels.RopeAdjacent, kernels.RopeNeoX} {
		p := kernels.RopeParams{Heads: 2, HeadDim: 6, Pos0: 3, Theta: 10000, Style: style}
		x, g := rnd(3*12, 2), rnd(3*12, 1)
		gradCheck(t, "RoPEBackward "+style.String(), func(v []float64) float64 { return dot64(g, rope64(v, p, 1)) }, x, rope64(g, p, -1))
	}
	{
		gate, up, g := rnd(30, 8), rnd(30, 2), rnd(30, 1)
		dg, du, _ := swigluBackwardAbs(g, gate, up)
		gradCheck(t, "SwiGLUBackward dgate", func(v []float64) float64 { return dot64(g, swiglu64(v, up)) }, gate, dg)
		gradCheck(t, "SwiGLUBackward dup", func(v []float64) float64 { return dot64(g, swiglu64(gate, v)) }, up, du)
	}
	{
		const w, n = 7, 3
		x, g := rnd(n*w, 3), rnd(n*w, 1)
		dx, _ := softmaxBackwardAbs(g, softmax64(x, n), n)
		gradCheck(t, "SoftmaxBackward", func(v []float64) float64 { return dot64(g, softmax64(v, n)) }, x, dx)
	}
	for _, p := range []kernels.AttnParams{
		{Heads: 2, KVHeads: 2, HeadDim: 3, N: 4},
		{Heads: 4, KVHeads: 2, HeadDim: 2, N: 5},
		{Heads: 4, KVHeads: 1, HeadDim: 4, N: 3},
	} {
		p.Scale = float32(1 / math.Sqrt(float64(p.HeadDim)))
		qw, kw := p.Heads*p.HeadDim, p.KVHeads*p.HeadDim
		q, k, v, g := rnd(p.N*qw, 2), rnd(p.N*kw, 2), rnd(p.N*kw, 1), rnd(p.N*qw, 1)
		dq, dk, dv, _, _, _ := attentionBackwardAbs(g, q, k, v, p)
		what := fmt.Sprintf("AttentionBackward %d/%d heads", p.Heads, p.KVHeads)
		gradCheck(t, what+" dq", func(x []float64) float64 { return dot64(g, attention64(x, k, v, p)) }, q, dq)
		gradCheck(t, what+" dk", func(x []float64) float64 { return dot64(g, attention64(q, x, v, p)) }, k, dk)
		gradCheck(t, what+" dv", func(x []float64) float64 { return dot64(g, attention64(q, k, x, p)) }, v, dv)
	}
	{
		const vocab = 6
		logits := rnd(4*vocab, 4)
		targets := []int{2, -1, 5, 0}
		weights := []float64{1, 0, 0.5, 2}
		d := crossEntropyBackward64(logits, targets, weights, vocab)
		gradCheck(t, "CrossEntropy", func(x []float64) float64 { return crossEntropy64(x, targets, weights, vocab) }, logits, d)
	}
}
