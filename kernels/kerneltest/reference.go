// Package kerneltest holds float64 reference implementations of every
// kernels.Backend and kernels.Trainer method and a conformance suite,
// TestBackend, that any backend runs from its own tests:
//
//	func TestConformance(t *testing.T) { kerneltest.TestBackend(t, cpu.New(2)) }
//
// TestBackend runs TestTrainer too where the backend implements
// kernels.Trainer; TestTrainerDeterminism checks that the Trainer's
// results do not depend on the number of threads.
//
// The references are plain loops in float64, written for clarity; they are
// the specification the optimized kernels are checked against.
package kerneltest

import (
	"math"
	"slices"

	"github.com/mycel-net/mycel/kernels"
)

// MatMul returns w·xᵀ for n rows of x, out[t·Rows + r] = Σ_c w[r,c]·x[t,c],
// with the weights decoded exactly from their stored type.
func MatMul(w *kernels.Matrix, x []float32, n int) []float64 {
	out, _ := matMulAbs(w, x, n)
	return out
}

// matMulAbs also returns Σ_c |w[r,c]·x[t,c]| for each output, the scale of
// its rounding error.
func matMulAbs(w *kernels.Matrix, x []float32, n int) (out, abs []float64) {
	out = make([]float64, n*w.Rows)
	abs = make([]float64, n*w.Rows)
	row := make([]float32, w.Cols)
	for r := 0; r < w.Rows; r++ {
		w.RowF32(row, r)
		for t := 0; t < n; t++ {
			xt := x[t*w.Cols : (t+1)*w.Cols]
			var s, a float64
			for c, v := range row {
				p := float64(v) * float64(xt[c])
				s += p
				a += math.Abs(p)
			}
			out[t*w.Rows+r] = s
			abs[t*w.Rows+r] = a
		}
	}
	return out, abs
}

// RMSNorm returns x / sqrt(mean(x²) + eps) · weight for each row of x.
func RMSNorm(x, weight []float32, eps float32) []float64 {
	return rmsNorm64(f64(x), f64(weight), float64(eps))
}

func rmsNorm64(x, weight []float64, eps float64) []float64 {
	d := len(weight)
	out := make([]float64, len(x))
	for r := 0; r < len(x); r += d {
		var ss float64
		for _, v := range x[r : r+d] {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(d)+eps)
		for i := 0; i < d; i++ {
			out[r+i] = x[r+i] * inv * weight[i]
		}
	}
	return out
}

// RoPE returns x rotated by the rotary position embedding: in each head, the
// pair (a, b) of dimension i < HeadDim/2 turns by the angle
// pos·Theta^(−2i/HeadDim), where the pair is (2i, 2i+1) for RopeAdjacent and
// (i, i+HeadDim/2) for RopeNeoX.
func RoPE(x []float32, p kernels.RopeParams) []float64 {
	return rope64(f64(x), p, 1)
}

// rope64 rotates a copy of x by the rotary embedding's angles times sign.
func rope64(x []float64, p kernels.RopeParams, sign float64) []float64 {
	out := slices.Clone(x)
	w := p.Heads * p.HeadDim
	half := p.HeadDim / 2
	for t := 0; t*w < len(x); t++ {
		pos := float64(p.Pos0 + t)
		for h := 0; h < p.Heads; h++ {
			head := out[t*w+h*p.HeadDim : t*w+(h+1)*p.HeadDim]
			for i := 0; i < half; i++ {
				a, b := 2*i, 2*i+1
				if p.Style == kernels.RopeNeoX {
					a, b = i, i+half
				}
				ang := sign * pos * math.Pow(float64(p.Theta), -float64(2*i)/float64(p.HeadDim))
				s, c := math.Sincos(ang)
				x0, x1 := head[a], head[b]
				head[a] = x0*c - x1*s
				head[b] = x0*s + x1*c
			}
		}
	}
	return out
}

// Attention returns causal grouped-query attention (see kernels.AttnParams)
// with an exact softmax. Unlike a backend, it takes the keys and values as
// plain rows, k and v [Pos0+N, KVHeads·HeadDim], not in the cache layout.
func Attention(q, k, v []float32, p kernels.AttnParams) []float64 {
	return attention64(f64(q), f64(k), f64(v), p)
}

func attention64(q, k, v []float64, p kernels.AttnParams) []float64 {
	hd := p.HeadDim
	qw, kw := p.Heads*hd, p.KVHeads*hd
	group := p.Heads / p.KVHeads
	out := make([]float64, p.N*qw)
	for t := 0; t < p.N; t++ {
		n := p.Pos0 + t + 1
		for h := 0; h < p.Heads; h++ {
			kvh := h / group
			qh := q[t*qw+h*hd : t*qw+(h+1)*hd]
			sc := make([]float64, n)
			mx := math.Inf(-1)
			for pos := range sc {
				kh := k[pos*kw+kvh*hd : pos*kw+(kvh+1)*hd]
				var s float64
				for i := range qh {
					s += qh[i] * kh[i]
				}
				sc[pos] = s * float64(p.Scale)
				mx = math.Max(mx, sc[pos])
			}
			var sum float64
			for pos := range sc {
				sc[pos] = math.Exp(sc[pos] - mx)
				sum += sc[pos]
			}
			o := out[t*qw+h*hd : t*qw+(h+1)*hd]
			for pos, s := range sc {
				vh := v[pos*kw+kvh*hd : pos*kw+(kvh+1)*hd]
				for i := range o {
					o[i] += s / sum * vh[i]
				}
			}
		}
	}
	return out
}

// SwiGLU returns silu(gate)·up = gate/(1+e^−gate)·up.
func SwiGLU(gate, up []float32) []float64 {
	return swiglu64(f64(gate), f64(up))
}

func swiglu64(gate, up []float64) []float64 {
	out := make([]float64, len(gate))
	for i, g := range gate {
		out[i] = g / (1 + math.Exp(-g)) * up[i]
	}
	return out
}

// Add returns dst + src.
func Add(dst, src []float32) []float64 {
	out := make([]float64, len(dst))
	for i := range dst {
		out[i] = float64(dst[i]) + float64(src[i])
	}
	return out
}

// KVLayout returns the caches (see kernels.AttnParams) holding the rows of
// k and v ([n, KVHeads·HeadDim]) at positions 0..n-1; positions n..Cap-1
// hold fill.
func KVLayout(k, v []float32, p kernels.AttnParams, fill float32) (kc, vc []float32) {
	hd, kw := p.HeadDim, p.KVHeads*p.HeadDim
	kc = make([]float32, p.KVSize())
	vc = make([]float32, p.KVSize())
	for i := range kc {
		kc[i], vc[i] = fill, fill
	}
	for pos := 0; pos < len(k)/kw; pos++ {
		for h := 0; h < p.KVHeads; h++ {
			for i := 0; i < hd; i++ {
				kc[(h*hd+i)*p.Cap+pos] = k[pos*kw+h*hd+i]
				vc[(h*p.Cap+pos)*hd+i] = v[pos*kw+h*hd+i]
			}
		}
	}
	return kc, vc
}

// f64 widens x to float64.
func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// The references of training (kernels.Trainer). Each backward comes with
// the float64 forward it is the gradient of, so that tests can check it
// against finite differences; the unexported versions also return, for
// each output, the sum of the absolute values of the terms it adds up:
// the scale of a float32 implementation's rounding error.

// MatMulT returns dy·W for n rows of dy: dx[t·Cols + c] = Σ_r dy[t·Rows +
// r]·w[r,c], with the weights decoded exactly from their stored type.
func MatMulT(w *kernels.Matrix, dy []float32, n int) []float64 {
	out, _ := matMulTAbs(decodeMatrix(w), w.Rows, w.Cols, f64(dy), n)
	return out
}

// decodeMatrix returns the values of w, row-major, in float64.
func decodeMatrix(w *kernels.Matrix) []float64 {
	out := make([]float64, w.Rows*w.Cols)
	row := make([]float32, w.Cols)
	for r := 0; r < w.Rows; r++ {
		w.RowF32(row, r)
		for c, v := range row {
			out[r*w.Cols+c] = float64(v)
		}
	}
	return out
}

func matMulTAbs(w []float64, rows, cols int, dy []float64, n int) (out, abs []float64) {
	out = make([]float64, n*cols)
	abs = make([]float64, n*cols)
	for t := 0; t < n; t++ {
		for r := 0; r < rows; r++ {
			g := dy[t*rows+r]
			for c := 0; c < cols; c++ {
				p := g * w[r*cols+c]
				out[t*cols+c] += p
				abs[t*cols+c] += math.Abs(p)
			}
		}
	}
	return out, abs
}

// matMul64 is MatMul in float64 over the values of a rows×cols matrix.
func matMul64(w []float64, rows, cols int, x []float64, n int) []float64 {
	out := make([]float64, n*rows)
	for t := 0; t < n; t++ {
		for r := 0; r < rows; r++ {
			var s float64
			for c := 0; c < cols; c++ {
				s += w[r*cols+c] * x[t*cols+c]
			}
			out[t*rows+r] = s
		}
	}
	return out
}

// MatMulGrad returns dyᵀ·x, the gradient of MatMul with respect to a
// rows×cols weight: dw[r·cols + c] = Σ_t dy[t·rows + r]·x[t·cols + c].
func MatMulGrad(dy, x []float32, n, rows, cols int) []float64 {
	out, _ := matMulGradAbs(f64(dy), f64(x), n, rows, cols)
	return out
}

func matMulGradAbs(dy, x []float64, n, rows, cols int) (out, abs []float64) {
	out = make([]float64, rows*cols)
	abs = make([]float64, rows*cols)
	for t := 0; t < n; t++ {
		for r := 0; r < rows; r++ {
			g := dy[t*rows+r]
			for c := 0; c < cols; c++ {
				p := g * x[t*cols+c]
				out[r*cols+c] += p
				abs[r*cols+c] += math.Abs(p)
			}
		}
	}
	return out, abs
}

// RMSNormBackward returns the gradients of RMSNorm(x, weight, eps) with
// respect to x and weight, given dy, the gradient of its output. With
// inv = 1/sqrt(mean(x²)+eps) per row of d values:
//
//	dx[i] = inv·w[i]·dy[i] − x[i]·inv³/d·Σ_j dy[j]·w[j]·x[j]
//	dweight[i] = Σ_rows dy[i]·x[i]·inv
func RMSNormBackward(dy, x, weight []float32, eps float32) (dx, dweight []float64) {
	dx, dweight, _, _ = rmsNormBackwardAbs(f64(dy), f64(x), f64(weight), float64(eps))
	return dx, dweight
}

func rmsNormBackwardAbs(dy, x, weight []float64, eps float64) (dx, dweight, adx, adw []float64) {
	d := len(weight)
	dx, adx = make([]float64, len(x)), make([]float64, len(x))
	dweight, adw = make([]float64, d), make([]float64, d)
	for r := 0; r < len(x); r += d {
		xr, dr := x[r:r+d], dy[r:r+d]
		var ss, dot, adot float64
		for i, v := range xr {
			ss += v * v
			dot += dr[i] * weight[i] * v
			adot += math.Abs(dr[i] * weight[i] * v)
		}
		inv := 1 / math.Sqrt(ss/float64(d)+eps)
		c := inv * inv * inv / float64(d)
		for i, v := range xr {
			dx[r+i] = inv*weight[i]*dr[i] - v*c*dot
			adx[r+i] = math.Abs(inv*weight[i]*dr[i]) + math.Abs(v*c)*adot
			dweight[i] += dr[i] * v * inv
			adw[i] += math.Abs(dr[i] * v * inv)
		}
	}
	return dx, dweight, adx, adw
}

// RoPEBackward returns the gradient of RoPE(x, p) with respect to x given
// dy, the gradient of its output: dy rotated by minus each angle.
func RoPEBackward(dy []float32, p kernels.RopeParams) []float64 {
	return rope64(f64(dy), p, -1)
}

// SwiGLUBackward returns the gradients of SwiGLU(gate, up) given dout:
// dgate = dout·up·silu'(gate) and dup = dout·silu(gate), where with σ =
// 1/(1+e^−g), silu(g) = g·σ and silu'(g) = σ·(1 + g·(1−σ)).
func SwiGLUBackward(dout, gate, up []float32) (dgate, dup []float64) {
	dgate, dup, _ = swigluBackwardAbs(f64(dout), f64(gate), f64(up))
	return dgate, dup
}

// swigluBackwardAbs also returns the scale of dgate's rounding error,
// |dout·up|·σ·(1 + |g|·(1−σ)); dup's is |dup|.
func swigluBackwardAbs(dout, gate, up []float64) (dgate, dup, adg []float64) {
	dgate, dup, adg = make([]float64, len(gate)), make([]float64, len(gate)), make([]float64, len(gate))
	for i, g := range gate {
		sig := 1 / (1 + math.Exp(-g))
		dgate[i] = dout[i] * up[i] * sig * (1 + g*(1-sig))
		adg[i] = math.Abs(dout[i]*up[i]) * sig * (1 + math.Abs(g)*(1-sig))
		dup[i] = dout[i] * g * sig
	}
	return dgate, dup, adg
}

// Softmax returns the softmax of each of the n rows of x.
func Softmax(x []float32, n int) []float64 { return softmax64(f64(x), n) }

func softmax64(x []float64, n int) []float64 {
	w := len(x) / n
	out := make([]float64, len(x))
	for r := 0; r < n; r++ {
		row, o := x[r*w:(r+1)*w], out[r*w:(r+1)*w]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		var sum float64
		for i, v := range row {
			o[i] = math.Exp(v - mx)
			sum += o[i]
		}
		for i := range o {
			o[i] /= sum
		}
	}
	return out
}

// SoftmaxBackward returns the gradient of a softmax over the n rows of y
// = softmax(x) with respect to x, given dy: dx = y ⊙ (dy − Σ_j dy_j·y_j).
func SoftmaxBackward(dy, y []float32, n int) []float64 {
	dx, _ := softmaxBackwardAbs(f64(dy), f64(y), n)
	return dx
}

func softmaxBackwardAbs(dy, y []float64, n int) (dx, abs []float64) {
	w := len(y) / n
	dx, abs = make([]float64, len(y)), make([]float64, len(y))
	for r := 0; r < n; r++ {
		yr, dr := y[r*w:(r+1)*w], dy[r*w:(r+1)*w]
		var s, as float64
		for i, v := range yr {
			s += dr[i] * v
			as += math.Abs(dr[i] * v)
		}
		for i, v := range yr {
			dx[r*w+i] = v * (dr[i] - s)
			abs[r*w+i] = math.Abs(v) * (math.Abs(dr[i]) + as)
		}
	}
	return dx, abs
}

// AttentionBackward returns the gradients of Attention(q, k, v, p) over a
// whole sequence (Pos0 = 0) with respect to q, k and v, given dout, the
// gradient of its output; q and dout are [N, Heads·HeadDim], k and v [N,
// KVHeads·HeadDim]. For query row t of head h, with P = softmax of the
// scores over p ≤ t:
//
//	dP[p] = dout_t·v_p      D = Σ_p P[p]·dP[p]      dS[p] = P[p]·(dP[p] − D)
//	dq_t = Scale·Σ_p dS[p]·k_p      dk_p += Scale·dS[p]·q_t      dv_p += P[p]·dout_t
//
// where a key or value head sums over the query heads of its group.
func AttentionBackward(dout, q, k, v []float32, p kernels.AttnParams) (dq, dk, dv []float64) {
	dq, dk, dv, _, _, _ = attentionBackwardAbs(f64(dout), f64(q), f64(k), f64(v), p)
	return dq, dk, dv
}

// attentionBackwardAbs also returns, for each gradient, its sum with every
// term replaced by its magnitude (dS[p] by P[p]·(|dP|[p] + Σ P·|dP|), |dP|
// by Σ|dout·v|): the scale of its error.
func attentionBackwardAbs(dout, q, k, v []float64, p kernels.AttnParams) (dq, dk, dv, adq, adk, adv []float64) {
	hd := p.HeadDim
	qw, kw := p.Heads*hd, p.KVHeads*hd
	group := p.Heads / p.KVHeads
	dq, adq = make([]float64, p.N*qw), make([]float64, p.N*qw)
	dk, adk = make([]float64, p.N*kw), make([]float64, p.N*kw)
	dv, adv = make([]float64, p.N*kw), make([]float64, p.N*kw)
	scale := float64(p.Scale)
	for t := 0; t < p.N; t++ {
		n := t + 1
		for h := 0; h < p.Heads; h++ {
			g := h / group
			qo, ko := t*qw+h*hd, g*hd
			P := make([]float64, n)
			mx := math.Inf(-1)
			for s := range P {
				var z float64
				for i := 0; i < hd; i++ {
					z += q[qo+i] * k[s*kw+ko+i]
				}
				P[s] = z * scale
				mx = math.Max(mx, P[s])
			}
			var sum float64
			for s := range P {
				P[s] = math.Exp(P[s] - mx)
				sum += P[s]
			}
			dP, adP := make([]float64, n), make([]float64, n)
			var D, aD float64
			for s := range P {
				P[s] /= sum
				for i := 0; i < hd; i++ {
					dP[s] += dout[qo+i] * v[s*kw+ko+i]
					adP[s] += math.Abs(dout[qo+i] * v[s*kw+ko+i])
				}
				D += P[s] * dP[s]
				aD += P[s] * adP[s]
			}
			for s := range P {
				dS, adS := P[s]*(dP[s]-D), P[s]*(adP[s]+aD)
				for i := 0; i < hd; i++ {
					dq[qo+i] += scale * dS * k[s*kw+ko+i]
					adq[qo+i] += scale * adS * math.Abs(k[s*kw+ko+i])
					dk[s*kw+ko+i] += scale * dS * q[qo+i]
					adk[s*kw+ko+i] += scale * adS * math.Abs(q[qo+i])
					dv[s*kw+ko+i] += P[s] * dout[qo+i]
					adv[s*kw+ko+i] += P[s] * math.Abs(dout[qo+i])
				}
			}
		}
	}
	return dq, dk, dv, adq, adk, adv
}

// CrossEntropy returns Σ_t weights[t]·(−log softmax(logits_t)[targets[t]])
// over the rows whose weight is not zero, and its gradient with respect to
// the logits: weights[t]·(softmax(logits_t) − onehot(targets[t])), zero
// where the weight is zero.
func CrossEntropy(logits []float32, targets []int, weights []float32, vocab int) (loss float64, dlogits []float64) {
	w := f64(weights)
	x := f64(logits[:len(targets)*vocab])
	return crossEntropy64(x, targets, w, vocab), crossEntropyBackward64(x, targets, w, vocab)
}

func crossEntropy64(logits []float64, targets []int, weights []float64, vocab int) float64 {
	var loss float64
	for t, tg := range targets {
		if weights[t] == 0 {
			continue
		}
		row := logits[t*vocab : (t+1)*vocab]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(v - mx)
		}
		loss += weights[t] * (math.Log(sum) + mx - row[tg])
	}
	return loss
}

func crossEntropyBackward64(logits []float64, targets []int, weights []float64, vocab int) []float64 {
	d := make([]float64, len(targets)*vocab)
	for t, tg := range targets {
		if weights[t] == 0 {
			continue
		}
		sm := softmax64(logits[t*vocab:(t+1)*vocab], 1)
		for j, v := range sm {
			d[t*vocab+j] = weights[t] * v
		}
		d[t*vocab+tg] -= weights[t]
	}
	return d
}
