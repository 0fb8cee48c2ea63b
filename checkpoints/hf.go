package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// A Hugging Face model directory holds config.json (the architecture and
// its shape), the weights as safetensors (model.safetensors, or shards
// listed in model.safetensors.index.json) and the tokenizer
// (tokenizer.json, tokenizer_config.json). ConvertHF writes such a
// directory as a GGUF file that Load runs: the same tensors under GGUF's
// names, in their own type (F32, F16 or BF16), with the metadata GGUF's
// loaders read. Llama-family query and key projections are reordered to
// GGUF's rotary layout (adjacent pairs): Hugging Face's Llama rotates the
// two halves of each head (the NeoX layout), and llama.cpp's converter
// permutes the rows of those matrices so that the adjacent layout computes
// the same; Qwen 2 and 3 keep the NeoX layout in GGUF too, unpermuted. A
// mixture's experts, one matrix each in Hugging Face, are stacked into
// GGUF's one tensor per kind ([cols, rows, experts]).

// hfConfigFile and the other names of a Hugging Face model directory.
const (
	hfConfigFile = "config.json"
	// maxHFConfig bounds config.json.
	maxHFConfig = 1 << 20
)

// hfArch is what ConvertHF knows of one Hugging Face architecture.
type hfArch struct {
	gguf    string // GGUF's general.architecture
	permute bool   // reorder q and k rows from the NeoX layout to the adjacent one
	// moe names the module of a block's routed experts: Mixtral's
	// block_sparse_moe (router "gate", experts' w1, w3, w2) or Qwen 3
	// MoE's mlp (router "gate", experts' gate_proj, up_proj, down_proj);
	// "" for a dense model.
	moe string
	// qkNorm: every block has RMSNorms of the queries and keys (Qwen 3).
	qkNorm bool
	// fused: the queries, keys and values are one matrix, and so are the
	// gate and up projections (Phi-3), as GGUF keeps them too.
	fused bool
	// gemma is 2 or 3 for Gemma's block (norms after attention and around
	// the FFN, each norm's weight stored as w where the model scales by
	// 1+w; Gemma 3 adds q/k norms and a global layer every sixth).
	gemma int
	// text: the language model of a multimodal checkpoint, whose
	// config.json holds it as text_config and whose tensors are under
	// another prefix than model.
	text bool
}

// hfArchs maps config.json's architectures[0] to GGUF.
var hfArchs = map[string]hfArch{
	"LlamaForCausalLM":    {gguf: "llama", permute: true},
	"MistralForCausalLM":  {gguf: "llama", permute: true},
	"Qwen2ForCausalLM":    {gguf: "qwen2"},
	"Qwen3ForCausalLM":    {gguf: "qwen3", qkNorm: true},
	"MixtralForCausalLM":  {gguf: "llama", permute: true, moe: "block_sparse_moe"},
	"Qwen3MoeForCausalLM": {gguf: "qwen3moe", moe: "mlp", qkNorm: true},
	"Phi3ForCausalLM":     {gguf: "phi3", fused: true},
	"Gemma2ForCausalLM":   {gguf: "gemma2", gemma: 2},
	"Gemma3ForCausalLM":   {gguf: "gemma3", gemma: 3, qkNorm: true},
	// Gemma 3 4B and up: the text model only; the vision tower's tensors
	// are left out.
	"Gemma3ForConditionalGeneration": {gguf: "gemma3", gemma: 3, qkNorm: true, text: true},
}

// hfConfig is the part of config.json ConvertHF reads.
type hfConfig struct {
	Architectures    []string       `json:"architectures"`
	HiddenSize       int            `json:"hidden_size"`
	Intermediate     int            `json:"intermediate_size"`
	Layers           int            `json:"num_hidden_layers"`
	Heads            int            `json:"num_attention_heads"`
	KVHeads          int            `json:"num_key_value_heads"`
	HeadDim          int            `json:"head_dim"`
	VocabSize        int            `json:"vocab_size"`
	MaxPositions     int            `json:"max_position_embeddings"`
	RMSNormEps       float64        `json:"rms_norm_eps"`
	RopeTheta        float64        `json:"rope_theta"`
	RopeScaling      *hfRopeScaling `json:"rope_scaling"`
	TieWordEmbedding *bool          `json:"tie_word_embeddings"`
	// Mixtures of experts: Mixtral's num_local_experts, Qwen 3 MoE's
	// num_experts and moe_intermediate_size; both num_experts_per_tok.
	LocalExperts int   `json:"num_local_experts"`
	Experts      int   `json:"num_experts"`
	ExpertsUsed  int   `json:"num_experts_per_tok"`
	MoEHidden    int   `json:"moe_intermediate_size"`
	NormTopK     *bool `json:"norm_topk_prob"`
	MLPOnly      []int `json:"mlp_only_layers"`
	SparseStep   int   `json:"decoder_sparse_step"`
	// Gemma 2 and Phi-3.
	SlidingWindow int      `json:"sliding_window"`
	AttnSoftCap   float64  `json:"attn_logit_softcapping"`
	FinalSoftCap  float64  `json:"final_logit_softcapping"`
	QueryScalar   float64  `json:"query_pre_attn_scalar"`
	HiddenAct     string   `json:"hidden_activation"`
	PartialRotary *float64 `json:"partial_rotary_factor"`
	// Gemma 3.
	RopeLocalBase  float64         `json:"rope_local_base_freq"`
	SlidingPattern int             `json:"sliding_window_pattern"`
	LayerTypes     []string        `json:"layer_types"`
	TextConfig     json.RawMessage `json:"text_config"`
}

// hfRopeScaling is config.json's rope_scaling.
type hfRopeScaling struct {
	Type          string  `json:"type"`
	RopeType      string  `json:"rope_type"`
	Factor        float64 `json:"factor"`
	LowFreq       float64 `json:"low_freq_factor"`
	HighFreq      float64 `json:"high_freq_factor"`
	OriginalMaxPE float64 `json:"original_max_position_embeddings"`
}

// readHFConfig reads and checks dir's config.json.
func readHFConfig(dir string) (*hfConfig, hfArch, error) {
	path := filepath.Join(dir, hfConfigFile)
	data, err := readBounded(path, maxHFConfig)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, hfArch{}, fmt.Errorf("%s is not a Hugging Face model directory: it has no %s", dir, hfConfigFile)
	}
	if err != nil {
		return nil, hfArch{}, err
	}
	return parseHFConfig(data, path)
}

// parseHFConfig parses and checks config.json's data (path names it in
// errors).
func parseHFConfig(data []byte, path string) (*hfConfig, hfArch, error) {
	var c hfConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, hfArch{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.Architectures) != 1 {
		return nil, hfArch{}, fmt.Errorf("%s: architectures %v: want one", path, c.Architectures)
	}
	arch, ok := hfArchs[c.Architectures[0]]
	if !ok {
		return nil, hfArch{}, fmt.Errorf("%s: architecture %s is not one this converter knows (%s)", path, c.Architectures[0], strings.Join(slices.Sorted(maps.Keys(hfArchs)), ", "))
	}
	if arch.text {
		if len(c.TextConfig) == 0 {
			return nil, hfArch{}, fmt.Errorf("%s: %s without text_config", path, c.Architectures[0])
		}
		archs, text := c.Architectures, c.TextConfig
		c = hfConfig{}
		if err := json.Unmarshal(text, &c); err != nil {
			return nil, hfArch{}, fmt.Errorf("%s: text_config: %w", path, err)
		}
		c.Architectures = archs
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	const big = 1 << 24
	for _, f := range []struct {
		key string
		v   int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.Intermediate}, {"num_hidden_layers", c.Layers},
		{"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads}, {"max_position_embeddings", c.MaxPositions}} {
		if f.v <= 0 || f.v > big {
			return nil, hfArch{}, fmt.Errorf("%s: %s %d: want 1 to %d", path, f.key, f.v, big)
		}
	}
	if arch.moe != "" {
		if c.Experts == 0 {
			c.Experts = c.LocalExperts
		}
		if c.MoEHidden == 0 {
			c.MoEHidden = c.Intermediate
		}
		if c.Experts < 2 || c.Experts > 1<<12 || c.ExpertsUsed < 1 || c.ExpertsUsed > c.Experts || c.MoEHidden <= 0 || c.MoEHidden > big {
			return nil, hfArch{}, fmt.Errorf("%s: %d experts, %d a token, experts %d wide: want 2 to 4096 experts, 1 to all of them a token", path, c.Experts, c.ExpertsUsed, c.MoEHidden)
		}
		if len(c.MLPOnly) > 0 || c.SparseStep > 1 {
			return nil, hfArch{}, fmt.Errorf("%s: dense layers among the experts' (mlp_only_layers %v, decoder_sparse_step %d) are not supported", path, c.MLPOnly, c.SparseStep)
		}
	}
	if c.HeadDim == 0 {
		if c.HiddenSize%c.Heads != 0 {
			return nil, hfArch{}, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d, and no head_dim", path, c.HiddenSize, c.Heads)
		}
		c.HeadDim = c.HiddenSize / c.Heads
	}
	if arch.gemma != 0 {
		if c.HiddenAct != "" && c.HiddenAct != "gelu_pytorch_tanh" {
			return nil, hfArch{}, fmt.Errorf("%s: hidden_activation %q: Gemma runs gelu_pytorch_tanh", path, c.HiddenAct)
		}
		// The loader scales queries by 1/√head_dim, or 1/√(width/heads)
		// for the 46 blocks of Gemma 2 27B and the 62 of Gemma 3 27B: so
		// must the file.
		blocks := 46
		if arch.gemma == 3 {
			blocks = 62
			if err := c.checkGemma3(); err != nil {
				return nil, hfArch{}, fmt.Errorf("%s: %w", path, err)
			}
		}
		want := float64(c.HeadDim)
		if s := gemmaQueryScale(blocks)(&model.Config{Layers: c.Layers, Dim: c.HiddenSize, Heads: c.Heads, HeadSize: c.HeadDim}); s != 0 {
			want = 1 / float64(s*s)
		}
		if c.QueryScalar != 0 && math.Abs(c.QueryScalar-want) > 1e-3*want {
			return nil, hfArch{}, fmt.Errorf("%s: query_pre_attn_scalar %g: this model scales queries by 1/√%g", path, c.QueryScalar, want)
		}
	}
	if c.PartialRotary != nil && *c.PartialRotary != 1 {
		return nil, hfArch{}, fmt.Errorf("%s: partial_rotary_factor %g: partial rotary embedding is not supported", path, *c.PartialRotary)
	}
	if c.SlidingWindow < 0 || c.SlidingWindow > big || !(c.AttnSoftCap >= 0) || !(c.FinalSoftCap >= 0) {
		return nil, hfArch{}, fmt.Errorf("%s: sliding_window %d, soft-caps %g and %g: want none or positive", path, c.SlidingWindow, c.AttnSoftCap, c.FinalSoftCap)
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 || c.HeadDim > 1<<12 || c.Heads%c.KVHeads != 0 {
		return nil, hfArch{}, fmt.Errorf("%s: head_dim %d, %d heads, %d key/value heads: want an even head_dim and key/value heads dividing the heads", path, c.HeadDim, c.Heads, c.KVHeads)
	}
	if !(c.RopeTheta > 0) || !(c.RMSNormEps > 0) || math.IsInf(c.RopeTheta, 0) {
		return nil, hfArch{}, fmt.Errorf("%s: rope_theta %g, rms_norm_eps %g: want positive", path, c.RopeTheta, c.RMSNormEps)
	}
	return &c, arch, nil
}

// checkGemma3 checks that the model's local layers are those the loader
// runs: every sixth layer global, the others over a sliding window with
// rotary base 10000.
func (c *hfConfig) checkGemma3() error {
	if c.RopeLocalBase != 0 && c.RopeLocalBase != 10000 {
		return fmt.Errorf("rope_local_base_freq %g: Gemma 3's local layers turn with base 10000", c.RopeLocalBase)
	}
	if c.SlidingPattern != 0 && c.SlidingPattern != 6 {
		return fmt.Errorf("sliding_window_pattern %d: Gemma 3 has a global layer every sixth", c.SlidingPattern)
	}
	if c.LayerTypes != nil && len(c.LayerTypes) != c.Layers {
		return fmt.Errorf("layer_types of %d layers, num_hidden_layers %d", len(c.LayerTypes), c.Layers)
	}
	for i, t := range c.LayerTypes {
		if want := map[bool]string{true: "full_attention", false: "sliding_attention"}[(i+1)%6 == 0]; t != want {
			return fmt.Errorf("layer_types[%d] %q: Gemma 3 has a global layer every sixth (want %q)", i, t, want)
		}
	}
	if c.SlidingWindow <= 0 {
		return fmt.Errorf("sliding_window %d: Gemma 3's local layers need one", c.SlidingWindow)
	}
	return nil
}

// ropeKVs and ropeFreqs are the metadata and the rope_freqs tensor of
// config.json's rope_scaling: linear scaling as GGUF's key, Llama 3's
// frequency-dependent scaling as one factor per rotary frequency (each
// frequency divided by its factor: 1 for short wavelengths, factor for
// long ones, and between them a smooth blend).
func (c *hfConfig) ropeScaling(arch string) ([]KV, []float32, error) {
	s := c.RopeScaling
	if s == nil {
		return nil, nil, nil
	}
	kind := s.RopeType
	if kind == "" {
		kind = s.Type
	}
	switch kind {
	case "", "default":
		return nil, nil, nil
	case "linear":
		if !(s.Factor > 0 && s.Factor <= 1<<16) {
			return nil, nil, fmt.Errorf("rope_scaling: linear factor %g", s.Factor)
		}
		return []KV{
			{Key: arch + ".rope.scaling.type", Value: Str("linear")},
			{Key: arch + ".rope.scaling.factor", Value: F32(float32(s.Factor))},
		}, nil, nil
	case "llama3":
		if !(s.Factor >= 1) || !(s.LowFreq > 0) || !(s.HighFreq > s.LowFreq) || !(s.OriginalMaxPE > 0) {
			return nil, nil, fmt.Errorf("rope_scaling: llama3 with factor %g, low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %g", s.Factor, s.LowFreq, s.HighFreq, s.OriginalMaxPE)
		}
		lowWave, highWave := s.OriginalMaxPE/s.LowFreq, s.OriginalMaxPE/s.HighFreq
		out := make([]float32, c.HeadDim/2)
		for i := range out {
			freq := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
			wave := 2 * math.Pi / freq
			switch {
			case wave < highWave:
				out[i] = 1
			case wave > lowWave:
				out[i] = float32(s.Factor)
			default:
				smooth := (s.OriginalMaxPE/wave - s.LowFreq) / (s.HighFreq - s.LowFreq)
				out[i] = float32(1 / ((1-smooth)/s.Factor + smooth))
			}
		}
		return nil, out, nil
	}
	return nil, nil, fmt.Errorf("rope_scaling of type %q is not supported (linear and llama3 are)", kind)
}

// hfTensor is one tensor ConvertHF writes: the safetensors tensor it comes
// from, its GGUF name and shape, and whether its rows are reordered.
type hfTensor struct {
	src   *SafeTensor
	name  string
	rows  int // of the GGUF matrix (1 for a vector)
	cols  int
	heads int // >0: reorder the rows of each of this many heads
	// stack, when set, are the experts' matrices (src the first of them)
	// that make one GGUF tensor of [cols, rows, experts].
	stack []*SafeTensor
	// plusOne: a Gemma norm, written as F32 values 1+w.
	plusOne bool
}

// kernelsDType is the kernels' type of a safetensors dtype ggmlOf takes.
func kernelsDType(dtype string) kernels.DType {
	switch dtype {
	case "F16":
		return kernels.F16
	case "BF16":
		return kernels.BF16
	}
	return kernels.F32
}

// ggmlOf is the GGUF type of a safetensors dtype ConvertHF takes.
func ggmlOf(dtype string) (GGMLType, int, bool) {
	switch dtype {
	case "F32":
		return GGMLF32, 4, true
	case "F16":
		return GGMLF16, 2, true
	case "BF16":
		return GGMLBF16, 2, true
	}
	return 0, 0, false
}

// hfTensors maps the tensors of a model of config c from Hugging Face's
// names to GGUF's, checking each one's type and shape.
func hfTensors(st *SafeTensors, c *hfConfig, arch hfArch) ([]hfTensor, error) {
	var out []hfTensor
	get := func(src string, rows, cols int) (*SafeTensor, error) {
		t, ok := st.Tensor(src)
		if !ok {
			return nil, fmt.Errorf("tensor %s missing", src)
		}
		if _, _, ok := ggmlOf(t.DType); !ok {
			return nil, fmt.Errorf("tensor %s is %s: want F32, F16 or BF16", src, t.DType)
		}
		want := []int{rows, cols}
		if rows == 1 {
			want = []int{cols}
		}
		if !slices.Equal(t.Shape, want) {
			return nil, fmt.Errorf("tensor %s has shape %v, want %v", src, t.Shape, want)
		}
		return t, nil
	}
	add := func(src, dst string, rows, cols, heads int, optional bool) error {
		if _, ok := st.Tensor(src); !ok && optional {
			return nil
		}
		t, err := get(src, rows, cols)
		if err != nil {
			return err
		}
		out = append(out, hfTensor{src: t, name: dst, rows: rows, cols: cols, heads: heads})
		return nil
	}
	// stack adds the experts' matrices named by name(e) as one tensor.
	stack := func(name func(e int) string, dst string, rows, cols int) error {
		ts := make([]*SafeTensor, c.Experts)
		for e := range ts {
			t, err := get(name(e), rows, cols)
			if err != nil {
				return err
			}
			if e > 0 && t.DType != ts[0].DType {
				return fmt.Errorf("tensor %s is %s, expert 0's is %s", t.Name, t.DType, ts[0].DType)
			}
			ts[e] = t
		}
		out = append(out, hfTensor{src: ts[0], name: dst, rows: rows, cols: cols, stack: ts})
		return nil
	}
	// The language model's tensors are under model., or in a multimodal
	// checkpoint under the name its transformers version gave them.
	pre := "model."
	if arch.text {
		pre = ""
		for _, p := range []string{"language_model.model.", "model.language_model."} {
			if _, ok := st.Tensor(p + "embed_tokens.weight"); ok {
				pre = p
			}
		}
		if pre == "" {
			return nil, fmt.Errorf("no language model's tensors (language_model.model.embed_tokens.weight or model.language_model.embed_tokens.weight)")
		}
	}
	emb, ok := st.Tensor(pre + "embed_tokens.weight")
	if !ok || len(emb.Shape) != 2 {
		return nil, fmt.Errorf("tensor %sembed_tokens.weight missing or not a matrix", pre)
	}
	vocab, dim, hd := emb.Shape[0], c.HiddenSize, c.HeadDim
	if c.VocabSize != 0 && c.VocabSize != vocab {
		return nil, fmt.Errorf("vocab_size %d, but %sembed_tokens.weight has %d rows", c.VocabSize, pre, vocab)
	}
	qd, kv := c.Heads*hd, c.KVHeads*hd
	qh, kh := 0, 0
	if arch.permute {
		qh, kh = c.Heads, c.KVHeads
	}
	if err := add(pre+"embed_tokens.weight", tnEmbedding, vocab, dim, 0, false); err != nil {
		return nil, err
	}
	type tensor struct {
		src, dst   string
		rows, cols int
		heads      int
		optional   bool
	}
	for i := range c.Layers {
		p, q := pre+"layers."+strconv.Itoa(i)+".", "blk."+strconv.Itoa(i)+"."
		ts := []tensor{
			{"self_attn.o_proj.weight", "attn_output.weight", dim, qd, 0, false},
			{"self_attn.q_proj.bias", "attn_q.bias", 1, qd, qh, true},
			{"self_attn.k_proj.bias", "attn_k.bias", 1, kv, kh, true},
			{"self_attn.v_proj.bias", "attn_v.bias", 1, kv, 0, true},
			{"self_attn.q_norm.weight", "attn_q_norm.weight", 1, hd, 0, !arch.qkNorm},
			{"self_attn.k_norm.weight", "attn_k_norm.weight", 1, hd, 0, !arch.qkNorm},
		}
		if arch.fused {
			ts = append(ts, tensor{"self_attn.qkv_proj.weight", "attn_qkv.weight", qd + 2*kv, dim, 0, false})
		} else {
			ts = append(ts, tensor{"self_attn.q_proj.weight", "attn_q.weight", qd, dim, qh, false},
				tensor{"self_attn.k_proj.weight", "attn_k.weight", kv, dim, kh, false},
				tensor{"self_attn.v_proj.weight", "attn_v.weight", kv, dim, 0, false})
		}
		norms := []tensor{{"input_layernorm.weight", "attn_norm.weight", 1, dim, 0, false}}
		if arch.gemma != 0 {
			norms = append(norms, tensor{"post_attention_layernorm.weight", "post_attention_norm.weight", 1, dim, 0, false},
				tensor{"pre_feedforward_layernorm.weight", "ffn_norm.weight", 1, dim, 0, false},
				tensor{"post_feedforward_layernorm.weight", "post_ffw_norm.weight", 1, dim, 0, false})
		} else {
			norms = append(norms, tensor{"post_attention_layernorm.weight", "ffn_norm.weight", 1, dim, 0, false})
		}
		for _, t := range ts {
			n := len(out)
			if err := add(p+t.src, q+t.dst, t.rows, t.cols, t.heads, t.optional); err != nil {
				return nil, err
			}
			if len(out) > n && strings.HasSuffix(t.src, "norm.weight") {
				out[n].plusOne = arch.gemma != 0
			}
		}
		for _, t := range norms {
			if err := add(p+t.src, q+t.dst, t.rows, t.cols, 0, false); err != nil {
				return nil, err
			}
			out[len(out)-1].plusOne = arch.gemma != 0
		}
		if err := hfFFN(p, q, c, arch, add, stack); err != nil {
			return nil, err
		}
	}
	if err := add(pre+"norm.weight", tnFinalNorm, 1, dim, 0, false); err != nil {
		return nil, err
	}
	out[len(out)-1].plusOne = arch.gemma != 0
	tied := arch.gemma != 0 || c.TieWordEmbedding != nil && *c.TieWordEmbedding
	if _, ok := st.Tensor("lm_head.weight"); ok || !tied {
		if err := add("lm_head.weight", tnOutput, vocab, dim, 0, false); err != nil {
			return nil, fmt.Errorf("%w (and tie_word_embeddings is not true)", err)
		}
	}
	return out, nil
}

// hfFFN adds the feed-forward tensors of the block whose Hugging Face
// names start with p and GGUF's with q: a dense SwiGLU, or a router and
// the experts' three matrices, each stacked over the experts.
func hfFFN(p, q string, c *hfConfig, arch hfArch,
	add func(src, dst string, rows, cols, heads int, optional bool) error,
	stack func(name func(e int) string, dst string, rows, cols int) error) error {
	dim := c.HiddenSize
	if arch.fused {
		if err := add(p+"mlp.gate_up_proj.weight", q+"ffn_up.weight", 2*c.Intermediate, dim, 0, false); err != nil {
			return err
		}
		return add(p+"mlp.down_proj.weight", q+"ffn_down.weight", dim, c.Intermediate, 0, false)
	}
	if arch.moe == "" {
		for _, t := range []struct {
			src, dst   string
			rows, cols int
		}{
			{"mlp.gate_proj.weight", "ffn_gate.weight", c.Intermediate, dim},
			{"mlp.up_proj.weight", "ffn_up.weight", c.Intermediate, dim},
			{"mlp.down_proj.weight", "ffn_down.weight", dim, c.Intermediate},
		} {
			if err := add(p+t.src, q+t.dst, t.rows, t.cols, 0, false); err != nil {
				return err
			}
		}
		return nil
	}
	m := p + arch.moe + "."
	if err := add(m+"gate.weight", q+tnRouter, c.Experts, dim, 0, false); err != nil {
		return err
	}
	names := [3]string{"gate_proj", "up_proj", "down_proj"}
	if arch.moe == "block_sparse_moe" {
		names = [3]string{"w1", "w3", "w2"}
	}
	h := c.MoEHidden
	for i, t := range []struct {
		dst        string
		rows, cols int
	}{{tnExpGate, h, dim}, {tnExpUp, h, dim}, {tnExpDown, dim, h}} {
		name := func(e int) string { return m + "experts." + strconv.Itoa(e) + "." + names[i] + ".weight" }
		if err := stack(name, q+t.dst, t.rows, t.cols); err != nil {
			return err
		}
	}
	return nil
}

// spec is t as WriteGGUF takes it: its rows reordered and its experts
// stacked as it is written, and with to set (a matrix's rows filling whole
// blocks of it; not the router, which GGUF tools keep as it is) each row
// re-encoded in type *to.
func (t *hfTensor) spec(to *kernels.DType) TensorSpec {
	typ, size, _ := ggmlOf(t.src.DType)
	dims := []uint64{uint64(t.cols), uint64(t.rows)}
	if t.rows == 1 {
		dims = dims[:1]
	}
	if t.stack != nil {
		dims = append(dims, uint64(len(t.stack)))
	}
	s := TensorSpec{Name: t.name, Type: typ, Dims: dims}
	if t.plusOne {
		s.Type = GGMLF32
		s.Write = func(w io.Writer) error {
			v := make([]float32, t.cols)
			kernels.Decode(v, kernelsDType(t.src.DType), t.src.Data)
			b := make([]byte, 4*len(v))
			for i, x := range v {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(1+x))
			}
			_, err := w.Write(b)
			return err
		}
		return s
	}
	recode := to != nil && t.rows > 1 && *to != kernelsDType(t.src.DType) && !strings.HasSuffix(t.name, tnRouter) &&
		(!to.Quantized() || t.cols%kernels.QK == 0)
	if !recode && t.stack == nil && t.heads == 0 {
		s.Data = t.src.Data
		return s
	}
	// rows walks the stored rows in GGUF's order. A bias (rows 1) is one
	// value a row.
	rowBytes, rows := t.cols*size, t.rows
	if t.rows == 1 {
		rowBytes, rows = size, t.cols
	}
	srcs := t.stack
	if srcs == nil {
		srcs = []*SafeTensor{t.src}
	}
	walk := func(yield func([]byte) error) error {
		for _, src := range srcs {
			for j := range rows {
				r := j
				if t.heads > 0 {
					// Row 2i+s of a head in the adjacent layout is row
					// s·hd/2+i of it in the NeoX layout.
					hd := rows / t.heads
					h, k := j/hd, j%hd
					r = h*hd + (k%2)*hd/2 + k/2
				}
				if err := yield(src.Data[r*rowBytes : (r+1)*rowBytes]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if !recode {
		s.Write = func(w io.Writer) error {
			return walk(func(row []byte) error {
				_, err := w.Write(row)
				return err
			})
		}
		return s
	}
	s.Type, _ = GGMLTypeOf(*to)
	from := kernelsDType(t.src.DType)
	s.Write = func(w io.Writer) error {
		v := make([]float32, t.cols)
		var buf []byte
		return walk(func(row []byte) error {
			kernels.Decode(v, from, row)
			buf = kernels.Encode(buf[:0], *to, v)
			_, err := w.Write(buf)
			return err
		})
	}
	return s
}

// ConvertHF writes the Hugging Face model in dir (config.json, safetensors,
// tokenizer.json) to w as a GGUF file that Load runs, each tensor in its
// own type.
func ConvertHF(dir string, w io.Writer) error { return convertHF(dir, w, nil) }

// ConvertHFTo is ConvertHF with the weight matrices in type dt (F32, F16,
// BF16, Q8_0 or Q4_0), as ConvertWeights would make them: those whose rows
// do not fill whole blocks of a quantized dt, the router and the norms
// keep their own.
func ConvertHFTo(dir string, w io.Writer, dt kernels.DType) error {
	switch dt {
	case kernels.F32, kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0:
	default:
		return fmt.Errorf("checkpoints: convert %s to %s: want f32, f16, bf16, q8_0 or q4_0", dir, dt)
	}
	return convertHF(dir, w, &dt)
}

// convertHF is ConvertHF, with the matrices in *to when to is set.
func convertHF(dir string, w io.Writer, to *kernels.DType) error {
	c, arch, err := readHFConfig(dir)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	st, err := OpenSafeTensors(dir)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	defer st.Close()
	tensors, err := hfTensors(st, c, arch)
	if err != nil {
		return fmt.Errorf("checkpoints: %s: %w", dir, err)
	}
	vocab := tensors[0].rows
	a := arch.gguf
	kvs := []KV{
		{Key: "general.architecture", Value: Str(a)},
		{Key: "general.name", Value: Str(filepath.Base(filepath.Clean(dir)))},
		{Key: a + ".vocab_size", Value: U32(uint32(vocab))},
		{Key: a + ".context_length", Value: U32(uint32(c.MaxPositions))},
		{Key: a + ".embedding_length", Value: U32(uint32(c.HiddenSize))},
		{Key: a + ".block_count", Value: U32(uint32(c.Layers))},
		{Key: a + ".feed_forward_length", Value: U32(uint32(c.Intermediate))},
		{Key: a + ".attention.head_count", Value: U32(uint32(c.Heads))},
		{Key: a + ".attention.head_count_kv", Value: U32(uint32(c.KVHeads))},
		{Key: a + ".attention.key_length", Value: U32(uint32(c.HeadDim))},
		{Key: a + ".attention.value_length", Value: U32(uint32(c.HeadDim))},
		{Key: a + ".rope.dimension_count", Value: U32(uint32(c.HeadDim))},
		{Key: a + ".rope.freq_base", Value: F32(float32(c.RopeTheta))},
		{Key: a + ".attention.layer_norm_rms_epsilon", Value: F32(float32(c.RMSNormEps))},
	}
	for _, kv := range []struct {
		key string
		v   float64
	}{{"attn_logit_softcapping", c.AttnSoftCap}, {"final_logit_softcapping", c.FinalSoftCap}} {
		if kv.v > 0 {
			kvs = append(kvs, KV{Key: a + "." + kv.key, Value: F32(float32(kv.v))})
		}
	}
	if c.SlidingWindow > 0 && (arch.gemma != 0 || arch.fused) {
		kvs = append(kvs, KV{Key: a + ".attention.sliding_window", Value: U32(uint32(c.SlidingWindow))})
	}
	if arch.moe != "" {
		kvs = append(kvs,
			KV{Key: a + ".expert_count", Value: U32(uint32(c.Experts))},
			KV{Key: a + ".expert_used_count", Value: U32(uint32(c.ExpertsUsed))},
			KV{Key: a + ".expert_feed_forward_length", Value: U32(uint32(c.MoEHidden))})
		if c.NormTopK != nil {
			kvs = append(kvs, KV{Key: a + ".expert_weights_norm", Value: Bool(*c.NormTopK)})
		}
	}
	ropeKVs, freqs, err := c.ropeScaling(a)
	if err != nil {
		return fmt.Errorf("checkpoints: %s: %w", filepath.Join(dir, hfConfigFile), err)
	}
	kvs = append(kvs, ropeKVs...)
	tok, err := HFTokenizerKVs(dir, vocab)
	if err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	kvs = append(kvs, tok...)
	specs := make([]TensorSpec, 0, len(tensors)+1)
	for i := range tensors {
		specs = append(specs, tensors[i].spec(to))
	}
	if freqs != nil {
		var b bytes.Buffer
		if err := binary.Write(&b, binary.LittleEndian, freqs); err != nil {
			return err
		}
		specs = append(specs, TensorSpec{Name: tnRopeFreqs, Type: GGMLF32, Dims: []uint64{uint64(len(freqs))}, Data: b.Bytes()})
	}
	if err := WriteGGUF(w, kvs, specs); err != nil {
		return fmt.Errorf("checkpoints: write %s as GGUF: %w", dir, err)
	}
	return nil
}
