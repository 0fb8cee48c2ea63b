package model

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// A transformer block, written once. Decode (one position of one
// sequence), prefill (many positions of one sequence), batched decode (one
// position of each of many sequences) and the training forward all run
// Engine.block; what differs between them is only
//
//   - the segments: which rows of the batch belong to which sequence, and
//     so to which cache and positions (attend);
//   - the buffers: the engine's scratch for inference, the layer's slice of
//     an Activations for training, so that the intermediates a backward
//     pass needs are kept where they are computed, without copies;
//   - the linear maps, which are the engine's (Engine.SetLinear).
//
// One layer of n rows x ([n, Dim]) computes, with RMSNorm's weights from
// the layer and every product through a Linear:
//
//	xa    = RMSNorm(x, AttnNorm)
//	q,k,v = Q(xa), K(xa), V(xa)       // rotated by RoPE at each row's position
//	att   = Attention(q, k, v)        // over the segment's cache, k and v appended
//	x     = x + O(att)                // x1
//	xf    = RMSNorm(x, FFNNorm)
//	h1,h3 = Gate(xf), Up(xf)
//	g     = SwiGLU(h1, h3)
//	x     = x + Down(g)
//
// or, in a layer of routed experts, x = x + Experts(xf) (experts.go).
// The optional steps (biases, q/k norms, post-norms, experts) are taken
// when the layer holds their tensors.

// segment is the rows of one sequence in a block's batch: rows new
// positions appended to c, at positions c.Len..c.Len+rows-1. A batch's
// segments lie end to end in its rows.
type segment struct {
	c    *Cache
	rows int
}

// blockBufs are the buffers of one block's forward pass for m rows
// ([m, width] each, exactly). For inference they are the engine's scratch,
// shared by every layer (xa and xf one buffer, g the same as h1); a
// training forward points them at its record of the layer.
type blockBufs struct {
	xa, xf    []float32 // normed inputs of attention and FFN [m, Dim]
	q, att    []float32 // [m, Dim]; q after RoPE
	k, v      []float32 // [m, KVDim]; k after RoPE
	delta     []float32 // a branch's output before it joins x [m, Dim]
	h1, h3, g []float32 // gate, up, SwiGLU(gate, up) [m, Hidden]
	// x0 and x1, when not nil, get copies of the block's input and of
	// the residual stream between attention and FFN ([n, Dim]).
	x0, x1 []float32
}

// padRows fills rows n..m-1 of buf ([m, width]) with copies of row n-1.
func padRows(buf []float32, width, n, m int) {
	for i := n; i < m; i++ {
		copy(buf[i*width:(i+1)*width], buf[(n-1)*width:n*width])
	}
}

// productRows is the number of rows the products of a batch of n rows
// run on in inference: a block-quantized batch of two or three rows is
// padded to minPadRows (copies of the last row), so that the backend's
// multi-row kernel reads each weight once for all of them rather than
// once per row.
func (e *Engine) productRows(first, n int) int {
	w := e.w.Layers[first].Wq
	if w == nil { // latent attention
		w = e.w.Layers[first].Wo
	}
	if n > 1 && n < minPadRows && w.Type.Quantized() {
		return minPadRows
	}
	return n
}

// block runs layer li on the n rows of x ([n, Dim] exactly, updated in
// place), whose sequences segs lists in order, appending each segment's
// keys and values to its cache (whose Len the caller advances after the
// last layer). The products run on m ≥ n rows (see productRows): rows
// n..m-1 repeat row n-1 and their results are dropped.
func (e *Engine) block(li int, x []float32, n, m int, segs []segment, b *blockBufs) error {
	cfg := &e.w.Config
	d := cfg.Dim
	l := e.w.Layers[li]
	lm := &e.maps[li]
	be := e.be
	if b.x0 != nil {
		copy(b.x0, x)
	}

	be.RMSNorm(b.xa[:n*d], x, l.AttnNorm, cfg.NormEps)
	padRows(b.xa, d, n, m)
	if l.MLA != nil {
		e.latentQKV(l, b, m)
	} else {
		e.outs[0], e.outs[1], e.outs[2] = b.q, b.k, b.v
		e.apply(lm, ProjQ, e.outs[:3], b.xa, m)
	}
	kv, qd := e.kvDim, e.qDim
	e.addBias(b.q, l.BQ, m)
	e.addBias(b.k, l.BK, m)
	e.addBias(b.v, l.BV, m)
	if l.QNorm != nil {
		be.RMSNorm(b.q[:m*qd], b.q[:m*qd], l.QNorm, cfg.NormEps)
	}
	if l.KNorm != nil {
		be.RMSNorm(b.k[:m*kv], b.k[:m*kv], l.KNorm, cfg.NormEps)
	}
	e.attend(li, segs, b.att, b.q, b.k, b.v)
	narrowHeads(b.att, cfg.Heads*n, e.headDim, cfg.ValueDim())
	padRows(b.att, cfg.Heads*cfg.ValueDim(), n, m)
	e.outs[0] = b.delta
	e.apply(lm, ProjO, e.outs[:1], b.att, m)
	if l.PostAttnNorm != nil {
		be.RMSNorm(b.delta[:n*d], b.delta[:n*d], l.PostAttnNorm, cfg.NormEps)
	}
	be.Add(x, b.delta[:n*d])
	if b.x1 != nil {
		copy(b.x1, x)
	}

	be.RMSNorm(b.xf[:n*d], x, l.FFNNorm, cfg.NormEps)
	if l.Experts != nil {
		if err := e.experts(li, l.Experts, b.delta, b.xf, n); err != nil {
			return err
		}
	} else {
		padRows(b.xf, d, n, m)
		e.outs[0], e.outs[1] = b.h1, b.h3
		e.apply(lm, ProjGate, e.outs[:2], b.xf, m)
		e.glu(b.g, b.h1, b.h3)
		e.outs[0] = b.delta
		e.apply(lm, ProjDown, e.outs[:1], b.g, m)
	}
	if l.PostFFNNorm != nil {
		be.RMSNorm(b.delta[:n*d], b.delta[:n*d], l.PostFFNNorm, cfg.NormEps)
	}
	be.Add(x, b.delta[:n*d])
	return nil
}

// glu sets out to the config's gated activation of gate and up.
func (e *Engine) glu(out, gate, up []float32) {
	if e.w.Config.Act == ActGELU {
		e.be.GeGLU(out, gate, up)
	} else {
		e.be.SwiGLU(out, gate, up)
	}
}

// addBias adds bias (when not nil) to each of the m rows of buf.
func (e *Engine) addBias(buf, bias []float32, m int) {
	if bias == nil {
		return
	}
	w := len(bias)
	for r := range m {
		e.be.Add(buf[r*w:(r+1)*w], bias)
	}
}

// layerMaps are the linear maps of one layer, in Proj order.
type layerMaps struct {
	lin  [numProj]Linear          // what the block applies
	base [numProj]*kernels.Matrix // the layer's stored weights
	// plain is set while every map is the engine's own Dense over its
	// base weight: the block then reads the matrices from base, as one
	// small array, rather than through seven maps it would have to
	// fetch from memory one by one (a decode step's weights push them
	// out of the cache between layers).
	plain bool
}

// setPlain recomputes lm.plain.
func (lm *layerMaps) setPlain(be kernels.Backend) {
	lm.plain = true
	for p, l := range lm.lin {
		d, ok := l.(*Dense)
		lm.plain = lm.plain && ok && d.W == lm.base[p] && d.be == be
	}
}

// apply sets outs[i] to map p+i of the layer applied to x (n rows), for
// consecutive maps of one input: query, key and value; the output
// projection; gate and up; down. Maps that are all Dense on the engine's
// backend run as one MatMulMany: for one row, one job over the rows of
// every matrix.
func (e *Engine) apply(lm *layerMaps, p Proj, outs [][]float32, x []float32, n int) {
	if lm.plain {
		ws := lm.base[p : int(p)+len(outs)]
		switch {
		case n > 1:
			e.mulMany(outs, ws, x, n)
		case len(ws) == 1:
			e.be.MatMul(outs[0], ws[0], x, 1)
		default:
			e.be.MatMulMany(outs, ws, x, 1)
		}
		return
	}
	ws := e.ws[:len(outs)]
	for i := range outs {
		d, ok := lm.lin[int(p)+i].(*Dense)
		if !ok || d.be != e.be {
			for i, out := range outs {
				lm.lin[int(p)+i].Apply(out, x, n)
			}
			return
		}
		ws[i] = d.W
	}
	e.mulMany(outs, ws, x, n)
}

// mulMany is the backend's MatMulMany, but a Q4_0 batch of 4k+1 rows
// runs as 4k rows and one (see splitRows).
func (e *Engine) mulMany(outs [][]float32, ws []*kernels.Matrix, x []float32, n int) {
	if len(ws) == 1 {
		mulRows(e.be, outs[0], ws[0], x, n)
		return
	}
	split := false
	for _, w := range ws {
		split = split || splitRows(w, n)
	}
	if !split {
		e.be.MatMulMany(outs, ws, x, n)
		return
	}
	k := n - 1
	cols := ws[0].Cols
	last := e.outsLast[:len(ws)]
	for i, w := range ws {
		last[i] = outs[i][k*w.Rows : n*w.Rows]
	}
	e.be.MatMulMany(outs, ws, x[:k*cols], k)
	e.be.MatMulMany(last, ws, x[k*cols:n*cols], 1)
}

// attend rotates the queries and keys of each segment's rows to their
// positions, appends the segment's keys and values to its cache at layer
// li, and runs causal attention for its queries over the cache into att.
func (e *Engine) attend(li int, segs []segment, att, q, k, v []float32) {
	cfg := &e.w.Config
	d, kv, hd := e.qDim, e.kvDim, e.headDim
	r := 0
	for _, s := range segs {
		pos, n := s.c.Len, s.rows
		qs, ks, vs := q[r*d:(r+n)*d], k[r*kv:(r+n)*kv], v[r*kv:(r+n)*kv]
		e.rope(li, qs, cfg.Heads, pos)
		e.rope(li, ks, cfg.KVHeads, pos)
		s.c.attend(e.be, li, att[r*d:(r+n)*d], qs, ks, vs, kernels.AttnParams{
			Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: hd,
			Pos0: pos, N: n, Cap: s.c.Cap, Scale: e.scale,
			SoftCap: cfg.AttnSoftCap, Window: cfg.window(li),
		})
		r += n
	}
}

// ropeParams is the rotary embedding of layer li for heads heads (of the
// rotated width) from position pos0: RopeTheta with the engine's frequency
// factors, or RopeLocalTheta unscaled in a sliding-window layer that has
// its own base.
func (e *Engine) ropeParams(li, heads, pos0 int) kernels.RopeParams {
	cfg := &e.w.Config
	p := kernels.RopeParams{Heads: heads, HeadDim: cfg.RotaryDim(), Pos0: pos0, Theta: cfg.RopeTheta,
		Style: cfg.RopeStyle, FreqFactors: e.ropeFactors}
	if cfg.localRope(li) {
		p.Theta, p.FreqFactors = cfg.RopeLocalTheta, nil
	}
	return p
}

// rope rotates the rows of x (heads heads of HeadDim each) from position
// pos0 as layer li does: whole heads, or only the last RopeDim values of
// each (gathered, rotated and put back).
func (e *Engine) rope(li int, x []float32, heads, pos0 int) {
	p := e.ropeParams(li, heads, pos0)
	hd, r := e.headDim, p.HeadDim
	if r == hd {
		e.be.RoPE(x, p)
		return
	}
	nh := len(x) / hd
	buf := e.ropeBuf[:nh*r]
	for i := range nh {
		copy(buf[i*r:(i+1)*r], x[(i+1)*hd-r:(i+1)*hd])
	}
	e.be.RoPE(buf, p)
	for i := range nh {
		copy(x[(i+1)*hd-r:(i+1)*hd], buf[i*r:(i+1)*r])
	}
}

// narrowHeads keeps the first w values of each of the nh heads of width hd
// in x, packed in place (attention's output when values are narrower than
// keys); nothing moves when w is hd.
func narrowHeads(x []float32, nh, hd, w int) {
	if w != hd {
		for i := range nh {
			copy(x[i*w:(i+1)*w], x[i*hd:i*hd+w])
		}
	}
}

// inferBufs are the engine's scratch buffers for a block of m rows.
func (e *Engine) inferBufs(m int) *blockBufs {
	e.grow(m)
	c := &e.w.Config
	d, kv, h := c.Dim, c.KVDim(), c.Hidden
	b := &e.bufs
	qd := c.QDim()
	*b = blockBufs{
		xa: e.xb[:m*d], q: e.q[:m*qd], att: e.att[:m*qd], delta: e.delta[:m*d],
		k: e.k[:m*kv], v: e.v[:m*kv], h1: e.h1[:m*h], h3: e.h3[:m*h],
	}
	b.xf, b.g = b.xa, b.h1
	return b
}

// run runs layers [first, last) on the n rows of x whose sequences segs
// lists, on inference scratch, and advances the caches. On an error
// (experts held elsewhere that did not answer) the caches stay as they
// were: the positions whose keys the failed pass stored are not counted.
func (e *Engine) run(first, last int, x []float32, n int, segs []segment) error {
	m := e.productRows(first, n)
	b := e.inferBufs(m)
	for li := first; li < last; li++ {
		if err := e.block(li, x, n, m, segs, b); err != nil {
			return fmt.Errorf("forward: %w", err)
		}
	}
	for _, s := range segs {
		s.c.Len += s.rows
	}
	return nil
}
