package model

import (
	"errors"
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// ErrNoTrainer is returned by the training entry points when the engine's
// backend has no training kernels (it does not implement kernels.Trainer).
var ErrNoTrainer = errors.New("backend has no training kernels (kernels.Trainer)")

// trainer is the engine's backend as a kernels.Trainer.
func (e *Engine) trainer() (kernels.Trainer, error) {
	tr, ok := e.be.(kernels.Trainer)
	if !ok {
		return nil, fmt.Errorf("backend %s: %w", e.be.Name(), ErrNoTrainer)
	}
	return tr, nil
}

// Grads are the float32 gradients of a model's parameters, shaped as
// Weights's, in one allocation. A part the weights do not hold is nil.
// With a shared classifier Output is the same slice as Embedding, so the
// gradients of both uses add up in one place.
type Grads struct {
	Embedding []float32     // [Vocab, Dim]
	Layers    []*LayerGrads // by absolute layer number
	FinalNorm []float32     // [Dim]
	Output    []float32     // [Vocab, Dim]
	buf       []float32
}

// LayerGrads are the gradients of one Layer's weights ([out, in], row by
// row, as the Layer's matrices).
type LayerGrads struct {
	AttnNorm, FFNNorm          []float32
	Wq, Wk, Wv, Wo, W1, W2, W3 []float32
}

func (g *LayerGrads) proj(p Proj) []float32 {
	return [numProj][]float32{g.Wq, g.Wk, g.Wv, g.Wo, g.W1, g.W3, g.W2}[p]
}

// NewGrads allocates zero gradients for every parameter w holds.
func NewGrads(w *Weights) *Grads {
	c := &w.Config
	d, kv, h := c.Dim, c.KVDim(), c.Hidden
	perLayer := 2*d + 2*d*d + 2*kv*d + 3*h*d
	total := 0
	if w.Embedding != nil {
		total += c.Vocab * d
	}
	if w.Output != nil && w.Output != w.Embedding {
		total += c.Vocab * d
	}
	if w.FinalNorm != nil {
		total += d
	}
	for _, l := range w.Layers {
		if l != nil {
			total += perLayer
		}
	}
	g := &Grads{buf: make([]float32, total), Layers: make([]*LayerGrads, len(w.Layers))}
	rest := g.buf
	take := func(k int) []float32 {
		s := rest[:k:k]
		rest = rest[k:]
		return s
	}
	if w.Embedding != nil {
		g.Embedding = take(c.Vocab * d)
	}
	for li, l := range w.Layers {
		if l == nil {
			continue
		}
		g.Layers[li] = &LayerGrads{
			AttnNorm: take(d), Wq: take(d * d), Wk: take(kv * d), Wv: take(kv * d), Wo: take(d * d),
			FFNNorm: take(d), W1: take(h * d), W2: take(d * h), W3: take(h * d),
		}
	}
	if w.FinalNorm != nil {
		g.FinalNorm = take(d)
	}
	switch {
	case w.Output != nil && w.Output == w.Embedding:
		g.Output = g.Embedding
	case w.Output != nil:
		g.Output = take(c.Vocab * d)
	}
	return g
}

// Zero sets every gradient to zero, as each step must before its backward
// passes accumulate.
func (g *Grads) Zero() { clear(g.buf) }

// SetGrads makes the engine's backward passes accumulate the gradient of
// every parameter the weights hold into g: full fine-tuning. It points the
// Grad of each Dense that SetLinear has not replaced (and of the head) at
// g's matrix; nil detaches them, freezing the weights, so that only
// linear maps with parameters of their own (adapters) learn. An adapter
// that wraps a Dense should wrap it before SetGrads, or after SetGrads(nil),
// to keep the base frozen.
func (e *Engine) SetGrads(g *Grads) {
	e.grads = g
	for li := range e.maps {
		lm := &e.maps[li]
		for p, f := range lm.lin {
			d, ok := f.(*Dense)
			if !ok || d.W != lm.base[p] {
				continue
			}
			d.Grad = nil
			if g != nil && g.Layers[li] != nil {
				d.Grad = g.Layers[li].proj(Proj(p))
			}
		}
	}
	if e.head != nil {
		e.head.Grad = nil
		if g != nil {
			e.head.Grad = g.Output
		}
	}
}

// Activations is what a training forward pass over Batch sequences of Seq
// positions each keeps for the backward, planned once and allocated in one
// piece: for each layer of the span [First, Last) the block's input, the
// normed inputs of attention and FFN, the queries and keys after RoPE, the
// values, the attention output, the residual between attention and FFN,
// the FFN's gate and up projections before SwiGLU; when the span ends at
// the last layer and the weights hold the head, the final hidden state,
// its norm and the gradient of the loss with respect to the logits; the
// caches attention reads during the forward; and the backward's scratch.
//
// The rows of every buffer are the sequences' positions laid end to end:
// row b·Seq + t is position t of sequence b. Each sequence starts at
// position 0.
type Activations struct {
	Batch, Seq  int
	First, Last int

	layers []blockBufs // per layer of the span; delta and g are shared scratch
	caches []*Cache
	segs   []segment

	// The head, when recorded: the final hidden state xL, its norm xn
	// ([n, Dim]); dlogits ([n, Vocab]); the loss weight of each row.
	head            bool
	xL, xn, dlogits []float32
	lossW           []float32
	ids             []int

	// Backward scratch.
	dx, dxb, dq, datt []float32 // [n, Dim]
	dk, dv            []float32 // [n, KVDim]
	dh1, dh3          []float32 // [n, Hidden]

	buf []float32
}

// NewActivations plans and allocates the activations of a training forward
// pass over layers [first, last) (first == last: none, for a node that
// only embeds and runs the head) for batch sequences of seq positions. The
// backend must have training kernels.
func (e *Engine) NewActivations(first, last, batch, seq int) (*Activations, error) {
	c := &e.w.Config
	if _, err := e.trainer(); err != nil {
		return nil, fmt.Errorf("activations: %w", err)
	}
	if err := e.w.Trainable(); err != nil {
		return nil, fmt.Errorf("activations: %w", err)
	}
	if first < 0 || last > c.Layers || first > last {
		return nil, fmt.Errorf("activations: layer span [%d, %d) outside the model's %d layers", first, last, c.Layers)
	}
	if !e.w.HasLayers(first, last) {
		return nil, fmt.Errorf("activations: layer span [%d, %d) is not all loaded", first, last)
	}
	if batch < 1 || seq < 1 || seq > c.Context {
		return nil, fmt.Errorf("activations: %d sequences of %d positions: need at least one of at least one, and at most the model's context %d", batch, seq, c.Context)
	}
	d, kv, h, v := c.Dim, c.KVDim(), c.Hidden, c.Vocab
	n := batch * seq
	layers := last - first
	head := last == c.Layers && e.w.Output != nil && e.w.FinalNorm != nil
	// Per row: each layer's record and caches, the forward's shared
	// scratch, the backward's, and the head's record.
	perRow := int64(layers)*int64(6*d+4*kv+2*h) + int64(d+h) + int64(4*d+2*kv+2*h)
	if head {
		perRow += int64(2*d + v + 1)
	}
	const maxFloats = 1 << 36 // 256 GiB: a mistake, not a plan
	if int64(batch) > maxFloats/(int64(seq)*perRow) {
		return nil, fmt.Errorf("activations: %d sequences of %d positions, %d values a position, would take more than %d GiB", batch, seq, perRow, maxFloats*4>>30)
	}
	total := n * int(perRow)
	a := &Activations{Batch: batch, Seq: seq, First: first, Last: last, head: head, buf: make([]float32, total)}
	rest := a.buf
	take := func(k int) []float32 {
		s := rest[:k:k]
		rest = rest[k:]
		return s
	}
	delta, g := take(n*d), take(n*h)
	a.layers = make([]blockBufs, layers)
	for i := range a.layers {
		a.layers[i] = blockBufs{
			x0: take(n * d), xa: take(n * d), q: take(n * d), k: take(n * kv), v: take(n * kv),
			att: take(n * d), x1: take(n * d), xf: take(n * d), h1: take(n * h), h3: take(n * h),
			delta: delta, g: g,
		}
	}
	if layers > 0 {
		for range batch { // caches of seq positions: 2·kv values per row and layer
			ca := &Cache{First: first, Last: last, Cap: seq, typ: kernels.F32, size: kv * seq}
			for range layers {
				ca.k = append(ca.k, take(kv*seq))
				ca.v = append(ca.v, take(kv*seq))
			}
			a.caches = append(a.caches, ca)
			a.segs = append(a.segs, segment{c: ca, rows: seq})
		}
	}
	a.dx, a.dxb, a.dq, a.datt = take(n*d), take(n*d), take(n*d), take(n*d)
	a.dk, a.dv = take(n*kv), take(n*kv)
	a.dh1, a.dh3 = take(n*h), take(n*h)
	if head {
		a.xL, a.xn, a.dlogits, a.lossW = take(n*d), take(n*d), take(n*v), take(n)
	}
	if len(rest) != 0 {
		panic("model: activations planned larger than cut")
	}
	return a, nil
}

// Rows is the number of rows of the pass: Batch·Seq.
func (a *Activations) Rows() int { return a.Batch * a.Seq }

// Bytes is the memory the activations hold.
func (a *Activations) Bytes() int64 { return 4*int64(len(a.buf)) + 8*int64(cap(a.ids)) }

// SpanForward runs the span's layers on x ([Rows, Dim], the span's input,
// updated in place to its output) as the inference forward does, keeping
// what SpanBackward needs in a.
func (e *Engine) SpanForward(a *Activations, x []float32) error {
	d := e.w.Config.Dim
	n := a.Rows()
	if len(x) < n*d {
		return fmt.Errorf("span forward: %d rows need %d values, got %d", n, n*d, len(x))
	}
	x = x[:n*d]
	for _, c := range a.caches {
		c.Reset()
	}
	for li := a.First; li < a.Last; li++ {
		if err := e.block(li, x, n, n, a.segs, &a.layers[li-a.First]); err != nil {
			return fmt.Errorf("span forward: %w", err)
		}
	}
	for _, c := range a.caches {
		c.Len = c.Cap
	}
	return nil
}

// SpanBackward is the backward of the last SpanForward on a: dx holds the
// gradient of the loss with respect to the span's output ([Rows, Dim]) and
// is updated in place to the gradient with respect to its input. The
// gradients of the weights are accumulated (added) into the engine's Grads
// (SetGrads) and into adapters' own.
func (e *Engine) SpanBackward(a *Activations, dx []float32) error {
	tr, err := e.trainer()
	if err != nil {
		return fmt.Errorf("span backward: %w", err)
	}
	d := e.w.Config.Dim
	n := a.Rows()
	if len(dx) < n*d {
		return fmt.Errorf("span backward: %d rows need %d values, got %d", n, n*d, len(dx))
	}
	for li := a.Last - 1; li >= a.First; li-- {
		e.blockBackward(tr, li, a, dx[:n*d])
	}
	return nil
}

// blockBackward is the backward of layer li's block: dres holds the
// gradient with respect to the block's output and becomes the gradient
// with respect to its input. Each step walks one op of block in reverse
// and adds into the gradients of its inputs.
func (e *Engine) blockBackward(tr kernels.Trainer, li int, a *Activations, dres []float32) {
	cfg := &e.w.Config
	d, kv, hd := cfg.Dim, cfg.KVDim(), cfg.HeadDim()
	n := a.Rows()
	l := e.w.Layers[li]
	lin := &e.maps[li].lin
	b := &a.layers[li-a.First]
	be := e.be
	var dAttnNorm, dFFNNorm []float32
	if e.grads != nil && e.grads.Layers[li] != nil {
		dAttnNorm, dFFNNorm = e.grads.Layers[li].AttnNorm, e.grads.Layers[li].FFNNorm
	}

	// x2 = x1 + Down(SwiGLU(Gate(xf), Up(xf))), xf = RMSNorm(x1).
	be.SwiGLU(b.g, b.h1, b.h3) // g was overwritten by the later layers
	dg := a.dh1
	clear(dg)
	lin[ProjDown].Backward(dg, dres, b.g, n)
	tr.SwiGLUBackward(a.dh1, a.dh3, dg, b.h1, b.h3)
	clear(a.dxb)
	lin[ProjGate].Backward(a.dxb, a.dh1, b.xf, n)
	lin[ProjUp].Backward(a.dxb, a.dh3, b.xf, n)
	tr.RMSNormBackward(a.dxb, dFFNNorm, a.dxb, b.x1, l.FFNNorm, cfg.NormEps)
	be.Add(dres, a.dxb)

	// x1 = x0 + O(Attention(RoPE(Q(xa)), RoPE(K(xa)), V(xa))), xa = RMSNorm(x0).
	clear(a.datt)
	lin[ProjO].Backward(a.datt, dres, b.att, n)
	p := kernels.AttnParams{
		Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: hd,
		N: a.Seq, Cap: a.Seq, Scale: float32(1 / math.Sqrt(float64(hd))),
	}
	rq := e.ropeParams(li, cfg.Heads, 0)
	rk := rq
	rk.Heads = cfg.KVHeads
	for s := range a.Batch {
		r0, r1 := s*a.Seq, (s+1)*a.Seq
		dq, dk, dv := a.dq[r0*d:r1*d], a.dk[r0*kv:r1*kv], a.dv[r0*kv:r1*kv]
		tr.AttentionBackward(dq, dk, dv, a.datt[r0*d:r1*d], b.q[r0*d:r1*d], b.k[r0*kv:r1*kv], b.v[r0*kv:r1*kv], p)
		tr.RoPEBackward(dq, rq)
		tr.RoPEBackward(dk, rk)
	}
	clear(a.dxb)
	lin[ProjQ].Backward(a.dxb, a.dq, b.xa, n)
	lin[ProjK].Backward(a.dxb, a.dk, b.xa, n)
	lin[ProjV].Backward(a.dxb, a.dv, b.xa, n)
	tr.RMSNormBackward(a.dxb, dAttnNorm, a.dxb, b.x0, l.AttnNorm, cfg.NormEps)
	be.Add(dres, a.dxb)
}

// HeadForward runs the final norm and the output head on x ([Rows, Dim],
// the last layer's output) and returns the mean cross-entropy loss of the
// rows whose target is a token id; a negative target marks a row without
// one (padding, or a prompt the loss should not cover). It keeps in a what
// HeadBackward needs, including the gradient of the loss with respect to
// the logits, not the logits themselves.
func (e *Engine) HeadForward(a *Activations, x []float32, targets []int) (float64, error) {
	tr, err := e.trainer()
	if err != nil {
		return 0, fmt.Errorf("head forward: %w", err)
	}
	cfg := &e.w.Config
	d, n := cfg.Dim, a.Rows()
	if !a.head {
		return 0, errors.New("head forward: these activations do not cover the output head")
	}
	if len(x) < n*d || len(targets) != n {
		return 0, fmt.Errorf("head forward: %d rows need %d values and %d targets, got %d and %d", n, n*d, n, len(x), len(targets))
	}
	count := 0
	for i, t := range targets {
		if t >= cfg.Vocab {
			return 0, fmt.Errorf("head forward: target %d of row %d outside the vocabulary of %d", t, i, cfg.Vocab)
		}
		if t >= 0 {
			count++
		}
	}
	for i, t := range targets {
		a.lossW[i] = 0
		if t >= 0 {
			a.lossW[i] = 1 / float32(count)
		}
	}
	copy(a.xL, x[:n*d])
	e.be.RMSNorm(a.xn, a.xL, e.w.FinalNorm, cfg.NormEps)
	e.head.Apply(a.dlogits, a.xn, n)
	return tr.CrossEntropy(a.dlogits, a.dlogits, targets, a.lossW, cfg.Vocab), nil
}

// HeadBackward is the backward of the last HeadForward on a: it sets dx
// ([Rows, Dim]) to the gradient of the loss with respect to the head's
// input and accumulates the gradients of the final norm and the head.
func (e *Engine) HeadBackward(a *Activations, dx []float32) error {
	tr, err := e.trainer()
	if err != nil {
		return fmt.Errorf("head backward: %w", err)
	}
	cfg := &e.w.Config
	d, n := cfg.Dim, a.Rows()
	if !a.head {
		return errors.New("head backward: these activations do not cover the output head")
	}
	if len(dx) < n*d {
		return fmt.Errorf("head backward: %d rows need %d values, got %d", n, n*d, len(dx))
	}
	var dNorm []float32
	if e.grads != nil {
		dNorm = e.grads.FinalNorm
	}
	dx = dx[:n*d]
	clear(dx)
	e.head.Backward(dx, a.dlogits, a.xn, n)
	tr.RMSNormBackward(dx, dNorm, dx, a.xL, e.w.FinalNorm, cfg.NormEps)
	return nil
}

// EmbedBackward is the backward of Embed(x, ids): it adds row i of dx
// ([len(ids), Dim]) to the gradient of the embedding row of ids[i], when
// the engine has Grads that hold the embedding.
func (e *Engine) EmbedBackward(ids []int, dx []float32) error {
	cfg := &e.w.Config
	d := cfg.Dim
	if len(dx) < len(ids)*d {
		return fmt.Errorf("embed backward: %d ids need %d values, got %d", len(ids), len(ids)*d, len(dx))
	}
	if e.grads == nil || e.grads.Embedding == nil {
		return nil
	}
	for i, id := range ids {
		if id < 0 || id >= cfg.Vocab {
			return fmt.Errorf("embed backward: token id %d outside the vocabulary of %d", id, cfg.Vocab)
		}
		g := e.grads.Embedding[id*d : (id+1)*d]
		for j, v := range dx[i*d : (i+1)*d] {
			g[j] += v
		}
	}
	return nil
}

// TrainForward runs the whole model on a.Batch sequences of a.Seq token
// ids each (ids and targets [Rows], laid end to end) and returns the mean
// cross-entropy loss over the rows with a target (see HeadForward),
// keeping in a what TrainBackward needs. a must cover every layer and the
// head, and the engine must hold the embedding.
func (e *Engine) TrainForward(a *Activations, ids, targets []int) (float64, error) {
	n := a.Rows()
	if a.First != 0 || a.Last != e.w.Config.Layers || !a.head {
		return 0, fmt.Errorf("train forward: activations over layers [%d, %d) without the whole model and head", a.First, a.Last)
	}
	if len(ids) != n {
		return 0, fmt.Errorf("train forward: %d rows need %d ids, got %d", n, n, len(ids))
	}
	x := a.xL
	if err := e.Embed(x, ids); err != nil {
		return 0, fmt.Errorf("train forward: %w", err)
	}
	a.ids = append(a.ids[:0], ids...)
	if err := e.SpanForward(a, x); err != nil {
		return 0, err
	}
	return e.HeadForward(a, x, targets)
}

// TrainBackward is the backward of the last TrainForward on a: it
// accumulates (adds) the gradient of its loss with respect to every
// parameter into the engine's Grads (SetGrads) and into the adapters'
// own. Call Grads.Zero before the first backward of a step.
func (e *Engine) TrainBackward(a *Activations) error {
	if err := e.HeadBackward(a, a.dx); err != nil {
		return err
	}
	if err := e.SpanBackward(a, a.dx); err != nil {
		return err
	}
	return e.EmbedBackward(a.ids, a.dx)
}
