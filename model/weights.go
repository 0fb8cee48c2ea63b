package model

import (
	"fmt"
	"strings"

	"github.com/mycel-net/mycel/kernels"
)

// Layer holds the weights of one transformer block. Matrices are
// [out, in]: Wq is [Dim, Dim], Wk and Wv [KVDim, Dim], Wo [Dim, Dim],
// W1 (gate) and W3 (up) [Hidden, Dim], W2 (down) [Dim, Hidden]. A layer of
// routed experts has Experts in place of W1, W2 and W3.
type Layer struct {
	AttnNorm []float32 // [Dim]
	Wq       *kernels.Matrix
	Wk       *kernels.Matrix
	Wv       *kernels.Matrix
	Wo       *kernels.Matrix
	FFNNorm  []float32       // [Dim]
	W1       *kernels.Matrix // gate
	W2       *kernels.Matrix // down
	W3       *kernels.Matrix // up

	// Optional steps of the block, each taken when its tensor is here.
	BQ, BK, BV   []float32 // biases of q [Dim], k and v [KVDim] (Qwen2)
	QNorm, KNorm []float32 // RMSNorm of each q and k head [HeadDim], before RoPE (Qwen3)
	// PostAttnNorm and PostFFNNorm normalise the attention's and the FFN's
	// output before it joins the residual stream [Dim] (Gemma 2).
	PostAttnNorm, PostFFNNorm []float32

	// Experts, when not nil, is the layer's FFN in place of the dense one
	// (a mixture of experts, Config.Experts).
	Experts *Experts
	// MLA, when not nil, computes q, k and v in place of Wk and Wv (and of
	// Wq, unless Config.QLoRA is 0): latent attention, Config.KVLoRA.
	MLA *MLA
}

// MLA are the projections of multi-head latent attention. With H heads,
// r = RopeDim and n = HeadDim-r:
//
//	q      = QB·RMSNorm(QA·x, QANorm)   // [H, n+r], or Wq·x when QLoRA is 0
//	c, kr  = KVA·x                      // [KVLoRA], [r]
//	kn, v  = KVB·RMSNorm(c, KVANorm)    // per head [n], [ValueDim]
//	k      = [kn | kr] for every head
type MLA struct {
	QA      *kernels.Matrix // [QLoRA, Dim]; nil when QLoRA is 0
	QANorm  []float32       // [QLoRA]
	QB      *kernels.Matrix // [Heads·HeadDim, QLoRA]
	KVA     *kernels.Matrix // [KVLoRA+RopeDim, Dim]
	KVANorm []float32       // [KVLoRA]
	KVB     *kernels.Matrix // [KVHeads·(HeadDim-RopeDim+ValueDim), KVLoRA]
}

// Experts are the routed experts of one layer: Config.Experts gated FFNs
// of ExpertHidden, and the router that picks Config.ExpertsUsed of them
// for each row. Gate[i] and Up[i] are [ExpertHidden, Dim], Down[i]
// [Dim, ExpertHidden]; a file's stacked expert tensors are sliced into
// them in place, without copies.
type Experts struct {
	Router         *kernels.Matrix // [Experts, Dim]: each expert's logit
	Gate, Up, Down []*kernels.Matrix
	// Bias, when not nil, is added to the router's weights to choose the
	// experts, but not to weight them [Experts] (DeepSeek-V3).
	Bias []float32
	// SharedGate, SharedUp and SharedDown, when not nil, are an FFN every
	// row runs beside its chosen experts, weighted 1 (shared experts,
	// [h, Dim] and [Dim, h] for some width h).
	SharedGate, SharedUp, SharedDown *kernels.Matrix
}

// Matrices lists the layer's weight matrices that are present, the
// experts' included.
func (l *Layer) Matrices() []*kernels.Matrix {
	var ms []*kernels.Matrix
	for _, m := range []*kernels.Matrix{l.Wq, l.Wk, l.Wv, l.Wo, l.W1, l.W2, l.W3} {
		if m != nil {
			ms = append(ms, m)
		}
	}
	if x := l.Experts; x != nil {
		ms = append(ms, x.Router)
		for i := range x.Gate {
			if x.Holds(i) {
				ms = append(ms, x.Gate[i], x.Up[i], x.Down[i])
			}
		}
		if x.SharedGate != nil {
			ms = append(ms, x.SharedGate, x.SharedUp, x.SharedDown)
		}
	}
	if a := l.MLA; a != nil {
		if a.QA != nil {
			ms = append(ms, a.QA)
		}
		ms = append(ms, a.QB, a.KVA, a.KVB)
	}
	return ms
}

// extras names the optional steps the layer takes, for errors.
func (l *Layer) extras() []string {
	var what []string
	if l.BQ != nil || l.BK != nil || l.BV != nil {
		what = append(what, "q/k/v biases")
	}
	if l.QNorm != nil || l.KNorm != nil {
		what = append(what, "q/k norms")
	}
	if l.PostAttnNorm != nil || l.PostFFNNorm != nil {
		what = append(what, "post-norms")
	}
	return what
}

// Weights is a model's parameters, or the part of them a node holds.
//
// Layers is indexed by absolute layer number and always has Config.Layers
// entries; a layer outside the span held is nil. Embedding, FinalNorm and
// Output are nil when the holder does not run those steps. With a shared
// classifier Output is the same Matrix as Embedding.
type Weights struct {
	Config    Config
	Embedding *kernels.Matrix // [Vocab, Dim]
	Layers    []*Layer
	FinalNorm []float32       // [Dim]
	Output    *kernels.Matrix // [Vocab, Dim]
	// RopeFreqs, when not nil, divide the rotary frequencies [HeadDim/2]
	// (Llama 3's rope_freqs).
	RopeFreqs []float32

	// closer releases what backs the weights (a memory map), if anything.
	closer func() error
}

// SetCloser records the function that releases the storage behind the
// weights; Close calls it once.
func (w *Weights) SetCloser(f func() error) { w.closer = f }

// Close releases the storage behind the weights (such as a memory-mapped
// file). The weights must not be used afterwards.
func (w *Weights) Close() error {
	f := w.closer
	w.closer = nil
	if f != nil {
		return f()
	}
	return nil
}

// Extras names what the weights' block does beyond Llama 2's: the
// config's switches, the optional layer tensors present, and (when
// withRope) rotary frequency factors. None for a Llama 2 model.
func (w *Weights) Extras(withRope bool) []string {
	what := w.Config.extras()
	seen := map[string]bool{}
	for _, l := range w.Layers {
		if l == nil {
			continue
		}
		for _, x := range l.extras() {
			if !seen[x] {
				seen[x] = true
				what = append(what, x)
			}
		}
	}
	if withRope && w.RopeFreqs != nil {
		what = append(what, "rotary frequency factors")
	}
	return what
}

// Trainable reports, as an error naming the architecture and what the
// training backward lacks, whether training can run the weights: the
// backward covers Llama's block, with or without rotary frequency factors.
func (w *Weights) Trainable() error {
	if what := w.Extras(false); len(what) > 0 {
		return fmt.Errorf("training does not support architecture %s yet (its backward lacks %s); inference runs it", w.Config.archName(), strings.Join(what, ", "))
	}
	return nil
}

// HasLayers reports whether every layer in [a, b) is present.
func (w *Weights) HasLayers(a, b int) bool {
	if a < 0 || b > len(w.Layers) || a > b {
		return false
	}
	for _, l := range w.Layers[a:b] {
		if l == nil {
			return false
		}
	}
	return true
}

// Bytes is the stored size of the weights held.
func (w *Weights) Bytes() int64 {
	var n int64
	addM := func(m *kernels.Matrix) {
		if m != nil {
			n += int64(len(m.Data))
		}
	}
	addM(w.Embedding)
	if w.Output != w.Embedding {
		addM(w.Output)
	}
	n += 4 * int64(len(w.FinalNorm)+len(w.RopeFreqs))
	for _, l := range w.Layers {
		if l == nil {
			continue
		}
		for _, m := range l.Matrices() {
			addM(m)
		}
		n += 4 * int64(len(l.AttnNorm)+len(l.FFNNorm)+len(l.BQ)+len(l.BK)+len(l.BV)+
			len(l.QNorm)+len(l.KNorm)+len(l.PostAttnNorm)+len(l.PostFFNNorm))
		if l.MLA != nil {
			n += 4 * int64(len(l.MLA.QANorm)+len(l.MLA.KVANorm))
		}
		if l.Experts != nil {
			n += 4 * int64(len(l.Experts.Bias))
		}
	}
	return n
}

// Validate checks that every tensor present has the shape the config says.
func (w *Weights) Validate() error {
	c := &w.Config
	if err := c.Validate(); err != nil {
		return err
	}
	if len(w.Layers) != c.Layers {
		return fmt.Errorf("weights: %d layer slots for %d layers", len(w.Layers), c.Layers)
	}
	check := func(name string, m *kernels.Matrix, rows, cols int) error {
		if m == nil {
			return fmt.Errorf("weights: %s missing", name)
		}
		if m.Rows != rows || m.Cols != cols {
			return fmt.Errorf("weights: %s is %dx%d, want %dx%d", name, m.Rows, m.Cols, rows, cols)
		}
		return nil
	}
	vec := func(name string, v []float32, n int) error {
		if len(v) != n {
			return fmt.Errorf("weights: %s has %d values, want %d", name, len(v), n)
		}
		return nil
	}
	if w.Embedding != nil {
		if err := check("token embedding", w.Embedding, c.Vocab, c.Dim); err != nil {
			return err
		}
	}
	if w.Output != nil {
		if err := check("output", w.Output, c.Vocab, c.Dim); err != nil {
			return err
		}
	}
	if w.FinalNorm != nil {
		if err := vec("final norm", w.FinalNorm, c.Dim); err != nil {
			return err
		}
	}
	if w.RopeFreqs != nil {
		if err := vec("rope frequency factors", w.RopeFreqs, c.RotaryDim()/2); err != nil {
			return err
		}
	}
	opt := func(name string, v []float32, n int) error {
		if v == nil {
			return nil
		}
		return vec(name, v, n)
	}
	kv := c.KVDim()
	for i, l := range w.Layers {
		if l == nil {
			continue
		}
		p := fmt.Sprintf("layer %d ", i)
		ffn := []error{
			check(p+"w1 (gate)", l.W1, c.Hidden, c.Dim),
			check(p+"w2 (down)", l.W2, c.Dim, c.Hidden),
			check(p+"w3 (up)", l.W3, c.Hidden, c.Dim),
		}
		if l.Experts != nil {
			ffn = validExperts(c, p, l)
		}
		qkv := []error{
			check(p+"wq", l.Wq, c.QDim(), c.Dim),
			check(p+"wk", l.Wk, kv, c.Dim),
			check(p+"wv", l.Wv, kv, c.Dim),
		}
		if l.MLA != nil {
			qkv = validMLA(c, p, l)
		}
		errs := append([]error{
			vec(p+"attention norm", l.AttnNorm, c.Dim),
			vec(p+"ffn norm", l.FFNNorm, c.Dim),
		}, qkv...)
		errs = append(errs, check(p+"wo", l.Wo, c.Dim, c.Heads*c.ValueDim()))
		for _, e := range append(append(errs, ffn...),
			opt(p+"q bias", l.BQ, c.QDim()),
			opt(p+"k bias", l.BK, kv),
			opt(p+"v bias", l.BV, kv),
			opt(p+"q norm", l.QNorm, c.HeadDim()),
			opt(p+"k norm", l.KNorm, c.HeadDim()),
			opt(p+"post-attention norm", l.PostAttnNorm, c.Dim),
			opt(p+"post-ffn norm", l.PostFFNNorm, c.Dim),
		) {
			if e != nil {
				return e
			}
		}
	}
	return nil
}

// validExperts checks the routed experts of layer l (p names it): as many
// as the config says, each of its shape, and no dense FFN beside them.
func validExperts(c *Config, p string, l *Layer) []error {
	x := l.Experts
	n, h := c.Experts, c.ExpertHidden
	if n == 0 {
		return []error{fmt.Errorf("weights: %shas routed experts but the config has none", p)}
	}
	if l.W1 != nil || l.W2 != nil || l.W3 != nil {
		return []error{fmt.Errorf("weights: %shas both a dense FFN and routed experts", p)}
	}
	if len(x.Gate) != n || len(x.Up) != n || len(x.Down) != n {
		return []error{fmt.Errorf("weights: %sholds %d, %d and %d expert gate, up and down matrices, want %d", p, len(x.Gate), len(x.Up), len(x.Down), n)}
	}
	shape := func(name string, m *kernels.Matrix, rows, cols int) error {
		switch {
		case m == nil:
			return fmt.Errorf("weights: %s%s missing", p, name)
		case m.Rows != rows || m.Cols != cols:
			return fmt.Errorf("weights: %s%s is %dx%d, want %dx%d", p, name, m.Rows, m.Cols, rows, cols)
		}
		return nil
	}
	errs := []error{shape("router", x.Router, n, c.Dim)}
	for i := range n {
		if x.Gate[i] == nil && x.Up[i] == nil && x.Down[i] == nil {
			continue // held elsewhere (a server of some experts)
		}
		errs = append(errs,
			shape(fmt.Sprintf("expert %d gate", i), x.Gate[i], h, c.Dim),
			shape(fmt.Sprintf("expert %d up", i), x.Up[i], h, c.Dim),
			shape(fmt.Sprintf("expert %d down", i), x.Down[i], c.Dim, h))
	}
	if x.Bias != nil && len(x.Bias) != n {
		errs = append(errs, fmt.Errorf("weights: %sexpert bias has %d values, want %d", p, len(x.Bias), n))
	}
	if x.SharedGate != nil || x.SharedUp != nil || x.SharedDown != nil {
		sh := 0
		if x.SharedGate != nil {
			sh = x.SharedGate.Rows
		}
		errs = append(errs, shape("shared gate", x.SharedGate, sh, c.Dim),
			shape("shared up", x.SharedUp, sh, c.Dim), shape("shared down", x.SharedDown, c.Dim, sh))
	}
	return errs
}

// validMLA checks the latent attention projections of layer l (p names
// it): their shapes, and no separate k or v beside them.
func validMLA(c *Config, p string, l *Layer) []error {
	a := l.MLA
	if c.KVLoRA == 0 {
		return []error{fmt.Errorf("weights: %shas latent attention but the config has no kv rank", p)}
	}
	if l.Wk != nil || l.Wv != nil || (l.Wq != nil) != (c.QLoRA == 0) {
		return []error{fmt.Errorf("weights: %shas latent attention beside separate q, k or v projections", p)}
	}
	shape := func(name string, m *kernels.Matrix, rows, cols int) error {
		switch {
		case m == nil:
			return fmt.Errorf("weights: %s%s missing", p, name)
		case m.Rows != rows || m.Cols != cols:
			return fmt.Errorf("weights: %s%s is %dx%d, want %dx%d", p, name, m.Rows, m.Cols, rows, cols)
		}
		return nil
	}
	r := c.RotaryDim()
	errs := []error{
		shape("kv a", a.KVA, c.KVLoRA+r, c.Dim),
		shape("kv b", a.KVB, c.KVHeads*(c.HeadDim()-r+c.ValueDim()), c.KVLoRA),
	}
	if len(a.KVANorm) != c.KVLoRA {
		errs = append(errs, fmt.Errorf("weights: %skv a norm has %d values, want %d", p, len(a.KVANorm), c.KVLoRA))
	}
	if c.QLoRA == 0 {
		return append(errs, shape("wq", l.Wq, c.QDim(), c.Dim))
	}
	errs = append(errs, shape("q a", a.QA, c.QLoRA, c.Dim), shape("q b", a.QB, c.QDim(), c.QLoRA))
	if len(a.QANorm) != c.QLoRA {
		errs = append(errs, fmt.Errorf("weights: %sq a norm has %d values, want %d", p, len(a.QANorm), c.QLoRA))
	}
	return errs
}
