package cpu

import (
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The backward kernels of training (kernels.Trainer).
//
// Every result is deterministic whatever the number of threads: work is
// split so that each output value is computed by one worker, in an order
// fixed by the shapes alone; sums that cross work items (a weight
// gradient over the rows of a batch, the gradient of a key shared by
// several queries) are computed by the item that owns the output, looping
// over the inputs itself, never by adding partial sums from several
// workers.

var _ kernels.Trainer = (*Backend)(nil)

// fnTask is a task given as a function: training calls are heavy enough
// that the closure's allocation does not matter.
type fnTask func(worker, lo, hi int)

func (f fnTask) run(worker, lo, hi int) { f(worker, lo, hi) }

// trainScratch is the scratch the backward kernels keep between calls.
type trainScratch struct {
	f64  []float64   // per-row statistics
	f32  []float32   // attention: transposed inputs and softmax statistics
	work [][]float32 // per worker
}

// f64s returns n float64 of scratch (contents undefined).
func (s *trainScratch) f64s(n int) []float64 {
	if cap(s.f64) < n {
		s.f64 = make([]float64, n)
	}
	return s.f64[:n]
}

// f32s returns n float32 of scratch (contents undefined).
func (s *trainScratch) f32s(n int) []float32 {
	if cap(s.f32) < n {
		s.f32 = make([]float32, n)
	}
	return s.f32[:n]
}

// perWorker returns n float32 of scratch for each worker.
func (b *Backend) perWorker(n int) [][]float32 {
	s := &b.tr
	if len(s.work) != b.pool.threads {
		s.work = make([][]float32, b.pool.threads)
	}
	for i := range s.work {
		if cap(s.work[i]) < n {
			s.work[i] = make([]float32, n)
		}
		s.work[i] = s.work[i][:n]
	}
	return s.work
}

// elemGrain is the fewest elements of an elementwise op worth a hand-off.
const elemGrain = 1 << 14

// MatMulT computes dx (+)= dy·W, the gradient of MatMul with respect to
// its input; see kernels.Trainer.
func (b *Backend) MatMulT(dx []float32, w *kernels.Matrix, dy []float32, n int, accumulate bool) {
	if n <= 0 {
		return
	}
	if len(dy) < n*w.Rows || len(dx) < n*w.Cols {
		panic(fmt.Sprintf("cpu: MatMulT %dx%d by %d rows: dy has %d values, dx %d", w.Rows, w.Cols, n, len(dy), len(dx)))
	}
	if !w.Type.Valid() {
		panic("cpu: MatMulT of unsupported dtype " + w.Type.String())
	}
	if n < gemmMinN {
		b.matMulTRows(dx, w, dy, n, accumulate)
		return
	}
	op := &gemmOp{m: n, n: w.Cols, k: w.Rows, c: dx, ldc: w.Cols, acc: accumulate,
		packA: func(dst []float32, m0, mr, pc, kc int) {
			packColsTFast(dst, dy, w.Rows, m0, pc, kc, mr, max(0, min(mr, n-m0)))
		},
		packB: func(dst []float32, n0, nr, pc, kc int) { packWRows(dst, w, n0, nr, pc, kc) },
	}
	b.gemmRun(op)
}

// matMulTRows is MatMulT for a few rows of dy: W streams once, row by
// row, each row added to every row of dx it contributes to. The columns
// are split between the workers.
func (b *Backend) matMulTRows(dx []float32, w *kernels.Matrix, dy []float32, n int, accumulate bool) {
	R, C := w.Rows, w.Cols
	const bw = 128
	scratch := b.perWorker(bw)
	b.pool.run(fnTask(func(worker, lo, hi int) {
		c0, c1 := lo*bw, min(hi*bw, C)
		if !accumulate {
			for t := 0; t < n; t++ {
				clear(dx[t*C+c0 : t*C+c1])
			}
		}
		for c := c0; c < c1; c += bw {
			nc := min(bw, c1-c)
			for r := 0; r < R; r++ {
				var row []float32
				if w.Type == kernels.F32 {
					row = kernels.BytesF32(w.Data)[r*C+c : r*C+c+nc]
				} else {
					row = scratch[worker][:nc]
					decodeRows(row, nc, w, r, 1, c, nc)
				}
				for t := 0; t < n; t++ {
					axpy(dx[t*C+c:t*C+c+nc], row, dy[t*R+r])
				}
			}
		}
	}), (C+bw-1)/bw, max(1, macsPerChunk/(n*R*bw)))
}

// MatMulGrad accumulates dw += dyᵀ·x; see kernels.Trainer.
func (b *Backend) MatMulGrad(dw, dy, x []float32, n, rows, cols int) {
	if rows <= 0 || cols <= 0 || n < 0 || len(dw) != rows*cols || len(dy) < n*rows || len(x) < n*cols {
		panic(fmt.Sprintf("cpu: MatMulGrad %dx%d by %d rows: dw has %d values, dy %d, x %d", rows, cols, n, len(dw), len(dy), len(x)))
	}
	if n == 0 {
		return
	}
	op := &gemmOp{m: rows, n: cols, k: n, c: dw, ldc: cols, acc: true, aT: dy, ldaT: rows,
		packB: func(dst []float32, n0, nr, pc, kc int) {
			packRowsT(dst, x, cols, pc, n0, kc, nr, max(0, min(nr, cols-n0)))
		},
	}
	b.gemmRun(op)
}

// RMSNormBackward is the gradient of RMSNorm; see kernels.Trainer.
//
// With inv = 1/sqrt(mean(x²)+eps) and y = x·inv·w per row of d values:
//
//	dx[i] = inv·w[i]·dy[i] − x[i]·inv³/d·Σ_j dy[j]·w[j]·x[j]
//	dweight[i] += Σ_rows dy[i]·x[i]·inv
//
// The row sums run in float64. dweight is summed column by column over
// the rows in order, before dx (which may be dy) is written.
func (b *Backend) RMSNormBackward(dx, dweight, dy, x, weight []float32, eps float32) {
	d := len(weight)
	if d == 0 || len(x)%d != 0 || len(dy) < len(x) || len(dx) < len(x) || (dweight != nil && len(dweight) != d) {
		panic(fmt.Sprintf("cpu: RMSNormBackward of %d values with a weight of %d: dy %d, dx %d, dweight %d", len(x), d, len(dy), len(dx), len(dweight)))
	}
	rows := len(x) / d
	if rows == 0 {
		return
	}
	st := b.tr.f64s(2 * rows) // inv, Σ dy·w·x per row
	grain := max(1, elemGrain/d)
	b.pool.run(fnTask(func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d]
			var ss, dot float64
			for i, v := range xr {
				ss += float64(v) * float64(v)
				dot += float64(dr[i]) * float64(weight[i]) * float64(v)
			}
			st[2*r] = 1 / math.Sqrt(ss/float64(d)+float64(eps))
			st[2*r+1] = dot
		}
	}), rows, grain)
	if dweight != nil {
		const cb = 64
		b.pool.run(fnTask(func(_, lo, hi int) {
			var acc [cb]float64
			for c0 := lo * cb; c0 < min(hi*cb, d); c0 += cb {
				nc := min(cb, d-c0)
				a := acc[:nc]
				clear(a)
				for r := 0; r < rows; r++ {
					inv := st[2*r]
					xr, dr := x[r*d+c0:r*d+c0+nc], dy[r*d+c0:r*d+c0+nc]
					for j := range a {
						a[j] += float64(dr[j]) * float64(xr[j]) * inv
					}
				}
				for j, v := range a {
					dweight[c0+j] += float32(v)
				}
			}
		}), (d+cb-1)/cb, max(1, elemGrain/(cb*rows)))
	}
	b.pool.run(fnTask(func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			inv := st[2*r]
			a := float32(inv)
			c := float32(inv * inv * inv * st[2*r+1] / float64(d))
			xr, dr, out := x[r*d:(r+1)*d], dy[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			for i, v := range xr {
				out[i] = a*weight[i]*dr[i] - c*v
			}
		}
	}), rows, grain)
}

// RoPEBackward rotates each pair of dy by minus the forward angle; see
// kernels.Trainer. The cosines and sines are RoPE's (the same table), so a
// rotation and its backward are exact inverses up to rounding.
func (b *Backend) RoPEBackward(dy []float32, p kernels.RopeParams) {
	w := p.Heads * p.HeadDim
	if w == 0 || len(dy)%w != 0 || p.HeadDim%2 != 0 {
		panic(fmt.Sprintf("cpu: RoPEBackward of %d values, %d heads of %d", len(dy), p.Heads, p.HeadDim))
	}
	rows := len(dy) / w
	half := p.HeadDim / 2
	table := b.rope.at(p, rows)
	b.pool.run(fnTask(func(worker, lo, hi int) {
		for t := lo; t < hi; t++ {
			cs := table[t*p.HeadDim : (t+1)*p.HeadDim]
			row := dy[t*w : (t+1)*w]
			for h := 0; h < p.Heads; h++ {
				head := row[h*p.HeadDim : (h+1)*p.HeadDim]
				for i := 0; i < half; i++ {
					fc, fs := cs[2*i], cs[2*i+1]
					a, bi := 2*i, 2*i+1
					if p.Style == kernels.RopeNeoX {
						a, bi = i, i+half
					}
					x0, x1 := head[a], head[bi]
					head[a] = x0*fc + x1*fs
					head[bi] = x1*fc - x0*fs
				}
			}
		}
	}), rows, max(1, elemGrain/w))
}

// SwiGLUBackward is the gradient of SwiGLU; see kernels.Trainer. With
// σ = 1/(1+e^−g): silu(g) = g·σ and silu'(g) = σ·(1 + g·(1−σ)).
func (b *Backend) SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	n := len(gate)
	if len(up) != n || len(dout) < n || len(dgate) < n || len(dup) < n {
		panic(fmt.Sprintf("cpu: SwiGLUBackward of %d values: up %d, dout %d, dgate %d, dup %d", n, len(up), len(dout), len(dgate), len(dup)))
	}
	b.pool.run(fnTask(func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			g, u, d := gate[i], up[i], dout[i]
			e := expf(-g)
			sig := 1 / (1 + e)
			silu := g / (1 + e)
			dgate[i] = d * u * (sig * (1 + g*(1-sig)))
			dup[i] = d * silu
		}
	}), n, elemGrain)
}

// SoftmaxBackward computes dx = y ⊙ (dy − Σ dy·y) row by row; see
// kernels.Trainer.
func (b *Backend) SoftmaxBackward(dx, dy, y []float32, n int) {
	if n <= 0 || len(y)%n != 0 || len(dy) < len(y) || len(dx) < len(y) {
		panic(fmt.Sprintf("cpu: SoftmaxBackward of %d values in %d rows: dy %d, dx %d", len(y), n, len(dy), len(dx)))
	}
	w := len(y) / n
	if w == 0 {
		return
	}
	b.pool.run(fnTask(func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			yr, dr, out := y[r*w:(r+1)*w], dy[r*w:(r+1)*w], dx[r*w:(r+1)*w]
			var s float64
			for i, v := range yr {
				s += float64(dr[i]) * float64(v)
			}
			s32 := float32(s)
			for i, v := range yr {
				out[i] = v * (dr[i] - s32)
			}
		}
	}), n, max(1, elemGrain/w))
}

// CrossEntropy returns Σ weight·(−log softmax(logits)[target]) over the
// rows and, when dlogits is not nil, its gradient; see kernels.Trainer.
// Each row's loss is computed in float64 from float32 exponentials; the
// rows' losses are summed in order.
func (b *Backend) CrossEntropy(dlogits, logits []float32, targets []int, weights []float32, vocab int) float64 {
	n := len(targets)
	if vocab <= 0 || len(weights) < n || len(logits) < n*vocab || (dlogits != nil && len(dlogits) < n*vocab) {
		panic(fmt.Sprintf("cpu: CrossEntropy of %d rows of %d: logits %d, weights %d, dlogits %d", n, vocab, len(logits), len(weights), len(dlogits)))
	}
	if n == 0 {
		return 0
	}
	for t, tg := range targets {
		if weights[t] != 0 && (tg < 0 || tg >= vocab) {
			panic(fmt.Sprintf("cpu: CrossEntropy: target %d of row %d is outside a vocabulary of %d", tg, t, vocab))
		}
	}
	losses := b.tr.f64s(n)
	scratch := b.perWorker(vocab)
	b.pool.run(fnTask(func(worker, lo, hi int) {
		for t := lo; t < hi; t++ {
			wt := weights[t]
			var drow []float32
			if dlogits != nil {
				drow = dlogits[t*vocab : (t+1)*vocab]
			}
			if wt == 0 {
				losses[t] = 0
				clear(drow)
				continue
			}
			row := logits[t*vocab : (t+1)*vocab]
			lt := row[targets[t]]
			m := maxF32(row)
			e := scratch[worker]
			if drow != nil {
				e = drow
			}
			expShifted(e, row, m, 1)
			var s0, s1, s2, s3 float64
			i := 0
			for ; i+4 <= vocab; i += 4 {
				s0 += float64(e[i])
				s1 += float64(e[i+1])
				s2 += float64(e[i+2])
				s3 += float64(e[i+3])
			}
			for ; i < vocab; i++ {
				s0 += float64(e[i])
			}
			sum := (s0 + s1) + (s2 + s3)
			losses[t] = float64(wt) * (math.Log(sum) + float64(m) - float64(lt))
			if drow != nil {
				k := float32(float64(wt) / sum)
				for j := range drow {
					drow[j] *= k
				}
				drow[targets[t]] -= wt
			}
		}
	}), n, max(1, elemGrain/vocab))
	var total float64
	for _, l := range losses {
		total += l
	}
	return total
}
