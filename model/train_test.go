package model_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// ref64 is a model with float64 parameters and a float64 forward pass over
// whole sequences, written from the architecture's definition: the
// function whose finite differences the engine's gradients must match.
type ref64 struct {
	cfg       model.Config
	emb, out  []float64 // [Vocab, Dim]; one slice with a shared classifier
	finalNorm []float64
	layers    []ref64Layer
}

type ref64Layer struct {
	attnNorm, ffnNorm          []float64
	wq, wk, wv, wo, w1, w2, w3 []float64 // [out, in]
}

// tensor is one parameter tensor of ref64 and where the engine keeps its
// gradient.
type tensor struct {
	name string
	p    []float64
	grad func(*model.Grads) []float32
}

func (r *ref64) tensors(first, last int, withEmb, withHead bool) []tensor {
	var ts []tensor
	if withEmb {
		ts = append(ts, tensor{"embedding", r.emb, func(g *model.Grads) []float32 { return g.Embedding }})
	}
	for li := first; li < last; li++ {
		l := &r.layers[li]
		lg := func(f func(*model.LayerGrads) []float32) func(*model.Grads) []float32 {
			return func(g *model.Grads) []float32 { return f(g.Layers[li]) }
		}
		p := fmt.Sprintf("layer %d ", li)
		ts = append(ts,
			tensor{p + "attn norm", l.attnNorm, lg(func(g *model.LayerGrads) []float32 { return g.AttnNorm })},
			tensor{p + "wq", l.wq, lg(func(g *model.LayerGrads) []float32 { return g.Wq })},
			tensor{p + "wk", l.wk, lg(func(g *model.LayerGrads) []float32 { return g.Wk })},
			tensor{p + "wv", l.wv, lg(func(g *model.LayerGrads) []float32 { return g.Wv })},
			tensor{p + "wo", l.wo, lg(func(g *model.LayerGrads) []float32 { return g.Wo })},
			tensor{p + "ffn norm", l.ffnNorm, lg(func(g *model.LayerGrads) []float32 { return g.FFNNorm })},
			tensor{p + "w1", l.w1, lg(func(g *model.LayerGrads) []float32 { return g.W1 })},
			tensor{p + "w2", l.w2, lg(func(g *model.LayerGrads) []float32 { return g.W2 })},
			tensor{p + "w3", l.w3, lg(func(g *model.LayerGrads) []float32 { return g.W3 })},
		)
	}
	if withHead {
		ts = append(ts, tensor{"final norm", r.finalNorm, func(g *model.Grads) []float32 { return g.FinalNorm }})
		if !r.cfg.SharedClassifier {
			ts = append(ts, tensor{"output", r.out, func(g *model.Grads) []float32 { return g.Output }})
		}
	}
	return ts
}

// newRef64 draws random parameters, each a float32 value, so that the
// engine's float32 weights are exactly the reference's.
func newRef64(cfg model.Config, seed uint64) *ref64 {
	rng := rand.New(rand.NewPCG(seed, 7))
	vec := func(n int, lo, hi float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(float32(lo + (hi-lo)*rng.Float64()))
		}
		return v
	}
	d, kv, h, voc := cfg.Dim, cfg.KVDim(), cfg.Hidden, cfg.Vocab
	r := &ref64{cfg: cfg, emb: vec(voc*d, -1, 1), finalNorm: vec(d, 0.7, 1.3)}
	r.out = r.emb
	if !cfg.SharedClassifier {
		r.out = vec(voc*d, -0.5, 0.5)
	}
	for range cfg.Layers {
		r.layers = append(r.layers, ref64Layer{
			attnNorm: vec(d, 0.7, 1.3), ffnNorm: vec(d, 0.7, 1.3),
			wq: vec(d*d, -0.6, 0.6), wk: vec(kv*d, -0.6, 0.6), wv: vec(kv*d, -0.6, 0.6), wo: vec(d*d, -0.4, 0.4),
			w1: vec(h*d, -0.4, 0.4), w2: vec(d*h, -0.4, 0.4), w3: vec(h*d, -0.4, 0.4),
		})
	}
	return r
}

// weights are the reference's parameters as the engine's float32 weights.
func (r *ref64) weights(t testing.TB) *model.Weights {
	t.Helper()
	c := r.cfg
	f32 := func(v []float64) []float32 {
		o := make([]float32, len(v))
		for i, x := range v {
			o[i] = float32(x)
		}
		return o
	}
	mat := func(v []float64, rows, cols int) *kernels.Matrix {
		m, err := kernels.NewMatrix(kernels.F32, rows, cols, kernels.Encode(nil, kernels.F32, f32(v)))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	d, kv, h := c.Dim, c.KVDim(), c.Hidden
	w := &model.Weights{Config: c, Embedding: mat(r.emb, c.Vocab, d), FinalNorm: f32(r.finalNorm)}
	w.Output = w.Embedding
	if !c.SharedClassifier {
		w.Output = mat(r.out, c.Vocab, d)
	}
	for _, l := range r.layers {
		w.Layers = append(w.Layers, &model.Layer{
			AttnNorm: f32(l.attnNorm), FFNNorm: f32(l.ffnNorm),
			Wq: mat(l.wq, d, d), Wk: mat(l.wk, kv, d), Wv: mat(l.wv, kv, d), Wo: mat(l.wo, d, d),
			W1: mat(l.w1, h, d), W2: mat(l.w2, d, h), W3: mat(l.w3, h, d),
		})
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	return w
}

func mv64(w []float64, rows, cols int, x []float64) []float64 {
	y := make([]float64, rows)
	for r := range rows {
		for c, v := range x {
			y[r] += w[r*cols+c] * v
		}
	}
	return y
}

func rms64(x, w []float64, eps float32) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
	y := make([]float64, len(x))
	for i := range x {
		y[i] = x[i] * s * w[i]
	}
	return y
}

// block runs layer li on the rows of one sequence from position 0, in
// place.
func (r *ref64) block(li int, xs [][]float64) {
	c := r.cfg
	l := &r.layers[li]
	d, kv, h, hd := c.Dim, c.KVDim(), c.Hidden, c.HeadDim()
	T := len(xs)
	qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
	for t, x := range xs {
		xa := rms64(x, l.attnNorm, c.NormEps)
		qs[t], ks[t], vs[t] = mv64(l.wq, d, d, xa), mv64(l.wk, kv, d, xa), mv64(l.wv, kv, d, xa)
		rope(qs[t], c.Heads, hd, t, float64(c.RopeTheta), c.RopeStyle)
		rope(ks[t], c.KVHeads, hd, t, float64(c.RopeTheta), c.RopeStyle)
	}
	group := c.Heads / c.KVHeads
	for t, x := range xs {
		att := make([]float64, d)
		for hh := range c.Heads {
			kh := hh / group
			sc := make([]float64, t+1)
			mx := math.Inf(-1)
			for p := range sc {
				for i := range hd {
					sc[p] += qs[t][hh*hd+i] * ks[p][kh*hd+i]
				}
				sc[p] /= math.Sqrt(float64(hd))
				mx = math.Max(mx, sc[p])
			}
			var sum float64
			for p := range sc {
				sc[p] = math.Exp(sc[p] - mx)
				sum += sc[p]
			}
			for p := range sc {
				for i := range hd {
					att[hh*hd+i] += sc[p] / sum * vs[p][kh*hd+i]
				}
			}
		}
		o := mv64(l.wo, d, d, att)
		for i := range x {
			x[i] += o[i]
		}
		xf := rms64(x, l.ffnNorm, c.NormEps)
		g, u := mv64(l.w1, h, d, xf), mv64(l.w3, h, d, xf)
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		dn := mv64(l.w2, d, h, g)
		for i := range x {
			x[i] += dn[i]
		}
	}
}

// loss is the mean cross-entropy of the rows with a target (≥ 0) of
// batch sequences of ids laid end to end.
func (r *ref64) loss(ids, targets []int, batch int) float64 {
	c := r.cfg
	d := c.Dim
	T := len(ids) / batch
	var sum float64
	count := 0
	for b := range batch {
		xs := make([][]float64, T)
		for t := range xs {
			id := ids[b*T+t]
			xs[t] = append([]float64(nil), r.emb[id*d:(id+1)*d]...)
		}
		for li := range r.layers {
			r.block(li, xs)
		}
		for t, x := range xs {
			tg := targets[b*T+t]
			if tg < 0 {
				continue
			}
			logits := mv64(r.out, c.Vocab, d, rms64(x, r.finalNorm, c.NormEps))
			mx := math.Inf(-1)
			for _, v := range logits {
				mx = math.Max(mx, v)
			}
			var s float64
			for _, v := range logits {
				s += math.Exp(v - mx)
			}
			sum += mx + math.Log(s) - logits[tg]
			count++
		}
	}
	return sum / float64(count)
}

// fd is the central difference of f with respect to p[i].
func fd(p []float64, i int, f func() float64) float64 {
	const h = 1e-5
	v := p[i]
	p[i] = v + h
	up := f()
	p[i] = v - h
	down := f()
	p[i] = v
	return (up - down) / (2 * h)
}

// gradTolerance bounds the largest difference between the engine's
// gradient of a tensor and the float64 finite differences, relative to
// the tensor's largest gradient: float32 arithmetic through the forward
// and backward passes, nothing more.
const gradTolerance = 2e-5

// compareGrad checks got against want over one tensor.
func compareGrad(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d gradients, want %d", what, len(got), len(want))
	}
	var scale, worst float64
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	for i, v := range want {
		worst = math.Max(worst, math.Abs(float64(got[i])-v))
	}
	if scale == 0 {
		t.Errorf("%s: every gradient is zero; the check checks nothing", what)
		return
	}
	if !(worst <= gradTolerance*scale) {
		t.Errorf("%s: gradient differs from float64 finite differences by %.3g of its scale %.3g", what, worst/scale, scale)
	}
}

// trainBackends are the backends the training tests run on: the CPU
// backend with the float64 reference kernels of refTrainer, and the CPU
// backend's own training kernels once it has them.
func trainBackends(t *testing.T) map[string]kernels.Backend {
	be := openBackend(t, 2)
	bes := map[string]kernels.Backend{"reference": &refTrainer{be}}
	if _, ok := be.(kernels.Trainer); ok {
		bes[be.Name()] = be
	}
	return bes
}

func tinyConfig(style kernels.RopeStyle, shared bool) model.Config {
	return model.Config{
		Arch: "llama", Dim: 8, Hidden: 12, Layers: 2, Heads: 2, KVHeads: 1, Vocab: 11,
		Context: 8, RopeTheta: 10000, RopeStyle: style, NormEps: 1e-5, SharedClassifier: shared,
	}
}

// TestBlockBackwardMatchesFiniteDifferences checks the backward of one
// block (a span of one layer) for two sequences of five positions: the
// gradient with respect to its input and to each of its weights against
// float64 central differences of L = Σ r·block(x) for a fixed random r.
func TestBlockBackwardMatchesFiniteDifferences(t *testing.T) {
	for name, be := range trainBackends(t) {
		for _, style := range []kernels.RopeStyle{kernels.RopeAdjacent, kernels.RopeNeoX} {
			t.Run(name+"/"+style.String(), func(t *testing.T) {
				const batch, seq, li = 2, 5, 1
				cfg := tinyConfig(style, true)
				ref := newRef64(cfg, 3)
				e := model.NewEngine(ref.weights(t), be)
				g := model.NewGrads(e.Weights())
				e.SetGrads(g)
				a, err := e.NewActivations(li, li+1, batch, seq)
				if err != nil {
					t.Fatal(err)
				}
				d, n := cfg.Dim, batch*seq
				rng := rand.New(rand.NewPCG(5, 5))
				x64, r64 := make([]float64, n*d), make([]float64, n*d)
				for i := range x64 {
					x64[i] = float64(float32(rng.Float64()*2 - 1))
					r64[i] = float64(float32(rng.Float64()*2 - 1))
				}
				x, dx := make([]float32, n*d), make([]float32, n*d)
				for i := range x {
					x[i], dx[i] = float32(x64[i]), float32(r64[i])
				}
				if err := e.SpanForward(a, x); err != nil {
					t.Fatal(err)
				}
				if err := e.SpanBackward(a, dx); err != nil {
					t.Fatal(err)
				}
				objective := func() float64 {
					var s float64
					for b := range batch {
						xs := make([][]float64, seq)
						for t := range xs {
							xs[t] = append([]float64(nil), x64[(b*seq+t)*d:(b*seq+t+1)*d]...)
						}
						ref.block(li, xs)
						for t, row := range xs {
							for i, v := range row {
								s += v * r64[(b*seq+t)*d+i]
							}
						}
					}
					return s
				}
				want := make([]float64, len(x64))
				for i := range x64 {
					want[i] = fd(x64, i, objective)
				}
				compareGrad(t, "input", dx, want)
				for _, ts := range ref.tensors(li, li+1, false, false) {
					want := make([]float64, len(ts.p))
					for i := range ts.p {
						want[i] = fd(ts.p, i, objective)
					}
					compareGrad(t, ts.name, ts.grad(g), want)
				}
			})
		}
	}
}

// TestModelBackwardMatchesFiniteDifferences checks the gradient of every
// parameter of a tiny model (embedding, two blocks, final norm, head) with
// the mean cross-entropy loss of two sequences, one position without a
// target, against float64 central differences of the reference's loss; with
// and without a shared classifier, in both rotary layouts.
func TestModelBackwardMatchesFiniteDifferences(t *testing.T) {
	for name, be := range trainBackends(t) {
		for _, tc := range []struct {
			style  kernels.RopeStyle
			shared bool
		}{{kernels.RopeAdjacent, false}, {kernels.RopeNeoX, true}} {
			t.Run(fmt.Sprintf("%s/%s/shared=%t", name, tc.style, tc.shared), func(t *testing.T) {
				const batch, seq = 2, 4
				cfg := tinyConfig(tc.style, tc.shared)
				ref := newRef64(cfg, 11)
				e := model.NewEngine(ref.weights(t), be)
				g := model.NewGrads(e.Weights())
				e.SetGrads(g)
				a, err := e.NewActivations(0, cfg.Layers, batch, seq)
				if err != nil {
					t.Fatal(err)
				}
				ids := []int{1, 4, 9, 2, 7, 7, 3, 10}
				targets := []int{4, 9, 2, 5, 7, -1, 10, 0}
				loss, err := e.TrainForward(a, ids, targets)
				if err != nil {
					t.Fatal(err)
				}
				want := ref.loss(ids, targets, batch)
				if math.Abs(loss-want) > 1e-5*math.Abs(want) {
					t.Errorf("loss %.8g, float64 %.8g", loss, want)
				}
				if err := e.TrainBackward(a); err != nil {
					t.Fatal(err)
				}
				objective := func() float64 { return ref.loss(ids, targets, batch) }
				for _, ts := range ref.tensors(0, cfg.Layers, true, true) {
					want := make([]float64, len(ts.p))
					for i := range ts.p {
						want[i] = fd(ts.p, i, objective)
					}
					compareGrad(t, ts.name, ts.grad(g), want)
				}
			})
		}
	}
}

// TestTrainDeterministic runs two steps of forward and backward on fresh
// gradients: bitwise the same loss and gradients, as peers that must stay
// identical need.
func TestTrainDeterministic(t *testing.T) {
	for name, be := range trainBackends(t) {
		cfg := tinyConfig(kernels.RopeAdjacent, false)
		e := model.NewEngine(newRef64(cfg, 2).weights(t), be)
		a, err := e.NewActivations(0, cfg.Layers, 3, 5)
		if err != nil {
			t.Fatal(err)
		}
		ids := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4}
		var losses [2]float64
		var grads [2]*model.Grads
		for i := range 2 {
			grads[i] = model.NewGrads(e.Weights())
			e.SetGrads(grads[i])
			if losses[i], err = e.TrainForward(a, ids, ids); err != nil {
				t.Fatal(err)
			}
			if err := e.TrainBackward(a); err != nil {
				t.Fatal(err)
			}
		}
		if losses[0] != losses[1] {
			t.Errorf("%s: losses %v and %v", name, losses[0], losses[1])
		}
		for li := range cfg.Layers {
			a, b := grads[0].Layers[li], grads[1].Layers[li]
			for i, v := range a.Wq {
				if b.Wq[i] != v {
					t.Fatalf("%s: layer %d wq gradient %d: %v and %v", name, li, i, v, b.Wq[i])
				}
			}
		}
		for i, v := range grads[0].Embedding {
			if grads[1].Embedding[i] != v {
				t.Fatalf("%s: embedding gradient %d: %v and %v", name, i, v, grads[1].Embedding[i])
			}
		}
	}
}

// TestSpanForwardMatchesForward checks that the training forward is the
// inference forward: every sequence's output equals Forward's on a float32
// cache, to rounding (the products run on more rows at once).
func TestSpanForwardMatchesForward(t *testing.T) {
	cfg := testConfig(kernels.RopeNeoX)
	w := randomWeights(t, cfg, kernels.F32, 12)
	be := &refTrainer{openBackend(t, 2)}
	e := model.NewEngine(w, be, model.KVType(kernels.F32))
	const batch, seq = 3, 6
	a, err := e.NewActivations(1, 3, batch, seq)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Dim
	x := make([]float32, batch*seq*d)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)*0.7)) * 0.5
	}
	for range 2 { // the second pass reuses the activations
		xs := append([]float32(nil), x...)
		if err := e.SpanForward(a, xs); err != nil {
			t.Fatal(err)
		}
		for b := range batch {
			c, _ := e.NewCache(1, 3, seq)
			row := append([]float32(nil), x[b*seq*d:(b+1)*seq*d]...)
			if err := e.Forward(c, row, seq); err != nil {
				t.Fatal(err)
			}
			for i, v := range row {
				got := xs[b*seq*d+i]
				if math.Abs(float64(got-v)) > 1e-5*(1+math.Abs(float64(v))) {
					t.Fatalf("sequence %d, value %d: training forward %g, Forward %g", b, i, got, v)
				}
			}
		}
	}
}

// lora is a low-rank adapter written as any user of the Linear seam
// would: y = base(x) + scale·B·A·x with A [rank, in] and B [out, rank]
// trainable, the base frozen.
type lora struct {
	base          model.Linear
	in, out, rank int
	a, b, da, db  []float32
	scale         float32
	u             []float32
}

func newLoRA(base model.Linear, in, out, rank int, seed uint64) *lora {
	rng := rand.New(rand.NewPCG(seed, 1))
	l := &lora{base: base, in: in, out: out, rank: rank, scale: 0.5,
		a: make([]float32, rank*in), b: make([]float32, out*rank), da: make([]float32, rank*in), db: make([]float32, out*rank)}
	for i := range l.a {
		l.a[i] = float32(rng.Float64()*2-1) * 0.4
	}
	for i := range l.b {
		l.b[i] = float32(rng.Float64()*2-1) * 0.4
	}
	return l
}

// down sets u = A·x for n rows.
func (l *lora) down(x []float32, n int) []float32 {
	u := make([]float32, n*l.rank)
	for t := range n {
		for r := range l.rank {
			var s float32
			for c := range l.in {
				s += l.a[r*l.in+c] * x[t*l.in+c]
			}
			u[t*l.rank+r] = s
		}
	}
	return u
}

func (l *lora) Apply(out, x []float32, n int) {
	l.base.Apply(out, x, n)
	u := l.down(x, n)
	for t := range n {
		for o := range l.out {
			var s float32
			for r := range l.rank {
				s += l.b[o*l.rank+r] * u[t*l.rank+r]
			}
			out[t*l.out+o] += l.scale * s
		}
	}
}

func (l *lora) Backward(dx, dy, x []float32, n int) {
	l.base.Backward(dx, dy, x, n)
	u := l.down(x, n)
	du := make([]float32, n*l.rank)
	for t := range n {
		for o := range l.out {
			g := l.scale * dy[t*l.out+o]
			for r := range l.rank {
				l.db[o*l.rank+r] += g * u[t*l.rank+r]
				du[t*l.rank+r] += g * l.b[o*l.rank+r]
			}
		}
		for r := range l.rank {
			for c := range l.in {
				l.da[r*l.in+c] += du[t*l.rank+r] * x[t*l.in+c]
				if dx != nil {
					dx[t*l.in+c] += du[t*l.rank+r] * l.a[r*l.in+c]
				}
			}
		}
	}
}

// TestLinearSeamTakesAnAdapter puts a LoRA adapter on the query and down
// projections of layer 0 through SetLinear, with the base weights frozen,
// and checks it against full fine-tuning of a model whose base weights are
// W + scale·B·A: the same loss, and the adapter's gradients are what the
// chain rule makes of the merged weight's (dA = scale·Bᵀ·dW, dB =
// scale·dW·Aᵀ), with no gradient reaching the frozen base.
func TestLinearSeamTakesAnAdapter(t *testing.T) {
	const batch, seq, rank = 2, 4, 2
	cfg := tinyConfig(kernels.RopeAdjacent, false)
	ref := newRef64(cfg, 21)
	be := &refTrainer{openBackend(t, 1)}
	ids := []int{3, 1, 4, 1, 5, 9, 2, 6}
	targets := []int{1, 4, 1, 5, 9, 2, 6, 5}

	// The adapted engine: frozen base, adapters on q and down of layer 0.
	e := model.NewEngine(ref.weights(t), be)
	d, h := cfg.Dim, cfg.Hidden
	adapters := map[model.Proj]*lora{
		model.ProjQ:    newLoRA(e.Linear(0, model.ProjQ), d, d, rank, 1),
		model.ProjDown: newLoRA(e.Linear(0, model.ProjDown), h, d, rank, 2),
	}
	for p, l := range adapters {
		e.SetLinear(0, p, l)
	}
	a, err := e.NewActivations(0, cfg.Layers, batch, seq)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := e.TrainForward(a, ids, targets)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.TrainBackward(a); err != nil {
		t.Fatal(err)
	}

	// The merged engine: W + scale·B·A as plain weights, fully trained.
	merge := func(w []float64, l *lora) {
		for o := range l.out {
			for c := range l.in {
				var s float64
				for r := range l.rank {
					s += float64(l.b[o*l.rank+r]) * float64(l.a[r*l.in+c])
				}
				w[o*l.in+c] += float64(l.scale) * s
			}
		}
	}
	merge(ref.layers[0].wq, adapters[model.ProjQ])
	merge(ref.layers[0].w2, adapters[model.ProjDown])
	em := model.NewEngine(ref.weights(t), be)
	g := model.NewGrads(em.Weights())
	em.SetGrads(g)
	am, err := em.NewActivations(0, cfg.Layers, batch, seq)
	if err != nil {
		t.Fatal(err)
	}
	mloss, err := em.TrainForward(am, ids, targets)
	if err != nil {
		t.Fatal(err)
	}
	if err := em.TrainBackward(am); err != nil {
		t.Fatal(err)
	}
	if math.Abs(loss-mloss) > 1e-5*math.Abs(mloss) {
		t.Errorf("adapted loss %.8g, merged %.8g", loss, mloss)
	}
	for p, dw := range map[model.Proj][]float32{model.ProjQ: g.Layers[0].Wq, model.ProjDown: g.Layers[0].W2} {
		l := adapters[p]
		wantA := make([]float64, len(l.a))
		wantB := make([]float64, len(l.b))
		for o := range l.out {
			for c := range l.in {
				for r := range l.rank {
					wantA[r*l.in+c] += float64(l.scale) * float64(l.b[o*l.rank+r]) * float64(dw[o*l.in+c])
					wantB[o*l.rank+r] += float64(l.scale) * float64(dw[o*l.in+c]) * float64(l.a[r*l.in+c])
				}
			}
		}
		compareGrad(t, p.String()+" adapter A", l.da, wantA)
		compareGrad(t, p.String()+" adapter B", l.db, wantB)
		if base := l.base.(*model.Dense); base.Grad != nil {
			t.Errorf("%s: the frozen base has a gradient buffer", p)
		}
	}
}

// TestTrainErrors: a backend without training kernels is refused with
// ErrNoTrainer, and so are activations over a span that is not loaded.
func TestTrainErrors(t *testing.T) {
	cfg := tinyConfig(kernels.RopeAdjacent, false)
	w := newRef64(cfg, 1).weights(t)
	plain := struct{ kernels.Backend }{openBackend(t, 1)}
	if _, err := model.NewEngine(w, plain).NewActivations(0, cfg.Layers, 1, 4); !errors.Is(err, model.ErrNoTrainer) {
		t.Errorf("a backend without training kernels: %v, want ErrNoTrainer", err)
	}
	e := model.NewEngine(w, &refTrainer{openBackend(t, 1)})
	if _, err := e.NewActivations(0, cfg.Layers, 1, cfg.Context+1); err == nil {
		t.Error("sequences longer than the context were accepted")
	}
	if _, err := e.NewActivations(0, cfg.Layers, 1<<40, cfg.Context); err == nil {
		t.Error("activations of 2⁴⁰ sequences were accepted")
	}
	a, err := e.NewActivations(0, 1, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.TrainForward(a, []int{1, 2, 3, 4}, []int{2, 3, 4, 5}); err == nil {
		t.Error("a whole-model forward ran on activations over one layer")
	}
	a, _ = e.NewActivations(0, cfg.Layers, 1, 4)
	if _, err := e.TrainForward(a, []int{1, 2, 3, 4}, []int{2, 3, 4, cfg.Vocab}); err == nil {
		t.Error("a target outside the vocabulary was accepted")
	}
}

// TestForwardRowsAllocatesNothing: a batched decode step, like a single
// one, allocates nothing once the engine's scratch has grown.
func TestForwardRowsAllocatesNothing(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	cfg.Context = 512
	w := randomWeights(t, cfg, kernels.F32, 6)
	e := model.NewEngine(w, openBackend(t, 2))
	var cs []*model.Cache
	for range 3 {
		c, _ := e.NewCache(0, cfg.Layers, cfg.Context)
		cs = append(cs, c)
	}
	x := make([]float32, 3*cfg.Dim)
	step := func() {
		if err := e.ForwardRows(cs, x); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if n := testing.AllocsPerRun(50, step); n != 0 {
		t.Errorf("a batched decode step allocates %.1f times", n)
	}
}

// TestQuantizedPrefillMatchesDecode: a prompt of block-quantized weights
// whose products are padded (two and three positions) or split (4k+1)
// gives every position the hidden state decoding it alone gives, to
// rounding.
func TestQuantizedPrefillMatchesDecode(t *testing.T) {
	cfg := model.Config{
		Arch: "llama", Dim: 64, Hidden: 96, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 37,
		Context: 16, RopeTheta: 10000, NormEps: 1e-5, SharedClassifier: true,
	}
	w := randomWeights(t, cfg, kernels.Q8_0, 13)
	e := model.NewEngine(w, openBackend(t, 1))
	d := cfg.Dim
	for _, n := range []int{2, 3, 5, 9} {
		whole, _ := e.NewCache(0, cfg.Layers, n)
		alone, _ := e.NewCache(0, cfg.Layers, n)
		x := make([]float32, n*d)
		for j := range x {
			x[j] = float32(math.Sin(float64(j*5+n))) * 0.5
		}
		want := append([]float32(nil), x...)
		if err := e.Forward(whole, x, n); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := e.Forward(alone, want[i*d:(i+1)*d], 1); err != nil {
				t.Fatal(err)
			}
		}
		for j := range x {
			if diff := math.Abs(float64(x[j] - want[j])); diff > 1e-4*(1+math.Abs(float64(want[j]))) {
				t.Fatalf("%d positions: value %d (position %d) is %g, one by one %g", n, j, j/d, x[j], want[j])
			}
		}
	}
}
