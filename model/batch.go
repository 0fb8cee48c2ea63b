package model

import (
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// minPadRows is the batch a block-quantized batch of fewer rows is padded
// to: the width of the backends' multi-row quantized kernels, below which
// they run one matrix-vector product per row.
const minPadRows = 4

// mulRows is be.MatMul for a batch of n rows. A block-quantized batch of
// 4k+1 rows (k ≥ 1) runs as 4k rows and one: the multi-row kernel's
// four-row tiles would cover the odd row with a whole overlapping tile,
// four rows' work, while the single row's matrix-vector product reads the
// weights the tiles just brought into the cache.
func (e *Engine) mulRows(out []float32, w *kernels.Matrix, x []float32, n int) {
	if n > minPadRows && n%minPadRows == 1 && w.Type.Quantized() {
		k := n - 1
		e.be.MatMul(out[:k*w.Rows], w, x[:k*w.Cols], k)
		e.be.MatMul(out[k*w.Rows:n*w.Rows], w, x[k*w.Cols:n*w.Cols], 1)
		return
	}
	e.be.MatMul(out, w, x, n)
}

// ForwardRows runs one new position of each of len(caches) sequences
// through their span of layers as one batch: row i of x ([len(caches),
// Dim], updated in place) is the hidden state of sequence i at position
// caches[i].Len, and its keys and values go to caches[i]. Every cache must
// cover the same span, and no cache may appear twice.
//
// The matrix products run on all rows at once (continuous batching of
// decode steps); rotary embedding and attention run row by row, each over
// its own cache. With block-quantized weights a batch of two or three rows
// is padded to minPadRows for the products (copies of the last row), so
// that the backend's multi-row kernel reads each weight once for all of
// them rather than once per row, and a batch of 4k+1 rows runs as 4k rows
// and one (see mulRows). Row i gives the result
// Forward(caches[i], row, 1) gives, exactly while the batch goes through
// the backend's row-by-row kernels and to rounding when it goes through a
// matrix-matrix kernel.
func (e *Engine) ForwardRows(caches []*Cache, x []float32) error {
	n := len(caches)
	if n == 0 {
		return nil
	}
	cfg := &e.w.Config
	d := cfg.Dim
	if len(x) < n*d {
		return fmt.Errorf("forward rows: %d rows need %d values, got %d", n, n*d, len(x))
	}
	first, last := caches[0].First, caches[0].Last
	for i, c := range caches {
		if c.First != first || c.Last != last {
			return fmt.Errorf("forward rows: cache %d covers [%d, %d), cache 0 [%d, %d)", i, c.First, c.Last, first, last)
		}
		if c.Len+1 > c.Cap {
			return fmt.Errorf("forward rows: row %d at position %d: %w (cache holds %d)", i, c.Len, ErrContextFull, c.Cap)
		}
		for _, o := range caches[:i] {
			if o == c {
				return fmt.Errorf("forward rows: cache of row %d appears twice", i)
			}
		}
	}
	// m rows go through the matrix products: n, or n padded.
	m := n
	if n > 1 && n < minPadRows && e.w.Layers[first].Wq.Type.Quantized() {
		m = minPadRows
	}
	e.grow(m)
	x = x[:n*d]
	hd := cfg.HeadDim()
	kv := cfg.KVDim()
	xb, q, att, delta := e.xb[:m*d], e.q[:m*d], e.att[:m*d], e.delta[:m*d]
	kNew, vNew := e.k[:m*kv], e.v[:m*kv]
	h1, h3 := e.h1[:m*cfg.Hidden], e.h3[:m*cfg.Hidden]
	// pad fills rows n..m-1 of a [m, width] buffer with copies of row n-1.
	pad := func(buf []float32, width int) {
		for i := n; i < m; i++ {
			copy(buf[i*width:(i+1)*width], buf[(n-1)*width:n*width])
		}
	}
	scale := float32(1 / math.Sqrt(float64(hd)))
	be := e.be
	for li := first; li < last; li++ {
		l := e.w.Layers[li]

		be.RMSNorm(xb[:n*d], x, l.AttnNorm, cfg.NormEps)
		pad(xb, d)
		e.mulRows(q, l.Wq, xb, m)
		e.mulRows(kNew, l.Wk, xb, m)
		e.mulRows(vNew, l.Wv, xb, m)
		for i, c := range caches {
			pos := c.Len
			rq := kernels.RopeParams{Heads: cfg.Heads, HeadDim: hd, Pos0: pos, Theta: cfg.RopeTheta, Style: cfg.RopeStyle}
			rk := rq
			rk.Heads = cfg.KVHeads
			qi, ki, vi := q[i*d:(i+1)*d], kNew[i*kv:(i+1)*kv], vNew[i*kv:(i+1)*kv]
			be.RoPE(qi, rq)
			be.RoPE(ki, rk)
			attn := kernels.AttnParams{
				Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: hd,
				Pos0: pos, N: 1, Cap: c.Cap, Scale: scale,
			}
			c.attend(be, li, att[i*d:(i+1)*d], qi, ki, vi, attn)
		}
		pad(att, d)
		e.mulRows(delta, l.Wo, att, m)
		be.Add(x, delta[:n*d])

		be.RMSNorm(xb[:n*d], x, l.FFNNorm, cfg.NormEps)
		pad(xb, d)
		e.mulRows(h1, l.W1, xb, m)
		e.mulRows(h3, l.W3, xb, m)
		be.SwiGLU(h1, h1, h3)
		e.mulRows(delta, l.W2, h1, m)
		be.Add(x, delta[:n*d])
	}
	for _, c := range caches {
		c.Len++
	}
	return nil
}
