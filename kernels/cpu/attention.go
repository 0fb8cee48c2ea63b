package cpu

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

func checkAttn(what string, p kernels.AttnParams, kc, vc []float32) {
	if p.KVHeads <= 0 || p.Heads%p.KVHeads != 0 || p.HeadDim <= 0 || p.Pos0 < 0 || p.Pos0+p.N > p.Cap ||
		len(kc) < p.KVSize() || len(vc) < p.KVSize() {
		panic(fmt.Sprintf("cpu: %s %+v with caches of %d and %d", what, p, len(kc), len(vc)))
	}
}

// StoreKV writes N new positions into the caches; see kernels.AttnParams
// for the layout.
func (b *Backend) StoreKV(kc, vc, k, v []float32, p kernels.AttnParams) {
	if p.N <= 0 {
		return
	}
	checkAttn("StoreKV", p, kc, vc)
	hd, kw := p.HeadDim, p.KVHeads*p.HeadDim
	if len(k) < p.N*kw || len(v) < p.N*kw {
		panic(fmt.Sprintf("cpu: StoreKV %+v of %d keys and %d values", p, len(k), len(v)))
	}
	for t := 0; t < p.N; t++ {
		pos := p.Pos0 + t
		for h := 0; h < p.KVHeads; h++ {
			copy(vc[(h*p.Cap+pos)*hd:(h*p.Cap+pos+1)*hd], v[t*kw+h*hd:t*kw+(h+1)*hd])
			src := k[t*kw+h*hd : t*kw+(h+1)*hd]
			col := kc[h*hd*p.Cap+pos:]
			for i, x := range src {
				col[i*p.Cap] = x
			}
		}
	}
}

// Attention computes causal grouped-query attention; see kernels.Backend.
//
// For each query row and head: the scores are a column-major
// matrix-vector product of the head's transposed keys with the query, the
// softmax runs in place, and the output is a column-major product of the
// head's values with the weights. Both products keep their outputs in
// vector registers while streaming the cache.
func (b *Backend) Attention(out, q, k, v []float32, p kernels.AttnParams) {
	if p.N <= 0 {
		return
	}
	checkAttn("Attention", p, k, v)
	qw := p.Heads * p.HeadDim
	if len(q) < p.N*qw || len(out) < p.N*qw {
		panic(fmt.Sprintf("cpu: Attention %+v with q %d, out %d", p, len(q), len(out)))
	}
	ctx := p.Pos0 + p.N
	for w := range b.scores {
		if cap(b.scores[w]) < ctx {
			b.scores[w] = make([]float32, max(ctx+ctx/2, 64))
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
	hd, c := p.HeadDim, p.Cap
	qw := p.Heads * hd
	group := p.Heads / p.KVHeads
	scores := t.b.scores[worker]
	for item := lo; item < hi; item++ {
		row, h := item/p.Heads, item%p.Heads
		kvh := h / group
		n := p.Pos0 + row + 1
		qh := t.q[row*qw+h*hd : row*qw+(h+1)*hd]
		sc := scores[:n]
		gemvCM(sc, t.k[kvh*hd*c:(kvh+1)*hd*c], c, qh)
		inv := softmaxScaled(sc, p.Scale)
		o := t.out[row*qw+h*hd : row*qw+(h+1)*hd]
		gemvCM(o, t.v[kvh*c*hd:(kvh*c+n)*hd], hd, sc)
		for i := range o {
			o[i] *= inv
		}
	}
}

// softmaxScaled sets x[i] = exp(scale·(x[i] − max x)) and returns 1/Σ x[i]:
// the softmax of scale·x, left unnormalized.
func softmaxScaled(x []float32, scale float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return 1 / expShifted(x, x, m, scale)
}

// axpyGeneric sets y += a·x.
func axpyGeneric(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
