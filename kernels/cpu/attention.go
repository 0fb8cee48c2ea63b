package cpu

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

func checkAttn(what string, p kernels.AttnParams, kc, vc int) {
	if p.KVHeads <= 0 || p.Heads%p.KVHeads != 0 || p.HeadDim <= 0 || p.Pos0 < 0 || p.Pos0+p.N > p.Cap ||
		kc < p.KVSize() || vc < p.KVSize() {
		panic(fmt.Sprintf("cpu: %s %+v with caches of %d and %d", what, p, kc, vc))
	}
}

func checkStore(what string, p kernels.AttnParams, k, v []float32) {
	if kw := p.KVHeads * p.HeadDim; len(k) < p.N*kw || len(v) < p.N*kw {
		panic(fmt.Sprintf("cpu: %s %+v of %d keys and %d values", what, p, len(k), len(v)))
	}
}

// StoreKV writes N new positions into the caches; see kernels.AttnParams
// for the layout.
func (b *Backend) StoreKV(kc, vc, k, v []float32, p kernels.AttnParams) {
	if p.N <= 0 {
		return
	}
	checkAttn("StoreKV", p, len(kc), len(vc))
	checkStore("StoreKV", p, k, v)
	hd, kw := p.HeadDim, p.KVHeads*p.HeadDim
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

// StoreKV16 writes N new positions into half-precision caches, rounding
// each value to nearest even; see kernels.Backend.
func (b *Backend) StoreKV16(kc, vc []uint16, k, v []float32, p kernels.AttnParams) {
	if p.N <= 0 {
		return
	}
	checkAttn("StoreKV16", p, len(kc), len(vc))
	checkStore("StoreKV16", p, k, v)
	hd, kw := p.HeadDim, p.KVHeads*p.HeadDim
	half := b.half[:]
	for t := 0; t < p.N; t++ {
		pos := p.Pos0 + t
		for h := 0; h < p.KVHeads; h++ {
			toF16(vc[(h*p.Cap+pos)*hd:(h*p.Cap+pos+1)*hd], v[t*kw+h*hd:t*kw+(h+1)*hd])
			// A key row is rounded in pieces of len(half), each then
			// scattered down its column.
			src := k[t*kw+h*hd : t*kw+(h+1)*hd]
			col := kc[h*hd*p.Cap+pos:]
			for i0 := 0; i0 < hd; i0 += len(half) {
				piece := half[:min(len(half), hd-i0)]
				toF16(piece, src[i0:i0+len(piece)])
				for i, x := range piece {
					col[(i0+i)*p.Cap] = x
				}
			}
		}
	}
}

// toF16Generic rounds src to half precision into dst (at least as long),
// to nearest even.
func toF16Generic(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = kernels.F32ToF16(x)
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
	checkAttn("Attention", p, len(k), len(v))
	t := &b.attn
	t.k, t.v = k, v
	b.attend(out, q, p)
	t.k, t.v = nil, nil
}

// Attention16 is Attention over half-precision caches: the same two
// products, widening the cached values as they are loaded.
func (b *Backend) Attention16(out, q []float32, k, v []uint16, p kernels.AttnParams) {
	if p.N <= 0 {
		return
	}
	checkAttn("Attention16", p, len(k), len(v))
	t := &b.attn
	t.k16, t.v16 = k, v
	b.attend(out, q, p)
	t.k16, t.v16 = nil, nil
}

// attend runs the attention task over the caches set in b.attn.
func (b *Backend) attend(out, q []float32, p kernels.AttnParams) {
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
	t.b, t.out, t.q, t.p = b, out, q, p
	// One item is one (query row, head) pair; its cost grows with the
	// number of positions it attends to.
	grain := max(1, macsPerChunk/(2*ctx*p.HeadDim))
	b.pool.run(t, p.N*p.Heads, grain)
	t.out, t.q = nil, nil
}

// attnTask is one Attention call: over float32 caches k and v, or, if
// they are nil, half-precision caches k16 and v16.
type attnTask struct {
	b            *Backend
	out, q, k, v []float32
	k16, v16     []uint16
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
		// Keys lo..n-1: all of them, or the last Window.
		lo := 0
		if p.Window > 0 {
			lo = max(0, n-p.Window)
		}
		qh := t.q[row*qw+h*hd : row*qw+(h+1)*hd]
		sc := scores[:n]
		o := t.out[row*qw+h*hd : row*qw+(h+1)*hd]
		if t.k != nil {
			gemvCM(sc, t.k[kvh*hd*c:(kvh+1)*hd*c], c, qh)
		} else {
			gemvCM16(sc, t.k16[kvh*hd*c:(kvh+1)*hd*c], c, qh)
		}
		sc = sc[lo:]
		scale := p.Scale
		if p.SoftCap > 0 {
			for i := range sc {
				sc[i] *= scale
			}
			kernels.SoftCap(sc, p.SoftCap)
			scale = 1
		}
		inv := softmaxScaled(sc, scale)
		if t.v != nil {
			gemvCM(o, t.v[(kvh*c+lo)*hd:(kvh*c+n)*hd], hd, sc)
		} else {
			gemvCM16(o, t.v16[(kvh*c+lo)*hd:(kvh*c+n)*hd], hd, sc)
		}
		for i := range o {
			o[i] *= inv
		}
	}
}

// softmaxScaled sets x[i] = exp(scale·(x[i] − max x)) and returns 1/Σ x[i]:
// the softmax of scale·x, left unnormalized.
func softmaxScaled(x []float32, scale float32) float32 {
	return 1 / expShifted(x, x, maxF32(x), scale)
}

// maxF32Generic returns the largest value of x (not empty).
func maxF32Generic(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

// axpyGeneric sets y += a·x.
func axpyGeneric(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}
