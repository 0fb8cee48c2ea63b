package model_test

import (
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// refTrainer adds kernels.Trainer to a backend, each method a float64 loop
// written from the interface's definitions, so that the model's backward
// can be checked whatever the backends implement.
type refTrainer struct{ kernels.Backend }

var _ kernels.Trainer = (*refTrainer)(nil)

func (*refTrainer) MatMulT(dx []float32, w *kernels.Matrix, dy []float32, n int, accumulate bool) {
	rows, cols := w.Rows, w.Cols
	acc := make([]float64, n*cols)
	row := make([]float32, cols)
	for r := range rows {
		w.RowF32(row, r)
		for t := range n {
			g := float64(dy[t*rows+r])
			for c, v := range row {
				acc[t*cols+c] += g * float64(v)
			}
		}
	}
	for i, v := range acc {
		if accumulate {
			v += float64(dx[i])
		}
		dx[i] = float32(v)
	}
}

func (*refTrainer) MatMulGrad(dw, dy, x []float32, n, rows, cols int) {
	for r := range rows {
		for c := range cols {
			var s float64
			for t := range n {
				s += float64(dy[t*rows+r]) * float64(x[t*cols+c])
			}
			dw[r*cols+c] = float32(float64(dw[r*cols+c]) + s)
		}
	}
}

func (*refTrainer) RMSNormBackward(dx, dweight, dy, x, weight []float32, eps float32) {
	d := len(weight)
	tmp := make([]float64, d)
	for r := 0; r < len(x)/d; r++ {
		xr, dyr := x[r*d:(r+1)*d], dy[r*d:(r+1)*d]
		var ss, dot float64
		for i, v := range xr {
			ss += float64(v) * float64(v)
			dot += float64(dyr[i]) * float64(weight[i]) * float64(v)
		}
		s := 1 / math.Sqrt(ss/float64(d)+float64(eps))
		for i, v := range xr {
			if dweight != nil {
				dweight[i] = float32(float64(dweight[i]) + float64(dyr[i])*float64(v)*s)
			}
			tmp[i] = s*float64(dyr[i])*float64(weight[i]) - s*s*s/float64(d)*float64(v)*dot
		}
		for i, v := range tmp {
			dx[r*d+i] = float32(v)
		}
	}
}

// ropePair is the pair of elements i of a head that RoPE rotates together,
// and the angle at position pos.
func ropePair(p kernels.RopeParams, h, i, pos int) (a, b int, angle float64) {
	hd := p.HeadDim
	angle = float64(pos) * math.Pow(float64(p.Theta), -float64(2*i)/float64(hd))
	if p.Style == kernels.RopeNeoX {
		return h*hd + i, h*hd + i + hd/2, angle
	}
	return h*hd + 2*i, h*hd + 2*i + 1, angle
}

func (*refTrainer) RoPEBackward(dy []float32, p kernels.RopeParams) {
	w := p.Heads * p.HeadDim
	for t := 0; t < len(dy)/w; t++ {
		row := dy[t*w : (t+1)*w]
		for h := range p.Heads {
			for i := range p.HeadDim / 2 {
				a, b, f := ropePair(p, h, i, p.Pos0+t)
				x0, x1 := float64(row[a]), float64(row[b])
				row[a] = float32(x0*math.Cos(f) + x1*math.Sin(f))
				row[b] = float32(-x0*math.Sin(f) + x1*math.Cos(f))
			}
		}
	}
}

func (*refTrainer) SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	for i := range dout {
		g, u, d := float64(gate[i]), float64(up[i]), float64(dout[i])
		s := 1 / (1 + math.Exp(-g))
		dgate[i] = float32(d * u * s * (1 + g*(1-s)))
		dup[i] = float32(d * g * s)
	}
}

func (*refTrainer) SoftmaxBackward(dx, dy, y []float32, n int) {
	w := len(y) / n
	for r := range n {
		var dot float64
		for j := r * w; j < (r+1)*w; j++ {
			dot += float64(dy[j]) * float64(y[j])
		}
		for j := r * w; j < (r+1)*w; j++ {
			dx[j] = float32(float64(y[j]) * (float64(dy[j]) - dot))
		}
	}
}

func (*refTrainer) AttentionBackward(dq, dk, dv, dout, q, k, v []float32, p kernels.AttnParams) {
	hd, group := p.HeadDim, p.Heads/p.KVHeads
	qw, kw := p.Heads*hd, p.KVHeads*hd
	gq := make([]float64, p.N*qw)
	gk := make([]float64, p.N*kw)
	gv := make([]float64, p.N*kw)
	for h := range p.Heads {
		kh := h / group
		for t := range p.N {
			qt, dot := q[t*qw+h*hd:t*qw+(h+1)*hd], dout[t*qw+h*hd:t*qw+(h+1)*hd]
			a := make([]float64, t+1)
			mx := math.Inf(-1)
			for s := range a {
				ks := k[s*kw+kh*hd : s*kw+(kh+1)*hd]
				for i := range hd {
					a[s] += float64(qt[i]) * float64(ks[i])
				}
				a[s] *= float64(p.Scale)
				mx = math.Max(mx, a[s])
			}
			var sum float64
			for s := range a {
				a[s] = math.Exp(a[s] - mx)
				sum += a[s]
			}
			da := make([]float64, t+1)
			var adot float64
			for s := range a {
				a[s] /= sum
				vs := v[s*kw+kh*hd : s*kw+(kh+1)*hd]
				for i := range hd {
					da[s] += float64(dot[i]) * float64(vs[i])
					gv[s*kw+kh*hd+i] += a[s] * float64(dot[i])
				}
				adot += a[s] * da[s]
			}
			for s := range a {
				ds := a[s] * (da[s] - adot) * float64(p.Scale)
				ks := k[s*kw+kh*hd : s*kw+(kh+1)*hd]
				for i := range hd {
					gq[t*qw+h*hd+i] += ds * float64(ks[i])
					gk[s*kw+kh*hd+i] += ds * float64(qt[i])
				}
			}
		}
	}
	for i, v := range gq {
		dq[i] = float32(v)
	}
	for i := range gk {
		dk[i], dv[i] = float32(gk[i]), float32(gv[i])
	}
}

func (*refTrainer) CrossEntropy(dlogits, logits []float32, targets []int, weights []float32, vocab int) float64 {
	var loss float64
	for r := range targets {
		row := logits[r*vocab : (r+1)*vocab]
		w := float64(weights[r])
		if w == 0 {
			if dlogits != nil {
				clear(dlogits[r*vocab : (r+1)*vocab])
			}
			continue
		}
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(sum)
		loss += w * (lse - float64(row[targets[r]]))
		if dlogits != nil {
			for j, v := range row {
				g := math.Exp(float64(v) - lse)
				if j == targets[r] {
					g--
				}
				dlogits[r*vocab+j] = float32(w * g)
			}
		}
	}
	return loss
}
