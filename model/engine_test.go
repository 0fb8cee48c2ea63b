package model_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
	"github.com/mycel-net/mycel/model"
)

// randomWeights builds a full model with random weights of type dt.
func randomWeights(t testing.TB, cfg model.Config, dt kernels.DType, seed uint64) *model.Weights {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	mat := func(rows, cols int, scale float32) *kernels.Matrix {
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = (rng.Float32()*2 - 1) * scale
		}
		m, err := kernels.NewMatrix(dt, rows, cols, kernels.Encode(nil, dt, v))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	norm := func() []float32 {
		v := make([]float32, cfg.Dim)
		for i := range v {
			v[i] = 0.8 + 0.4*rng.Float32()
		}
		return v
	}
	kv := cfg.KVDim()
	w := &model.Weights{Config: cfg, Layers: make([]*model.Layer, cfg.Layers)}
	w.Embedding = mat(cfg.Vocab, cfg.Dim, 1)
	for i := range w.Layers {
		w.Layers[i] = &model.Layer{
			AttnNorm: norm(), FFNNorm: norm(),
			Wq: mat(cfg.Dim, cfg.Dim, 0.3), Wk: mat(kv, cfg.Dim, 0.3), Wv: mat(kv, cfg.Dim, 0.3), Wo: mat(cfg.Dim, cfg.Dim, 0.3),
			W1: mat(cfg.Hidden, cfg.Dim, 0.3), W2: mat(cfg.Dim, cfg.Hidden, 0.3), W3: mat(cfg.Hidden, cfg.Dim, 0.3),
		}
	}
	w.FinalNorm = norm()
	if cfg.SharedClassifier {
		w.Output = w.Embedding
	} else {
		w.Output = mat(cfg.Vocab, cfg.Dim, 0.5)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	return w
}

// refModel is an independent float64 forward pass, one position at a
// time, written from the architecture's definition.
type refModel struct {
	w    *model.Weights
	k, v [][][]float64 // [layer][pos][kvdim]
	// kv16 rounds every key and value to half precision as it is cached,
	// as an engine with an f16 KV cache does.
	kv16 bool
}

// cached is x as the reference keeps it in its KV cache.
func (r *refModel) cached(x []float64) []float64 {
	if r.kv16 {
		for i, v := range x {
			x[i] = float64(kernels.F16ToF32(kernels.F32ToF16(float32(v))))
		}
	}
	return x
}

func dense(m *kernels.Matrix) [][]float64 {
	out := make([][]float64, m.Rows)
	row := make([]float32, m.Cols)
	for r := range out {
		m.RowF32(row, r)
		out[r] = make([]float64, m.Cols)
		for c, v := range row {
			out[r][c] = float64(v)
		}
	}
	return out
}

func mv(m *kernels.Matrix, x []float64) []float64 {
	d := dense(m)
	y := make([]float64, len(d))
	for r, row := range d {
		for c, v := range row {
			y[r] += v * x[c]
		}
	}
	return y
}

func rmsnorm(x []float64, w []float32, eps float32) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
	y := make([]float64, len(x))
	for i := range x {
		y[i] = x[i] * s * float64(w[i])
	}
	return y
}

func rope(x []float64, heads, hd, pos int, theta float64, style kernels.RopeStyle) {
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			f := float64(pos) * math.Pow(theta, -float64(2*i)/float64(hd))
			a, b := h*hd+2*i, h*hd+2*i+1
			if style == kernels.RopeNeoX {
				a, b = h*hd+i, h*hd+i+hd/2
			}
			x0, x1 := x[a], x[b]
			x[a] = x0*math.Cos(f) - x1*math.Sin(f)
			x[b] = x0*math.Sin(f) + x1*math.Cos(f)
		}
	}
}

// step runs one token through layers [a, b) at position pos.
func (r *refModel) step(x []float64, a, b, pos int) []float64 {
	c := r.w.Config
	hd := c.HeadDim()
	if r.k == nil {
		r.k = make([][][]float64, c.Layers)
		r.v = make([][][]float64, c.Layers)
	}
	for li := a; li < b; li++ {
		l := r.w.Layers[li]
		xb := rmsnorm(x, l.AttnNorm, c.NormEps)
		q, k, v := mv(l.Wq, xb), mv(l.Wk, xb), mv(l.Wv, xb)
		rope(q, c.Heads, hd, pos, float64(c.RopeTheta), c.RopeStyle)
		rope(k, c.KVHeads, hd, pos, float64(c.RopeTheta), c.RopeStyle)
		r.k[li] = append(r.k[li], r.cached(k))
		r.v[li] = append(r.v[li], r.cached(v))
		att := make([]float64, c.Dim)
		group := c.Heads / c.KVHeads
		for h := 0; h < c.Heads; h++ {
			kvh := h / group
			sc := make([]float64, pos+1)
			mx := math.Inf(-1)
			for p := 0; p <= pos; p++ {
				for i := 0; i < hd; i++ {
					sc[p] += q[h*hd+i] * r.k[li][p][kvh*hd+i]
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
				for i := 0; i < hd; i++ {
					att[h*hd+i] += sc[p] / sum * r.v[li][p][kvh*hd+i]
				}
			}
		}
		o := mv(l.Wo, att)
		for i := range x {
			x[i] += o[i]
		}
		xb = rmsnorm(x, l.FFNNorm, c.NormEps)
		g, u := mv(l.W1, xb), mv(l.W3, xb)
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		d := mv(l.W2, g)
		for i := range x {
			x[i] += d[i]
		}
	}
	return x
}

func (r *refModel) logits(x []float64) []float64 {
	return mv(r.w.Output, rmsnorm(x, r.w.FinalNorm, r.w.Config.NormEps))
}

func (r *refModel) embed(id int) []float64 {
	row := make([]float32, r.w.Config.Dim)
	r.w.Embedding.RowF32(row, id)
	x := make([]float64, len(row))
	for i, v := range row {
		x[i] = float64(v)
	}
	return x
}

func testConfig(style kernels.RopeStyle) model.Config {
	return model.Config{
		Arch: "llama", Dim: 48, Hidden: 40, Layers: 3, Heads: 6, KVHeads: 2, Vocab: 37,
		Context: 24, RopeTheta: 10000, RopeStyle: style, NormEps: 1e-5, SharedClassifier: true,
	}
}

func maxRelErr(got []float32, want []float64) float64 {
	var scale, worst float64
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i])-want[i])/scale)
	}
	return worst
}

func openBackend(t testing.TB, threads int) kernels.Backend {
	be, err := kernels.Open("cpu", threads)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// kvTolerance is the relative error of logits the float64 reference
// allows on top of float32 arithmetic for a KV cache of type kv. The
// reference rounds its cached keys and values to half precision too, but
// from float64: a value the engine computes a rounding away from a
// midpoint between two halves can land on the other one.
func kvTolerance(kv kernels.DType) float64 {
	if kv == kernels.F16 {
		return 6e-5
	}
	return 0
}

// TestForwardMatchesFloat64 runs a prompt as one prefill batch and then
// decodes position by position, and compares every logit with the float64
// reference, for both rotary layouts, with one and two threads, and with
// both KV cache types (the reference rounds its cache as the engine does).
func TestForwardMatchesFloat64(t *testing.T) {
	for _, kv := range []kernels.DType{kernels.F32, kernels.F16} {
		for _, style := range []kernels.RopeStyle{kernels.RopeAdjacent, kernels.RopeNeoX} {
			for _, threads := range []int{1, 2} {
				testForwardMatchesFloat64(t, kv, style, threads)
			}
		}
	}
}

func testForwardMatchesFloat64(t *testing.T, kv kernels.DType, style kernels.RopeStyle, threads int) {
	t.Helper()
	cfg := testConfig(style)
	cfg.SharedClassifier = threads == 1
	w := randomWeights(t, cfg, kernels.F32, 1)
	e := model.NewEngine(w, openBackend(t, threads), model.KVType(kv))
	ref := &refModel{w: w, kv16: kv == kernels.F16}
	tol := 2e-5 + kvTolerance(kv)
	ids := []int{1, 5, 9, 30, 2, 7, 11}
	c, err := e.NewCache(0, cfg.Layers, cfg.Context)
	if err != nil {
		t.Fatal(err)
	}
	const prompt = 4
	x := make([]float32, len(ids)*cfg.Dim)
	if err := e.Embed(x, ids[:prompt]); err != nil {
		t.Fatal(err)
	}
	if err := e.Forward(c, x, prompt); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, cfg.Vocab)
	for p := 0; p < len(ids); p++ {
		rx := ref.step(ref.embed(ids[p]), 0, cfg.Layers, p)
		var row []float32
		if p < prompt {
			row = x[p*cfg.Dim : (p+1)*cfg.Dim]
		} else {
			if err := e.Embed(x, ids[p:p+1]); err != nil {
				t.Fatal(err)
			}
			if err := e.Forward(c, x, 1); err != nil {
				t.Fatal(err)
			}
			row = x[:cfg.Dim]
		}
		if err := e.Logits(logits, row); err != nil {
			t.Fatal(err)
		}
		if d := maxRelErr(logits, ref.logits(rx)); d > tol {
			t.Errorf("%s cache, rope %s, %d threads, position %d: logits differ from float64 by %.3g (relative)", kv, style, threads, p, d)
		}
	}
	if c.Len != len(ids) {
		t.Errorf("cache holds %d positions, want %d", c.Len, len(ids))
	}
}

// TestSpansCompose checks that running layers [0,1) and then [1,3) on
// separate caches (as two pipeline stages would) equals running [0,3).
func TestSpansCompose(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	w := randomWeights(t, cfg, kernels.F32, 2)
	e := model.NewEngine(w, openBackend(t, 2))
	whole, _ := e.NewCache(0, 3, cfg.Context)
	s1, _ := e.NewCache(0, 1, cfg.Context)
	s2, err := e.NewCache(1, 3, cfg.Context)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{3, 1, 4, 1, 5, 9}
	a := make([]float32, len(ids)*cfg.Dim)
	b := make([]float32, len(ids)*cfg.Dim)
	for _, chunk := range [][]int{ids[:3], ids[3:4], ids[4:]} {
		n := len(chunk)
		e.Embed(a, chunk)
		e.Embed(b, chunk)
		if err := e.Forward(whole, a, n); err != nil {
			t.Fatal(err)
		}
		if err := e.Forward(s1, b, n); err != nil {
			t.Fatal(err)
		}
		if err := e.Forward(s2, b, n); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n*cfg.Dim; i++ {
			if a[i] != b[i] {
				t.Fatalf("split pipeline differs at value %d: %g vs %g", i, b[i], a[i])
			}
		}
	}
}

// TestQuantizedForwardCloseToFloat64 compares the logits of each stored
// weight type with the float64 reference over the same stored weights,
// with either KV cache type (the reference rounds its cache to half
// precision when the engine does). With Q8_0 and Q4_0 weights the
// activations are rounded to Q8_0 on the fly, a step function: a change of
// half an ulp in a cached half moves some activations a whole Q8_0 step,
// so the f16 cache gets a wider tolerance there, not a tighter match.
func TestQuantizedForwardCloseToFloat64(t *testing.T) {
	for _, kv := range []kernels.DType{kernels.F32, kernels.F16} {
		for _, dt := range []kernels.DType{kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0} {
			testQuantizedForward(t, kv, dt)
		}
	}
}

func testQuantizedForward(t *testing.T, kv, dt kernels.DType) {
	t.Helper()
	cfg := testConfig(kernels.RopeAdjacent)
	cfg.Dim, cfg.Hidden, cfg.Heads, cfg.KVHeads = 64, 96, 4, 2
	w := randomWeights(t, cfg, dt, 3)
	e := model.NewEngine(w, openBackend(t, 2), model.KVType(kv))
	ref := &refModel{w: w, kv16: kv == kernels.F16}
	c, _ := e.NewCache(0, cfg.Layers, cfg.Context)
	x := make([]float32, cfg.Dim)
	logits := make([]float32, cfg.Vocab)
	tol := map[kernels.DType]float64{kernels.F16: 1e-3, kernels.BF16: 1e-3, kernels.Q8_0: 0.03, kernels.Q4_0: 0.03}[dt]
	if dt.Quantized() && kv == kernels.F16 {
		tol = 0.045
	}
	for p, id := range []int{1, 8, 20, 33} {
		e.Embed(x, []int{id})
		if err := e.Forward(c, x, 1); err != nil {
			t.Fatal(err)
		}
		e.Logits(logits, x)
		// The reference uses the same stored (rounded) weights; the
		// difference left is the engine's arithmetic, including the
		// on-the-fly quantization of activations for Q8_0 and Q4_0.
		if d := maxRelErr(logits, ref.logits(ref.step(ref.embed(id), 0, cfg.Layers, p))); d > tol {
			t.Errorf("%s weights, %s cache, position %d: logits differ from float64 by %.3g (tolerance %g)", dt, kv, p, d, tol)
		}
	}
}

func TestForwardErrors(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	w := randomWeights(t, cfg, kernels.F32, 4)
	e := model.NewEngine(w, openBackend(t, 1))
	if _, err := e.NewCache(2, 1, 8); err == nil {
		t.Error("an empty layer span was accepted")
	}
	if _, err := e.NewCache(0, cfg.Layers, cfg.Context+1); err == nil {
		t.Error("a cache longer than the context was accepted")
	}
	c, _ := e.NewCache(0, cfg.Layers, 4)
	x := make([]float32, 5*cfg.Dim)
	if err := e.Embed(x, []int{cfg.Vocab}); err == nil {
		t.Error("an out-of-vocabulary id was embedded")
	}
	if err := e.Forward(c, x, 5); !errors.Is(err, model.ErrContextFull) {
		t.Errorf("overfilling the cache: got %v, want ErrContextFull", err)
	}
	partial := *w
	partial.Layers = append([]*model.Layer(nil), w.Layers...)
	partial.Layers[1] = nil
	pe := model.NewEngine(&partial, openBackend(t, 1))
	if _, err := pe.NewCache(0, cfg.Layers, 4); err == nil {
		t.Error("a cache over a layer that is not loaded was accepted")
	}
	if _, err := pe.NewCache(2, 3, 4); err != nil {
		t.Errorf("a cache over the loaded span failed: %v", err)
	}
}

func TestGenerateLimits(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	w := randomWeights(t, cfg, kernels.F32, 5)
	e := model.NewEngine(w, openBackend(t, 1))
	ctx := context.Background()
	nop := func(int) error { return nil }
	if _, err := e.Generate(ctx, nil, model.GenerateOptions{MaxTokens: 1}, nop); err == nil {
		t.Error("an empty prompt was accepted")
	}
	long := make([]int, cfg.Context+1)
	if _, err := e.Generate(ctx, long, model.GenerateOptions{MaxTokens: 0}, nop); err == nil {
		t.Error("a prompt longer than the context was accepted")
	}
	if _, err := e.Generate(ctx, []int{1, 2}, model.GenerateOptions{MaxTokens: cfg.Context - 1}, nop); err == nil {
		t.Error("prompt + tokens beyond the context were accepted")
	}
	var got []int
	st, err := e.Generate(ctx, []int{1, 2}, model.GenerateOptions{MaxTokens: cfg.Context - 2, PrefillChunk: 1}, func(id int) error {
		got = append(got, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Generated != cfg.Context-2 || len(got) != st.Generated {
		t.Errorf("generated %d (emitted %d), want %d", st.Generated, len(got), cfg.Context-2)
	}
	// Stopping: the stop id ends generation and is not emitted.
	stopAt := got[3]
	got = got[:0]
	st, err = e.Generate(ctx, []int{1, 2}, model.GenerateOptions{MaxTokens: 10, Stop: func(id int) bool { return id == stopAt }}, func(id int) error {
		got = append(got, id)
		return nil
	})
	if err != nil || !st.StoppedAtEOS {
		t.Fatalf("generation did not stop at id %d: %v %+v", stopAt, err, st)
	}
	for _, id := range got {
		if id == stopAt {
			t.Errorf("stop id %d was emitted", stopAt)
		}
	}
	// Cancellation ends generation with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	_, err = e.Generate(cctx, []int{1}, model.GenerateOptions{MaxTokens: 10}, func(int) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled generation returned %v", err)
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	for _, kv := range []kernels.DType{kernels.F16, kernels.F32} {
		cfg := testConfig(kernels.RopeAdjacent)
		cfg.Context = 512
		w := randomWeights(t, cfg, kernels.F32, 6)
		e := model.NewEngine(w, openBackend(t, 2), model.KVType(kv))
		c, _ := e.NewCache(0, cfg.Layers, cfg.Context)
		x := make([]float32, cfg.Dim)
		logits := make([]float32, cfg.Vocab)
		ids := []int{1}
		step := func() {
			e.Embed(x, ids)
			if err := e.Forward(c, x, 1); err != nil {
				t.Fatal(err)
			}
			e.Logits(logits, x)
		}
		step()
		if n := testing.AllocsPerRun(50, step); n != 0 {
			t.Errorf("%s cache: a decode step allocates %.1f times", kv, n)
		}
	}
}

// TestKVType checks the cache types an engine makes: half precision by
// default, float32 on request, nothing else; and that Bytes and
// CacheBytes agree on what each holds.
func TestKVType(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	w := randomWeights(t, cfg, kernels.F32, 8)
	be := openBackend(t, 1)
	if e := model.NewEngine(w, be); e.KVType() != kernels.F16 || model.DefaultKVType != kernels.F16 {
		t.Errorf("default KV type %s, want f16", e.KVType())
	}
	for _, kv := range []kernels.DType{kernels.F16, kernels.F32} {
		e := model.NewEngine(w, be, model.KVType(kv))
		c, err := e.NewCache(1, 3, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := int64(2*2*cfg.KVDim()*10) * int64(kv.BlockBytes())
		if c.Type() != kv || c.Bytes() != want || model.CacheBytes(&cfg, kv, 2, 10) != want {
			t.Errorf("%s: cache of type %s holds %d bytes (CacheBytes %d), want %d",
				kv, c.Type(), c.Bytes(), model.CacheBytes(&cfg, kv, 2, 10), want)
		}
	}
	for _, kv := range []kernels.DType{kernels.BF16, kernels.Q8_0} {
		if _, err := model.NewEngine(w, be, model.KVType(kv)).NewCache(0, 1, 4); err == nil {
			t.Errorf("a %s KV cache was made", kv)
		}
	}
	for s, want := range map[string]kernels.DType{"f16": kernels.F16, "f32": kernels.F32} {
		if got, err := model.ParseKVType(s); err != nil || got != want {
			t.Errorf("ParseKVType(%q) = %s, %v", s, got, err)
		}
	}
	if _, err := model.ParseKVType("bf16"); err == nil {
		t.Error("ParseKVType accepted bf16")
	}
}

// TestForwardRowsMixedKVTypes runs one batch whose sequences keep their
// caches in different types: each row still matches Forward of that row
// alone on a cache of its own type, bit for bit.
func TestForwardRowsMixedKVTypes(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	w := randomWeights(t, cfg, kernels.F32, 9)
	be := openBackend(t, 1)
	e16, e32 := model.NewEngine(w, be), model.NewEngine(w, be, model.KVType(kernels.F32))
	d := cfg.Dim
	mk := func(e *model.Engine) *model.Cache {
		c, err := e.NewCache(0, cfg.Layers, 8)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	batch := []*model.Cache{mk(e16), mk(e32)}
	alone := []*model.Cache{mk(e16), mk(e32)}
	for step := 0; step < 3; step++ {
		x := make([]float32, 2*d)
		for j := range x {
			x[j] = float32((j*31+step*7)%19-9) / 10
		}
		want := append([]float32(nil), x...)
		if err := e16.ForwardRows(batch, x); err != nil {
			t.Fatal(err)
		}
		for i, c := range alone {
			if err := e16.Forward(c, want[i*d:(i+1)*d], 1); err != nil {
				t.Fatal(err)
			}
		}
		for j := range x {
			if x[j] != want[j] {
				t.Fatalf("step %d: value %d (row %d, %s cache) is %g, alone %g", step, j, j/d, batch[j/d].Type(), x[j], want[j])
			}
		}
	}
}

// LogitsRows gives each row the logits of the float64 reference, in f32
// and Q8_0, for batches that do and do not fill the kernels' tiles.
func TestLogitsRows(t *testing.T) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.Q8_0} {
		cfg := testConfig(kernels.RopeAdjacent)
		cfg.Dim, cfg.Hidden, cfg.Heads, cfg.KVHeads = 64, 96, 4, 2
		w := randomWeights(t, cfg, dt, 7)
		e := model.NewEngine(w, openBackend(t, 2))
		ref := &refModel{w: w}
		for _, n := range []int{1, 3, 4, 5, 9} {
			x := make([]float32, n*cfg.Dim)
			for i := range x {
				x[i] = float32((i*7919)%23-11) / 7
			}
			logits := make([]float32, n*cfg.Vocab)
			if err := e.LogitsRows(logits, x, n); err != nil {
				t.Fatal(err)
			}
			for r := range n {
				row := make([]float64, cfg.Dim)
				for i := range row {
					row[i] = float64(x[r*cfg.Dim+i])
				}
				tol := 2e-5
				if dt == kernels.Q8_0 {
					tol = 0.03 // the activations are quantized too
				}
				if d := maxRelErr(logits[r*cfg.Vocab:(r+1)*cfg.Vocab], ref.logits(row)); d > tol {
					t.Errorf("%s, %d rows: row %d differs from float64 by %.3g (relative)", dt, n, r, d)
				}
			}
		}
	}
	e := model.NewEngine(randomWeights(t, testConfig(kernels.RopeAdjacent), kernels.F32, 1), openBackend(t, 1))
	if err := e.LogitsRows(make([]float32, 10), make([]float32, 10), 2); err == nil {
		t.Error("LogitsRows accepted buffers too small for 2 rows")
	}
}
