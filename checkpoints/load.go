package checkpoints

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// Option configures Load.
type Option func(*options) error

type options struct {
	dequantizeQ8 bool
}

// DequantizeQ8 makes Load turn the int8 tensors of a llama2.c v2 file into
// f32 with the file's exact float32 scales, instead of repacking them into
// Q8_0 blocks (whose scales are f16).
func DequantizeQ8() Option {
	return func(o *options) error { o.dequantizeQ8 = true; return nil }
}

func applyOptions(opts []Option) (*options, error) {
	o := &options{}
	for _, f := range opts {
		if f == nil {
			continue
		}
		if err := f(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Model is a loaded model file.
type Model struct {
	// Weights may refer to the file's memory map: they are read-only, and
	// valid until Close.
	Weights *model.Weights
	// Tokenizer is the vocabulary stored in the file, nil when it has none
	// (llama2.c checkpoints keep theirs in a separate tokenizer.bin).
	Tokenizer tokenizer.Tokenizer
	// Format is "gguf", "llama2c-v0", "llama2c-v1" or "llama2c-v2".
	Format string
	// GGUF is the parsed file for GGUF models (its metadata), nil
	// otherwise. It shares the memory map with Weights.
	GGUF *GGUF
	// Path is the file loaded.
	Path string
}

// Close releases the memory map behind the weights. Safe to call twice.
func (m *Model) Close() error {
	if m.Weights == nil {
		return nil
	}
	return m.Weights.Close()
}

// Load opens a model file, detecting its format from its first bytes:
// GGUF, llama2.c "ak42" (v1, v2) or llama2.c legacy (v0, headerless, which
// is recognised by its exact size). The file is memory-mapped; F32 (and
// GGUF F16, BF16, Q8_0, Q4_0) tensors are used from the map without
// copying.
//
// A directory is taken as a Hugging Face model (config.json, safetensors,
// tokenizer.json): it is converted to a GGUF file in the temporary
// directory (ConvertHF), which is mapped and removed at once.
func Load(path string, opts ...Option) (*Model, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return loadHF(path, o)
	}
	return loadFile(path, path, o)
}

// loadHF converts the Hugging Face model directory dir to a temporary
// GGUF file and loads that. The file is removed once mapped (where the
// system allows: the map keeps its pages), so nothing is left behind.
func loadHF(dir string, o *options) (*Model, error) {
	tmp, err := os.CreateTemp("", "mycel-hf-*.gguf")
	if err != nil {
		return nil, fmt.Errorf("checkpoints: convert %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	err = ConvertHF(dir, w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return loadFile(tmp.Name(), dir, o)
}

// loadFile maps file and loads the model in it, under the name path (its
// own path, or the directory it was converted from).
func loadFile(file, path string, o *options) (*Model, error) {
	data, unmap, err := mapFile(file)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	m, err := loadBytes(data, path, o)
	if err != nil {
		unmap()
		return nil, err
	}
	m.Weights.SetCloser(unmap)
	if m.GGUF != nil {
		m.GGUF.unmap = nil // the weights own the map
	}
	return m, nil
}

// LoadBytes is Load over a file held in memory. The model refers to data,
// which must not change while it is in use.
func LoadBytes(data []byte, opts ...Option) (*Model, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	return loadBytes(data, "", o)
}

func loadBytes(data []byte, path string, o *options) (*Model, error) {
	name := path
	if name == "" {
		name = "model"
	}
	if len(data) >= 4 && binary.LittleEndian.Uint32(data) == ggufMagic {
		g, err := parseGGUF(data, path)
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %w", err)
		}
		m, err := modelFromGGUF(g)
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %s: %w", name, err)
		}
		m.Path = path
		return m, nil
	}
	w, format, err := parseLlama2C(data, o)
	if err != nil {
		if format == FormatLlama2CV0 {
			n := min(len(data), 8)
			return nil, fmt.Errorf("checkpoints: %s: not a model file: its first bytes (% x %q) are not GGUF's or llama2.c's \"ak42\" magic, and as a legacy llama2.c checkpoint: %w",
				name, data[:n], printable(data[:n]), err)
		}
		return nil, fmt.Errorf("checkpoints: %s: %w", name, err)
	}
	return &Model{Weights: w, Format: format, Path: path}, nil
}

// llama GGUF tensor names.
const (
	tnEmbedding = "token_embd.weight"
	tnFinalNorm = "output_norm.weight"
	tnOutput    = "output.weight"
	tnRopeFreqs = "rope_freqs.weight"
)

// modelFromGGUF builds weights (and the tokenizer) from a GGUF of one of
// the architectures in archs.
func modelFromGGUF(g *GGUF) (*Model, error) {
	arch, err := g.String("general.architecture")
	if err != nil {
		return nil, err
	}
	spec, ok := archs[arch]
	if !ok {
		return nil, fmt.Errorf("architecture %q is not supported (this runtime runs %s)", arch, archNames())
	}
	c, err := ggufConfig(g, arch, spec)
	if err != nil {
		return nil, err
	}
	w := &model.Weights{Config: c, Layers: make([]*model.Layer, c.Layers)}
	if w.Embedding, err = ggufMatrix(g, tnEmbedding, c.Vocab, c.Dim); err != nil {
		return nil, err
	}
	if w.FinalNorm, err = ggufNorm(g, tnFinalNorm, c.Dim); err != nil {
		return nil, err
	}
	if _, ok := g.Tensor(tnOutput); ok {
		if w.Output, err = ggufMatrix(g, tnOutput, c.Vocab, c.Dim); err != nil {
			return nil, err
		}
		w.Config.SharedClassifier = false
	} else {
		w.Output = w.Embedding
		w.Config.SharedClassifier = true
	}
	if w.RopeFreqs, err = ggufOptNorm(g, tnRopeFreqs, c.RotaryDim()/2); err != nil {
		return nil, err
	}
	if spec.mla && w.RopeFreqs == nil {
		if w.RopeFreqs, err = yarnFreqs(g, &c); err != nil {
			return nil, err
		}
	}
	for i := range w.Layers {
		if w.Layers[i], err = ggufLayer(g, "blk."+strconv.Itoa(i)+".", &c, spec); err != nil {
			return nil, err
		}
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Weights: w, Format: FormatGGUF, GGUF: g}
	if m.Tokenizer, err = ggufTokenizer(g); err != nil {
		return nil, err
	}
	return m, nil
}

// ggufLayer reads the tensors of one block, those under prefix p.
func ggufLayer(g *GGUF, p string, c *model.Config, spec archSpec) (*model.Layer, error) {
	l := &model.Layer{}
	kv, hd := c.KVDim(), c.HeadDim()
	var err error
	type mat struct {
		name       string
		dst        **kernels.Matrix
		rows, cols int
	}
	mats := []mat{{"attn_output", &l.Wo, c.Dim, c.Heads * c.ValueDim()}}
	if spec.mla {
		if l.MLA, err = ggufMLA(g, p, c); err != nil {
			return nil, err
		}
		if c.QLoRA == 0 {
			mats = append(mats, mat{"attn_q", &l.Wq, c.QDim(), c.Dim})
		}
	} else if spec.fusedQKV {
		// q, k and v are the rows of one matrix, in that order.
		qd := c.QDim()
		qkv, err := ggufMatrix(g, p+"attn_qkv.weight", qd+2*kv, c.Dim)
		if err != nil {
			return nil, err
		}
		l.Wq, l.Wk, l.Wv = rowRange(qkv, 0, qd), rowRange(qkv, qd, qd+kv), rowRange(qkv, qd+kv, qd+2*kv)
	} else {
		mats = append(mats, mat{"attn_q", &l.Wq, c.QDim(), c.Dim}, mat{"attn_k", &l.Wk, kv, c.Dim}, mat{"attn_v", &l.Wv, kv, c.Dim})
	}
	for _, n := range spec.needs {
		if _, ok := g.Tensor(p + n); !ok {
			return nil, fmt.Errorf("tensor %s%s missing (every %s block has one)", p, n, c.Arch)
		}
	}
	if _, ok := g.Tensor(p + tnRouter); ok {
		if l.Experts, err = ggufExperts(g, p, c); err != nil {
			return nil, err
		}
	} else if spec.fusedGateUp {
		// The gate's rows, then the up projection's, in ffn_up.
		gu, err := ggufMatrix(g, p+"ffn_up.weight", 2*c.Hidden, c.Dim)
		if err != nil {
			return nil, err
		}
		l.W1, l.W3 = rowRange(gu, 0, c.Hidden), rowRange(gu, c.Hidden, 2*c.Hidden)
		mats = append(mats, mat{"ffn_down", &l.W2, c.Dim, c.Hidden})
	} else {
		mats = append(mats, mat{"ffn_gate", &l.W1, c.Hidden, c.Dim}, mat{"ffn_up", &l.W3, c.Hidden, c.Dim}, mat{"ffn_down", &l.W2, c.Dim, c.Hidden})
	}
	for _, t := range mats {
		if *t.dst, err = ggufMatrix(g, p+t.name+".weight", t.rows, t.cols); err != nil {
			return nil, err
		}
	}
	if l.AttnNorm, err = ggufNorm(g, p+"attn_norm.weight", c.Dim); err != nil {
		return nil, err
	}
	if l.FFNNorm, err = ggufNorm(g, p+"ffn_norm.weight", c.Dim); err != nil {
		return nil, err
	}
	// The optional steps: each is taken when its tensor is in the file.
	for _, t := range []struct {
		name string
		dst  *[]float32
		n    int
	}{
		{"attn_q.bias", &l.BQ, c.QDim()},
		{"attn_k.bias", &l.BK, kv},
		{"attn_v.bias", &l.BV, kv},
		{"attn_q_norm.weight", &l.QNorm, hd},
		{"attn_k_norm.weight", &l.KNorm, hd},
		{"post_attention_norm.weight", &l.PostAttnNorm, c.Dim},
		{"post_ffw_norm.weight", &l.PostFFNNorm, c.Dim},
	} {
		if *t.dst, err = ggufOptNorm(g, p+t.name, t.n); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// The tensors of a block's routed experts.
const (
	tnRouter  = "ffn_gate_inp.weight"
	tnExpGate = "ffn_gate_exps.weight"
	tnExpUp   = "ffn_up_exps.weight"
	tnExpDown = "ffn_down_exps.weight"
)

// ggufExperts reads the routed experts of the block under prefix p: the
// router and the three stacked expert tensors ([cols, rows, experts],
// one matrix per expert), sliced per expert without copies.
func ggufExperts(g *GGUF, p string, c *model.Config) (*model.Experts, error) {
	if c.Experts == 0 {
		return nil, fmt.Errorf("tensor %s%s is a router, but %s.expert_count is missing or 0", p, tnRouter, c.Arch)
	}
	x := &model.Experts{}
	var err error
	if x.Router, err = ggufMatrix(g, p+tnRouter, c.Experts, c.Dim); err != nil {
		return nil, err
	}
	h := c.ExpertHidden
	for _, t := range []struct {
		name       string
		dst        *[]*kernels.Matrix
		rows, cols int
	}{{tnExpGate, &x.Gate, h, c.Dim}, {tnExpUp, &x.Up, h, c.Dim}, {tnExpDown, &x.Down, c.Dim, h}} {
		if *t.dst, err = ggufStacked(g, p+t.name, c.Experts, t.rows, t.cols); err != nil {
			return nil, err
		}
	}
	if x.Bias, err = ggufOptNorm(g, p+"exp_probs_b.bias", c.Experts); err != nil {
		return nil, err
	}
	// Shared experts: one FFN as wide as all of them together.
	if t, ok := g.Tensor(p + "ffn_gate_shexp.weight"); ok {
		if len(t.Dims) != 2 || t.Dims[1] == 0 || t.Dims[1] > 1<<20 {
			return nil, fmt.Errorf("tensor %s has dims %v, want [%d, shared width]", t.Name, t.Dims, c.Dim)
		}
		sh := int(t.Dims[1])
		for _, m := range []struct {
			name       string
			dst        **kernels.Matrix
			rows, cols int
		}{{"ffn_gate_shexp", &x.SharedGate, sh, c.Dim}, {"ffn_up_shexp", &x.SharedUp, sh, c.Dim}, {"ffn_down_shexp", &x.SharedDown, c.Dim, sh}} {
			if *m.dst, err = ggufMatrix(g, p+m.name+".weight", m.rows, m.cols); err != nil {
				return nil, err
			}
		}
	}
	return x, nil
}

// ggufMLA reads the latent attention projections of the block under
// prefix p.
func ggufMLA(g *GGUF, p string, c *model.Config) (*model.MLA, error) {
	a := &model.MLA{}
	r := c.RotaryDim()
	var err error
	if c.QLoRA > 0 {
		if a.QA, err = ggufMatrix(g, p+"attn_q_a.weight", c.QLoRA, c.Dim); err != nil {
			return nil, err
		}
		if a.QANorm, err = ggufNorm(g, p+"attn_q_a_norm.weight", c.QLoRA); err != nil {
			return nil, err
		}
		if a.QB, err = ggufMatrix(g, p+"attn_q_b.weight", c.QDim(), c.QLoRA); err != nil {
			return nil, err
		}
	}
	if a.KVA, err = ggufMatrix(g, p+"attn_kv_a_mqa.weight", c.KVLoRA+r, c.Dim); err != nil {
		return nil, err
	}
	if a.KVANorm, err = ggufNorm(g, p+"attn_kv_a_norm.weight", c.KVLoRA); err != nil {
		return nil, err
	}
	if a.KVB, err = ggufMatrix(g, p+"attn_kv_b.weight", c.KVHeads*(c.HeadDim()-r+c.ValueDim()), c.KVLoRA); err != nil {
		return nil, fmt.Errorf("%w (the single attn_kv_b is read; split attn_k_b/attn_v_b are not)", err)
	}
	return a, nil
}

// mlaConfig reads the keys of latent attention into c: the head widths,
// the ranks, the rotated dims and, with YaRN, the query scale.
func mlaConfig(g *GGUF, c *model.Config) error {
	k := func(key string) string { return c.Arch + "." + key }
	const big = 1 << 16
	var err error
	for _, f := range []struct {
		key string
		dst *int
		def int
	}{
		{k("attention.key_length"), &c.HeadSize, -1},
		{k("attention.value_length"), &c.ValueSize, -1},
		{k("rope.dimension_count"), &c.RopeDim, -1},
		{k("attention.q_lora_rank"), &c.QLoRA, 0},
		{k("attention.kv_lora_rank"), &c.KVLoRA, -1},
	} {
		if *f.dst, err = ggufInt(g, f.key, f.def, 0, big); err != nil {
			return err
		}
	}
	if c.KVLoRA == 0 || c.HeadSize == 0 || c.RopeDim == 0 || c.RopeDim >= c.HeadSize || c.ValueSize == 0 {
		return fmt.Errorf("%s %d, %s %d, %s %d, %s %d: latent attention needs a kv rank and heads wider than their rotated part",
			k("attention.kv_lora_rank"), c.KVLoRA, k("attention.key_length"), c.HeadSize, k("attention.value_length"), c.ValueSize, k("rope.dimension_count"), c.RopeDim)
	}
	if c.KVHeads != c.Heads {
		return fmt.Errorf("%s %d differs from %s %d (latent attention has a key and value per head)", k("attention.head_count_kv"), c.KVHeads, k("attention.head_count"), c.Heads)
	}
	if kind, err := g.String(k("rope.scaling.type")); err == nil && kind == "yarn" {
		f, err := ggufFloat(g, k("rope.scaling.factor"), 1)
		if err != nil {
			return err
		}
		lm, err := ggufFloat(g, k("rope.scaling.yarn_log_multiplier"), 0)
		if err != nil {
			return err
		}
		if f > 1 {
			// The attention factor of YaRN goes into the scores, squared;
			// the rotation itself keeps its magnitude.
			ms := 1 + float64(lm)*math.Log(float64(f))
			c.QueryScale = float32(ms * ms / math.Sqrt(float64(c.HeadSize)))
		}
	} else if err != nil && !errors.Is(err, ErrNoKey) {
		return err
	}
	return nil
}

// yarnFreqs returns the rotary frequency factors of YaRN for a file whose
// rope.scaling.type is "yarn" (nil otherwise): pair i of the d rotated
// dims turns at θ_i·((1-γ_i)/s + γ_i), s the scaling factor, γ_i ramping
// from 1 (pairs that turn many times within the original context, kept)
// down to 0 (slow ones, interpolated) between the dims where a pair turns
// β_fast = 32 and β_slow = 1 times in original_context_length; the factor
// dividing θ_i is the inverse.
func yarnFreqs(g *GGUF, c *model.Config) ([]float32, error) {
	k := func(key string) string { return c.Arch + "." + key }
	kind, err := g.String(k("rope.scaling.type"))
	if errors.Is(err, ErrNoKey) || err == nil && kind != "yarn" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := ggufFloat(g, k("rope.scaling.factor"), 1)
	if err != nil {
		return nil, err
	}
	orig, err := ggufInt(g, k("rope.scaling.original_context_length"), -1, 1, 1<<30)
	if err != nil {
		return nil, err
	}
	if !(s >= 1) {
		return nil, fmt.Errorf("%s %g: want at least 1", k("rope.scaling.factor"), s)
	}
	d := c.RotaryDim()
	corr := func(turns float64) float64 {
		return float64(d) * math.Log(float64(orig)/(turns*2*math.Pi)) / (2 * math.Log(float64(c.RopeTheta)))
	}
	low := max(0, math.Floor(corr(32)))
	high := min(float64(d-1), math.Ceil(corr(1)))
	out := make([]float32, d/2)
	for i := range out {
		y := (float64(i) - low) / max(0.001, high-low)
		gamma := 1 - min(1, max(0, y))
		out[i] = float32(1 / ((1-gamma)/float64(s) + gamma))
	}
	return out, nil
}

// ggufStacked returns the n matrices of the named stacked tensor, which
// must be [cols, rows, n] in GGUF's innermost-first order: views of the
// file, matrix i being rows [i·rows, (i+1)·rows) of the whole.
func ggufStacked(g *GGUF, name string, n, rows, cols int) ([]*kernels.Matrix, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("tensor %s missing", name)
	}
	dt, err := tensorDType(t)
	if err != nil {
		return nil, err
	}
	if len(t.Dims) != 3 || t.Dims[0] != uint64(cols) || t.Dims[1] != uint64(rows) || t.Dims[2] != uint64(n) {
		return nil, fmt.Errorf("tensor %s has dims %v, want [%d, %d, %d]", name, t.Dims, cols, rows, n)
	}
	all, err := kernels.NewMatrix(dt, n*rows, cols, alignedBytes(t.Data, 4))
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", name, err)
	}
	ms := make([]*kernels.Matrix, n)
	for i := range ms {
		ms[i] = rowRange(all, i*rows, (i+1)*rows)
	}
	return ms, nil
}

// rowRange is rows [r0, r1) of m, sharing its storage.
func rowRange(m *kernels.Matrix, r0, r1 int) *kernels.Matrix {
	rb := m.RowBytes()
	return &kernels.Matrix{Type: m.Type, Rows: r1 - r0, Cols: m.Cols, Data: alignedBytes(m.Data[r0*rb:r1*rb], 4)}
}

// ggufOptNorm is ggufNorm for a tensor the file may lack (nil then).
func ggufOptNorm(g *GGUF, name string, n int) ([]float32, error) {
	if _, ok := g.Tensor(name); !ok {
		return nil, nil
	}
	return ggufNorm(g, name, n)
}

// ggufInt reads an integer key as an int in [lo, hi], or def when the key
// is absent and def >= 0.
func ggufInt(g *GGUF, key string, def, lo, hi int) (int, error) {
	v, err := g.Uint(key)
	if errors.Is(err, ErrNoKey) && def >= 0 {
		return def, nil
	}
	if err != nil {
		return 0, err
	}
	if v < uint64(lo) || v > uint64(hi) {
		return 0, fmt.Errorf("%s = %d is outside [%d, %d]", key, v, lo, hi)
	}
	return int(v), nil
}

func ggufFloat(g *GGUF, key string, def float64) (float32, error) {
	v, err := g.Float(key)
	if errors.Is(err, ErrNoKey) {
		return float32(def), nil
	}
	if err != nil {
		return 0, err
	}
	return float32(v), nil
}

// headConfig reads the heads' widths and the rotary embedding's keys of
// an architecture without latent attention into c: heads of key_length
// (embedding_length/head_count when absent), values as wide as keys, every
// dim rotated, and rope.scaling.factor as linear scaling when the
// scaling's type is linear or not given.
func headConfig(g *GGUF, c *model.Config) error {
	k := func(key string) string { return c.Arch + "." + key }
	const big = 1 << 16
	def := -1 // key_length is needed where heads do not divide the width
	if c.Dim%c.Heads == 0 {
		def = c.Dim / c.Heads
	}
	hd, err := ggufInt(g, k("attention.key_length"), def, 1, big)
	if err != nil {
		return err
	}
	if hd != def {
		c.HeadSize = hd
	}
	if n, err := ggufInt(g, k("attention.value_length"), hd, 1, big); err != nil {
		return err
	} else if n != hd {
		return fmt.Errorf("%s %d differs from %s %d (values of another width than keys are not supported here)", k("attention.value_length"), n, k("attention.key_length"), hd)
	}
	if rd, err := ggufInt(g, k("rope.dimension_count"), hd, 1, big); err != nil {
		return err
	} else if rd != hd {
		return fmt.Errorf("%s %d differs from the head size %d (partial rotary embedding is not supported)", k("rope.dimension_count"), rd, hd)
	}
	kind, err := g.String(k("rope.scaling.type"))
	if err != nil && !errors.Is(err, ErrNoKey) {
		return err
	}
	if err == nil && kind != "linear" {
		return nil
	}
	f, err := ggufFloat(g, k("rope.scaling.factor"), 1)
	if err != nil {
		return err
	}
	switch {
	case !(f > 0 && f <= 1<<16):
		return fmt.Errorf("%s %g: want a linear scaling factor in (0, %d]", k("rope.scaling.factor"), f, 1<<16)
	case f != 1:
		c.RopeScale = f
	}
	return nil
}

func ggufConfig(g *GGUF, arch string, spec archSpec) (model.Config, error) {
	c := model.Config{Arch: arch, RopeStyle: spec.rope, Act: spec.act, SlidingEvery: spec.slidingEvery}
	var err error
	const big = 1 << 30
	k := func(key string) string { return arch + "." + key }
	for _, f := range []struct {
		key string
		dst *int
		def int
	}{
		{k("embedding_length"), &c.Dim, -1},
		{k("feed_forward_length"), &c.Hidden, -1},
		{k("block_count"), &c.Layers, -1},
		{k("attention.head_count"), &c.Heads, -1},
		{k("context_length"), &c.Context, -1},
		{k("attention.sliding_window"), &c.SlidingWindow, 0},
	} {
		if *f.dst, err = ggufInt(g, f.key, f.def, 0, big); err != nil {
			return c, err
		}
	}
	if c.KVHeads, err = ggufInt(g, k("attention.head_count_kv"), c.Heads, 1, big); err != nil {
		return c, err
	}
	if c.RopeTheta, err = ggufFloat(g, k("rope.freq_base"), 10000); err != nil {
		return c, err
	}
	if c.NormEps, err = ggufFloat(g, k("attention.layer_norm_rms_epsilon"), 1e-5); err != nil {
		return c, err
	}
	if c.AttnSoftCap, err = ggufFloat(g, k("attn_logit_softcapping"), 0); err != nil {
		return c, err
	}
	if c.FinalSoftCap, err = ggufFloat(g, k("final_logit_softcapping"), 0); err != nil {
		return c, err
	}
	if spec.embedScale {
		c.EmbedScale = float32(math.Sqrt(float64(c.Dim)))
	}
	if c.Experts, err = ggufInt(g, k("expert_count"), 0, 0, 1<<16); err != nil {
		return c, err
	}
	if c.Experts > 0 {
		if c.ExpertsUsed, err = ggufInt(g, k("expert_used_count"), -1, 1, c.Experts); err != nil {
			return c, err
		}
		// Mixtral's experts are feed_forward_length wide; architectures
		// with dense layers beside the experts give the experts' own.
		if c.ExpertHidden, err = ggufInt(g, k("expert_feed_forward_length"), c.Hidden, 1, big); err != nil {
			return c, err
		}
		c.ExpertNorm = spec.expertNorm
		if b, err := g.Bool(k("expert_weights_norm")); err == nil {
			c.ExpertNorm = b
		} else if !errors.Is(err, ErrNoKey) {
			return c, err
		}
		// expert_gating_func: 1 softmax (the default), 2 sigmoid.
		switch gf, err := ggufInt(g, k("expert_gating_func"), 1, 1, 2); {
		case err != nil:
			return c, err
		case gf == 2:
			c.ExpertGating = model.GateSigmoid
		}
		if c.ExpertScale, err = ggufFloat(g, k("expert_weights_scale"), 0); err != nil {
			return c, err
		}
	}
	emb, ok := g.Tensor(tnEmbedding)
	if !ok {
		return c, fmt.Errorf("tensor %s missing", tnEmbedding)
	}
	if len(emb.Dims) != 2 || emb.Dims[1] == 0 || emb.Dims[1] > big {
		return c, fmt.Errorf("tensor %s has dims %v, want [%d, vocab]", tnEmbedding, emb.Dims, c.Dim)
	}
	c.Vocab = int(emb.Dims[1])
	if v, err := ggufInt(g, k("vocab_size"), c.Vocab, 1, big); err != nil {
		return c, err
	} else if v != c.Vocab {
		return c, fmt.Errorf("%s %d disagrees with %s's %d rows", k("vocab_size"), v, tnEmbedding, c.Vocab)
	}
	if spec.mla {
		if err := mlaConfig(g, &c); err != nil {
			return c, err
		}
	} else if c.Heads > 0 {
		if err := headConfig(g, &c); err != nil {
			return c, err
		}
	}
	if c.SlidingWindow > 0 {
		c.RopeLocalTheta = spec.ropeLocalTheta
	}
	if spec.queryScale != nil && c.Heads > 0 {
		c.QueryScale = spec.queryScale(&c)
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// tensorDType returns the kernels type of a tensor, or an error naming it.
func tensorDType(t *TensorInfo) (kernels.DType, error) {
	if !t.Supported {
		return 0, fmt.Errorf("tensor %s has type %s, which is not supported (use F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K to Q6_K, IQ4_NL or IQ4_XS)", t.Name, t.Type)
	}
	return t.DType, nil
}

// ggufMatrix returns the named matrix, which must be [cols, rows] in
// GGUF's innermost-first order.
func ggufMatrix(g *GGUF, name string, rows, cols int) (*kernels.Matrix, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("tensor %s missing", name)
	}
	dt, err := tensorDType(t)
	if err != nil {
		return nil, err
	}
	if len(t.Dims) != 2 || t.Dims[0] != uint64(cols) || t.Dims[1] != uint64(rows) {
		return nil, fmt.Errorf("tensor %s has dims %v, want [%d, %d]", name, t.Dims, cols, rows)
	}
	m, err := kernels.NewMatrix(dt, rows, cols, alignedBytes(t.Data, 4))
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", name, err)
	}
	return m, nil
}

// ggufNorm returns a norm vector as float32, a view of the file for F32.
func ggufNorm(g *GGUF, name string, n int) ([]float32, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("tensor %s missing", name)
	}
	dt, err := tensorDType(t)
	if err != nil {
		return nil, err
	}
	if len(t.Dims) != 1 || t.Dims[0] != uint64(n) {
		return nil, fmt.Errorf("tensor %s has dims %v, want [%d]", name, t.Dims, n)
	}
	if dt == kernels.F32 {
		return f32View(t.Data), nil
	}
	out := make([]float32, n)
	kernels.Decode(out, dt, t.Data)
	return out, nil
}

// ggufTokenizer builds the tokenizer stored in a GGUF file, nil if none.
func ggufTokenizer(g *GGUF) (tokenizer.Tokenizer, error) {
	kind, err := g.String("tokenizer.ggml.model")
	if errors.Is(err, ErrNoKey) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tokens, err := g.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	n := len(tokens)
	var types []int32
	if _, ok := g.Get("tokenizer.ggml.token_type"); ok {
		if types, err = g.Int32s("tokenizer.ggml.token_type"); err != nil {
			return nil, err
		}
		if len(types) != n {
			return nil, fmt.Errorf("tokenizer.ggml.token_type has %d entries for %d tokens", len(types), n)
		}
	}
	id := func(key string, def int) (int, error) {
		v, err := g.Uint(key)
		if errors.Is(err, ErrNoKey) {
			return def, nil
		}
		if err != nil {
			return 0, err
		}
		if v >= uint64(n) {
			return 0, fmt.Errorf("%s = %d is outside the vocabulary of %d tokens", key, v, n)
		}
		return int(v), nil
	}
	addBOS := func(def bool) (bool, error) {
		b, err := g.Bool("tokenizer.ggml.add_bos_token")
		if errors.Is(err, ErrNoKey) {
			return def, nil
		}
		return b, err
	}
	orNone := func(def int) int {
		if def < n {
			return def
		}
		return -1
	}
	switch kind {
	case "llama":
		v := tokenizer.SPVocab{Tokens: tokens, Types: types}
		if _, ok := g.Get("tokenizer.ggml.scores"); ok {
			if v.Scores, err = g.Float32s("tokenizer.ggml.scores"); err != nil {
				return nil, err
			}
			if len(v.Scores) != n {
				return nil, fmt.Errorf("tokenizer.ggml.scores has %d entries for %d tokens", len(v.Scores), n)
			}
		}
		if v.BOS, err = id("tokenizer.ggml.bos_token_id", orNone(1)); err != nil {
			return nil, err
		}
		if v.EOS, err = id("tokenizer.ggml.eos_token_id", orNone(2)); err != nil {
			return nil, err
		}
		if v.UNK, err = id("tokenizer.ggml.unknown_token_id", orNone(0)); err != nil {
			return nil, err
		}
		if v.AddBOS, err = addBOS(true); err != nil {
			return nil, err
		}
		switch prefix, err := g.Bool("tokenizer.ggml.add_space_prefix"); {
		case err == nil:
			v.NoSpacePrefix = !prefix
		case !errors.Is(err, ErrNoKey):
			return nil, err
		}
		t, err := tokenizer.NewSentencePiece(v)
		if err != nil {
			return nil, err
		}
		return t, nil
	case "gpt2":
		v := tokenizer.BPEVocab{Tokens: tokens, Types: types}
		if v.Merges, err = g.Strings("tokenizer.ggml.merges"); err != nil {
			return nil, err
		}
		if v.Pre, err = g.String("tokenizer.ggml.pre"); err != nil && !errors.Is(err, ErrNoKey) {
			return nil, err
		}
		if v.BOS, err = id("tokenizer.ggml.bos_token_id", -1); err != nil {
			return nil, err
		}
		if v.EOS, err = id("tokenizer.ggml.eos_token_id", -1); err != nil {
			return nil, err
		}
		if v.AddBOS, err = addBOS(false); err != nil {
			return nil, err
		}
		t, err := tokenizer.NewBPE(v)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, fmt.Errorf("tokenizer.ggml.model %q is not supported (want llama or gpt2)", kind)
}

// LoadTokenizer reads a tokenizer file for a model of vocabSize tokens: a
// GGUF file's vocabulary, or a llama2.c tokenizer.bin of vocabSize entries
// (that format does not store its size). A vocabulary of another size is
// an error.
func LoadTokenizer(path string, vocabSize int) (tokenizer.Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	var magic [4]byte
	_, rerr := f.ReadAt(magic[:], 0)
	f.Close()
	if rerr == nil && binary.LittleEndian.Uint32(magic[:]) == ggufMagic {
		g, err := OpenGGUF(path)
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %w", err)
		}
		defer g.Close()
		t, err := ggufTokenizer(g)
		if err != nil {
			return nil, fmt.Errorf("checkpoints: %s: %w", path, err)
		}
		if t == nil {
			return nil, fmt.Errorf("checkpoints: %s has no tokenizer (no tokenizer.ggml.model key)", path)
		}
		if t.VocabSize() != vocabSize {
			return nil, fmt.Errorf("checkpoints: the tokenizer in %s has %d tokens but the model has a vocabulary of %d: they do not belong together", path, t.VocabSize(), vocabSize)
		}
		return t, nil
	}
	t, err := tokenizer.LoadLlama2C(path, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	return t, nil
}

// TokenizerFromGGUF builds the tokenizer described by a GGUF file's
// tokenizer.* metadata; nil (and no error) when it has none.
func TokenizerFromGGUF(g *GGUF) (tokenizer.Tokenizer, error) { return ggufTokenizer(g) }
