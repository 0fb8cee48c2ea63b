// Package kerneltest holds float64 reference implementations of every
// kernels.Backend method and a conformance suite, TestBackend, that any
// backend runs from its own tests:
//
//	func TestConformance(t *testing.T) { kerneltest.TestBackend(t, cpu.New(2)) }
//
// The references are plain loops in float64, written for clarity; they are
// the specification the optimized kernels are checked against.
package kerneltest

import (
	"math"

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
	d := len(weight)
	out := make([]float64, len(x))
	for r := 0; r < len(x); r += d {
		var ss float64
		for _, v := range x[r : r+d] {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(d)+float64(eps))
		for i := 0; i < d; i++ {
			out[r+i] = float64(x[r+i]) * inv * float64(weight[i])
		}
	}
	return out
}

// RoPE returns x rotated by the rotary position embedding: in each head, the
// pair (a, b) of dimension i < HeadDim/2 turns by the angle
// pos·Theta^(−2i/HeadDim), where the pair is (2i, 2i+1) for RopeAdjacent and
// (i, i+HeadDim/2) for RopeNeoX.
func RoPE(x []float32, p kernels.RopeParams) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
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
				ang := pos * math.Pow(float64(p.Theta), -float64(2*i)/float64(p.HeadDim))
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
					s += float64(qh[i]) * float64(kh[i])
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
					o[i] += s / sum * float64(vh[i])
				}
			}
		}
	}
	return out
}

// SwiGLU returns silu(gate)·up = gate/(1+e^−gate)·up.
func SwiGLU(gate, up []float32) []float64 {
	out := make([]float64, len(gate))
	for i, g := range gate {
		out[i] = float64(g) / (1 + math.Exp(-float64(g))) * float64(up[i])
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
