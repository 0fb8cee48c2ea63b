package cpu

import (
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// Attention computes causal grouped-query attention; see kernels.Backend.
func (b *Backend) Attention(out, q, k, v []float32, p kernels.AttnParams) {
	qw := p.Heads * p.HeadDim
	kw := p.KVHeads * p.HeadDim
	if p.N <= 0 {
		return
	}
	if p.KVHeads <= 0 || p.Heads%p.KVHeads != 0 || len(q) < p.N*qw || len(out) < p.N*qw ||
		len(k) < (p.Pos0+p.N)*kw || len(v) < (p.Pos0+p.N)*kw {
		panic(fmt.Sprintf("cpu: Attention %+v with q %d, k %d, v %d, out %d", p, len(q), len(k), len(v), len(out)))
	}
	ctx := p.Pos0 + p.N
	for w := range b.scores {
		if cap(b.scores[w]) < ctx {
			b.scores[w] = make([]float32, ctx+ctx/2)
		}
	}
	t := &b.attn
	t.b, t.out, t.q, t.k, t.v, t.p = b, out, q, k, v, p
	// One item is one (query row, head) pair; its cost grows with the
	// number of positions it attends to.
	grain := max(1, macsPerChunk/(2*ctx*p.HeadDim))
	b.pool.run(t, p.N*p.Heads, grain)
	t.out, t.q, t.k, t.v = nil, nil, nil, nil
}

type attnTask struct {
	b            *Backend
	out, q, k, v []float32
	p            kernels.AttnParams
}

func (t *attnTask) run(worker, lo, hi int) {
	p := t.p
	hd := p.HeadDim
	qw := p.Heads * hd
	kw := p.KVHeads * hd
	group := p.Heads / p.KVHeads
	scores := t.b.scores[worker]
	for item := lo; item < hi; item++ {
		row, h := item/p.Heads, item%p.Heads
		kvh := h / group
		n := p.Pos0 + row + 1
		qh := t.q[row*qw+h*hd : row*qw+(h+1)*hd]
		sc := scores[:n]
		maxv := float32(math.Inf(-1))
		for pos := 0; pos < n; pos++ {
			s := dotF32(qh, t.k[pos*kw+kvh*hd:pos*kw+(kvh+1)*hd]) * p.Scale
			sc[pos] = s
			maxv = max(maxv, s)
		}
		var sum float32
		for pos := range sc {
			e := float32(math.Exp(float64(sc[pos] - maxv)))
			sc[pos] = e
			sum += e
		}
		inv := 1 / sum
		o := t.out[row*qw+h*hd : row*qw+(h+1)*hd]
		clear(o)
		for pos, s := range sc {
			axpy(o, t.v[pos*kw+kvh*hd:pos*kw+(kvh+1)*hd], s*inv)
		}
	}
}

// axpyGeneric sets y += a·x.
func axpyGeneric(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
