package cpu

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

// trainShapes are the products of training, as (n, rows, cols) of a
// rows×cols weight and n positions: a square one, and the projections of
// a stories15M-shaped model (dim 288, hidden 768) over 1024 positions.
var trainShapes = [][3]int{{1024, 1024, 1024}, {1024, 288, 768}, {1024, 768, 288}, {1024, 288, 288}}

// BenchmarkTrainGEMM times, for each shape, the forward MatMul beside the
// two products of its backward: MatMulT (the gradient of the input) over
// each weight type and MatMulGrad (the gradient of an f32 weight). All
// three do 2·n·rows·cols flops, so their GFLOPS compare directly.
func BenchmarkTrainGEMM(b *testing.B) {
	for _, s := range trainShapes {
		n, rows, cols := s[0], s[1], s[2]
		shape := fmt.Sprintf("n%d/%dx%d", n, rows, cols)
		b.Run("MatMul/f32/"+shape, func(b *testing.B) { benchTrain(b, kernels.F32, n, rows, cols, "fwd") })
		for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.Q8_0} {
			b.Run("MatMulT/"+dt.String()+"/"+shape, func(b *testing.B) { benchTrain(b, dt, n, rows, cols, "T") })
		}
		b.Run("MatMulGrad/f32/"+shape, func(b *testing.B) { benchTrain(b, kernels.F32, n, rows, cols, "grad") })
	}
}

func benchTrain(b *testing.B, dt kernels.DType, n, rows, cols int, which string) {
	be := New(0)
	defer be.Close()
	w := benchMatrix(dt, rows, cols)
	x := randVecSeed(n*cols, 5)
	dy := randVecSeed(n*rows, 6)
	out := make([]float32, n*rows)
	dw := make([]float32, rows*cols)
	f := func() {
		switch which {
		case "fwd":
			be.MatMul(out, w, x, n)
		case "T":
			be.MatMulT(x, w, dy, n, false)
		case "grad":
			be.MatMulGrad(dw, dy, x, n, rows, cols)
		}
	}
	f()
	b.ResetTimer()
	for b.Loop() {
		f()
	}
	b.ReportMetric(2*float64(n)*float64(rows)*float64(cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
}

// BenchmarkTrainGEMMRatio runs, for each shape, the forward f32 MatMul,
// the f32 MatMulT and MatMulGrad, and MatMulT over bf16, Q8_0 and Q4_0
// weights in turn, round after round, and reports the f32 ones' best times as
// GFLOPS and every backward product's rate as a ratio to the forward's:
// interleaving and best times keep the ratios steady on a machine shared
// with other work.
func BenchmarkTrainGEMMRatio(b *testing.B) {
	for _, s := range trainShapes {
		for _, threads := range []int{1, 0} {
			benchTrainRatio(b, s[0], s[1], s[2], threads)
		}
	}
}

func benchTrainRatio(b *testing.B, n, rows, cols, threads int) {
	{
		name := fmt.Sprintf("n%d/%dx%d", n, rows, cols)
		if threads == 1 {
			name += "/threads=1"
		}
		b.Run(name, func(b *testing.B) {
			be := New(threads)
			defer be.Close()
			w := benchMatrix(kernels.F32, rows, cols)
			wb := benchMatrix(kernels.BF16, rows, cols)
			wq := benchMatrix(kernels.Q8_0, rows, cols)
			wq4 := benchMatrix(kernels.Q4_0, rows, cols)
			x := randVecSeed(n*cols, 5)
			dy := randVecSeed(n*rows, 6)
			out := make([]float32, n*rows)
			dx := make([]float32, n*cols)
			dw := make([]float32, rows*cols)
			fs := []func(){
				func() { be.MatMul(out, w, x, n) },
				func() { be.MatMulT(dx, w, dy, n, false) },
				func() { be.MatMulGrad(dw, dy, x, n, rows, cols) },
				func() { be.MatMulT(dx, wb, dy, n, false) },
				func() { be.MatMulT(dx, wq, dy, n, false) },
				func() { be.MatMulT(dx, wq4, dy, n, false) },
			}
			best := make([]time.Duration, len(fs))
			for i := range best {
				best[i] = time.Hour
			}
			for b.Loop() {
				for i, f := range fs {
					t0 := time.Now()
					f()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			flop := 2 * float64(n) * float64(rows) * float64(cols)
			gf := func(d time.Duration) float64 { return flop / float64(d.Nanoseconds()) }
			b.ReportMetric(gf(best[0]), "fwd-GFLOPS")
			b.ReportMetric(gf(best[1]), "T-GFLOPS")
			b.ReportMetric(gf(best[2]), "grad-GFLOPS")
			b.ReportMetric(gf(best[1])/gf(best[0]), "T/fwd")
			b.ReportMetric(gf(best[2])/gf(best[0]), "grad/fwd")
			b.ReportMetric(gf(best[3])/gf(best[0]), "T-bf16/fwd")
			b.ReportMetric(gf(best[4])/gf(best[0]), "T-q8_0/fwd")
			b.ReportMetric(gf(best[5])/gf(best[0]), "T-q4_0/fwd")
		})
	}
}

// BenchmarkAttentionBackward times the backward of causal attention over
// a whole sequence beside the forward over the same positions (storing N
// rows into an empty cache and attending from all of them), in turn,
// round after round, and reports each one's best time and their ratio.
// Shapes of stories15M (6 heads of 48) and stories110M (12 of 64), and a
// grouped-query one (8 heads sharing 2 KV heads of 64).
func BenchmarkAttentionBackward(b *testing.B) {
	for _, c := range []struct{ heads, kv, hd, n int }{{6, 6, 48, 256}, {12, 12, 64, 256}, {8, 2, 64, 512}} {
		p := kernels.AttnParams{Heads: c.heads, KVHeads: c.kv, HeadDim: c.hd, N: c.n, Cap: c.n}
		p.Scale = 1 / float32(math.Sqrt(float64(c.hd)))
		qw, kw := c.heads*c.hd, c.kv*c.hd
		q, k, v := randVecSeed(c.n*qw, 1), randVecSeed(c.n*kw, 2), randVecSeed(c.n*kw, 3)
		dout := randVecSeed(c.n*qw, 4)
		b.Run(fmt.Sprintf("h%d/kv%d/hd%d/n%d", c.heads, c.kv, c.hd, c.n), func(b *testing.B) {
			be := New(0)
			defer be.Close()
			kc, vc := make([]float32, p.KVSize()), make([]float32, p.KVSize())
			out := make([]float32, c.n*qw)
			dq, dk, dv := make([]float32, c.n*qw), make([]float32, c.n*kw), make([]float32, c.n*kw)
			fs := []func(){
				func() {
					be.StoreKV(kc, vc, k, v, p)
					be.Attention(out, q, kc, vc, p)
				},
				func() { be.AttentionBackward(dq, dk, dv, dout, q, k, v, p) },
			}
			best := []time.Duration{time.Hour, time.Hour}
			for b.Loop() {
				for i, f := range fs {
					t0 := time.Now()
					f()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			b.ReportMetric(float64(best[0].Microseconds())/1e3, "fwd-ms")
			b.ReportMetric(float64(best[1].Microseconds())/1e3, "bwd-ms")
			b.ReportMetric(float64(best[1])/float64(best[0]), "bwd/fwd")
		})
	}
}
