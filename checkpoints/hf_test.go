package checkpoints

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// hfNames maps GGUF's names of a block's tensors to Hugging Face's.
var hfNames = map[string]string{
	"attn_norm.weight":   "input_layernorm.weight",
	"attn_q.weight":      "self_attn.q_proj.weight",
	"attn_k.weight":      "self_attn.k_proj.weight",
	"attn_v.weight":      "self_attn.v_proj.weight",
	"attn_output.weight": "self_attn.o_proj.weight",
	"attn_q.bias":        "self_attn.q_proj.bias",
	"attn_k.bias":        "self_attn.k_proj.bias",
	"attn_v.bias":        "self_attn.v_proj.bias",
	"attn_q_norm.weight": "self_attn.q_norm.weight",
	"attn_k_norm.weight": "self_attn.k_norm.weight",
	"ffn_norm.weight":    "post_attention_layernorm.weight",
	"ffn_gate.weight":    "mlp.gate_proj.weight",
	"ffn_up.weight":      "mlp.up_proj.weight",
	"ffn_down.weight":    "mlp.down_proj.weight",
	"attn_qkv.weight":    "self_attn.qkv_proj.weight",
}

// gemmaNames are Gemma 2's names where they differ from hfNames.
var gemmaNames = map[string]string{
	"post_attention_norm.weight": "post_attention_layernorm.weight",
	"ffn_norm.weight":            "pre_feedforward_layernorm.weight",
	"post_ffw_norm.weight":       "post_feedforward_layernorm.weight",
}

// neoxRows reorders the rows (of rowBytes each) of a matrix of heads
// heads from GGUF's adjacent rotary layout back to Hugging Face's NeoX
// one: row s·hd/2+i of a head is row 2i+s of it in GGUF.
func neoxRows(data []byte, heads, rowBytes int) []byte {
	out := make([]byte, len(data))
	rows := len(data) / rowBytes
	hd := rows / heads
	for h := range heads {
		for s := range 2 {
			for i := range hd / 2 {
				dst, src := h*hd+s*hd/2+i, h*hd+2*i+s
				copy(out[dst*rowBytes:(dst+1)*rowBytes], data[src*rowBytes:(src+1)*rowBytes])
			}
		}
	}
	return out
}

// writeHFModel lays the GGUF model m out in dir as Hugging Face publishes
// a model of architecture archName: config.json (with rope, when set),
// model.safetensors in two shards with their index, and its tokenizer.
func writeHFModel(t testing.TB, dir string, m *Model, archName string, permute bool, rope map[string]any) {
	t.Helper()
	c := m.Weights.Config
	g := m.GGUF
	// The module of a block's experts, and its matrices' names.
	moe, expNames := "", map[string]string{}
	switch archName {
	case "MixtralForCausalLM":
		moe, expNames = "block_sparse_moe", map[string]string{tnExpGate: "w1", tnExpUp: "w3", tnExpDown: "w2"}
	case "Qwen3MoeForCausalLM":
		moe, expNames = "mlp", map[string]string{tnExpGate: "gate_proj", tnExpUp: "up_proj", tnExpDown: "down_proj"}
	}
	cfg := map[string]any{
		"architectures":           []string{archName},
		"hidden_size":             c.Dim,
		"intermediate_size":       c.Hidden,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"head_dim":                c.HeadDim(),
		"vocab_size":              c.Vocab,
		"max_position_embeddings": c.Context,
		"rms_norm_eps":            c.NormEps,
		"rope_theta":              c.RopeTheta,
		"tie_word_embeddings":     c.SharedClassifier,
		"torch_dtype":             "float32",
	}
	if rope != nil {
		cfg["rope_scaling"] = rope
	}
	gemma := strings.HasPrefix(archName, "Gemma")
	if gemma {
		cfg["attn_logit_softcapping"], cfg["final_logit_softcapping"] = c.AttnSoftCap, c.FinalSoftCap
		cfg["hidden_activation"], cfg["query_pre_attn_scalar"] = "gelu_pytorch_tanh", c.HeadDim()
	}
	if strings.HasPrefix(archName, "Gemma3") {
		cfg["rope_local_base_freq"], cfg["sliding_window_pattern"] = c.RopeLocalTheta, c.SlidingEvery
		if c.RopeScale != 0 {
			cfg["rope_scaling"] = map[string]any{"rope_type": "linear", "factor": c.RopeScale}
		}
	}
	if c.SlidingWindow > 0 {
		cfg["sliding_window"] = c.SlidingWindow
	}
	switch moe {
	case "block_sparse_moe":
		cfg["num_local_experts"], cfg["num_experts_per_tok"], cfg["intermediate_size"] = c.Experts, c.ExpertsUsed, c.ExpertHidden
	case "mlp":
		cfg["num_experts"], cfg["num_experts_per_tok"], cfg["moe_intermediate_size"], cfg["norm_topk_prob"] = c.Experts, c.ExpertsUsed, c.ExpertHidden, c.ExpertNorm
	}
	// A multimodal checkpoint: the text model's config inside, its tensors
	// under language_model.
	prefix := "model."
	if archName == "Gemma3ForConditionalGeneration" {
		text := maps.Clone(cfg)
		delete(text, "architectures")
		cfg = map[string]any{"architectures": []string{archName}, "text_config": text}
		prefix = "language_model.model."
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var tensors []SafeTensor
	for _, ti := range g.Tensors {
		name := ti.Name
		switch {
		case name == tnEmbedding:
			name = prefix + "embed_tokens.weight"
		case name == tnFinalNorm:
			name = prefix + "norm.weight"
		case name == tnOutput:
			name = "lm_head.weight"
		case name == tnRopeFreqs:
			continue
		case strings.HasPrefix(name, "blk."):
			rest := strings.TrimPrefix(name, "blk.")
			layer, tn, _ := strings.Cut(rest, ".")
			if tn == tnRouter {
				tensors = append(tensors, SafeTensor{Name: prefix + "layers." + layer + "." + moe + ".gate.weight", DType: "F32",
					Shape: []int{int(ti.Dims[1]), int(ti.Dims[0])}, Data: ti.Data})
				continue
			}
			if hf, ok := expNames[tn]; ok {
				// [cols, rows, experts]: one matrix an expert.
				cols, rows, n := int(ti.Dims[0]), int(ti.Dims[1]), int(ti.Dims[2])
				for e := range n {
					size := 4 * rows * cols
					tensors = append(tensors, SafeTensor{Name: prefix + "layers." + layer + "." + moe + ".experts." + strconv.Itoa(e) + "." + hf + ".weight",
						DType: "F32", Shape: []int{rows, cols}, Data: ti.Data[e*size : (e+1)*size]})
				}
				continue
			}
			hf, ok := hfNames[tn]
			if g, ok2 := gemmaNames[tn]; gemma && ok2 {
				hf, ok = g, true
			}
			if tn == "ffn_up.weight" && archName == "Phi3ForCausalLM" {
				hf = "mlp.gate_up_proj.weight"
			}
			if !ok {
				t.Fatalf("no Hugging Face name for %s", name)
			}
			name = prefix + "layers." + layer + "." + hf
		default:
			t.Fatalf("no Hugging Face name for %s", name)
		}
		if ti.Type != GGMLF32 {
			t.Fatalf("%s is %s; this test writes F32", ti.Name, ti.Type)
		}
		data := ti.Data
		shape := make([]int, len(ti.Dims))
		for i, d := range ti.Dims {
			shape[len(shape)-1-i] = int(d)
		}
		if gemma && strings.HasSuffix(name, "norm.weight") {
			// Gemma scales by 1+w, and GGUF stores 1+w.
			v := make([]byte, len(data))
			for i := 0; i < len(data); i += 4 {
				binary.LittleEndian.PutUint32(v[i:], math.Float32bits(math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))-1))
			}
			data = v
		}
		if permute && (strings.HasSuffix(name, "q_proj.weight") || strings.HasSuffix(name, "k_proj.weight")) {
			heads := c.Heads
			if strings.HasSuffix(name, "k_proj.weight") {
				heads = c.KVHeads
			}
			data = neoxRows(data, heads, 4*shape[1])
		}
		tensors = append(tensors, SafeTensor{Name: name, DType: "F32", Shape: shape, Data: data})
	}
	// Two shards, as large models come, with the index naming them.
	half := len(tensors) / 2
	index := map[string]any{"metadata": map[string]any{"total_size": 0}}
	weights := map[string]string{}
	for i, part := range [][]SafeTensor{tensors[:half], tensors[half:]} {
		file := "model-0000" + strconv.Itoa(i+1) + "-of-00002.safetensors"
		var buf bytes.Buffer
		if err := WriteSafeTensors(&buf, part, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, st := range part {
			weights[st.Name] = file
		}
	}
	index["weight_map"] = weights
	if b, err = json.Marshal(index); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	writeTokenizerJSON(t, dir, m)
}

// The rows of a head in GGUF's adjacent rotary layout, as llama.cpp's
// converter permutes Hugging Face's (reshape to [heads, 2, hd/2, cols],
// swap the middle axes): for two heads of 8, the GGUF rows are Hugging
// Face's 0 4 1 5 2 6 3 7, then 8 12 9 13 10 14 11 15.
func TestAdjacentRowsOfNeoX(t *testing.T) {
	const heads, hd = 2, 8
	src := make([]byte, heads*hd) // one byte a row: its Hugging Face index
	for i := range src {
		src[i] = byte(i)
	}
	ht := hfTensor{src: &SafeTensor{DType: "F32", Data: nil}, rows: heads * hd, cols: 1, heads: heads}
	// Rows of one F32 value, its Hugging Face index.
	data := make([]byte, 4*len(src))
	for i := range src {
		data[4*i] = src[i]
	}
	ht.src.Data = data
	var out bytes.Buffer
	if err := ht.spec(nil).Write(&out); err != nil {
		t.Fatal(err)
	}
	var got []int
	for i := 0; i < out.Len(); i += 4 {
		got = append(got, int(out.Bytes()[i]))
	}
	want := []int{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15}
	if !slices.Equal(got, want) {
		t.Errorf("GGUF rows from Hugging Face rows %v, want %v", got, want)
	}
	if back := neoxRows(out.Bytes(), heads, 4); !bytes.Equal(back, data) {
		t.Error("the test's NeoX reordering does not undo the converter's")
	}
}

// The F32 fixtures of Llama 3 (with its rope scaling), Qwen 2, Qwen 3 and
// the mixtures of experts Mixtral and Qwen 3 MoE, Phi-3 (fused
// projections) and Gemma 2 (norms stored as w for 1+w), laid out as Hugging Face publishes them, convert to a GGUF that loads
// to the fixture's config and, tensor for tensor, its bytes; Llama 3's
// rope factors, computed from config.json's rope_scaling, are the ones
// llama.cpp wrote into the fixture; and the converted model's tokenizer
// encodes the fixture's prompt to its ids.
func TestConvertHF(t *testing.T) {
	for _, tc := range []struct {
		fixture, arch string
		permute       bool
		rope          map[string]any
	}{
		{"llama3.F32", "LlamaForCausalLM", true, map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
		{"qwen2.F32", "Qwen2ForCausalLM", false, nil},
		{"qwen3.F32", "Qwen3ForCausalLM", false, nil},
		{"mixtral.F32", "MixtralForCausalLM", true, nil},
		{"qwen3moe.F32", "Qwen3MoeForCausalLM", false, nil},
		{"phi3.F32", "Phi3ForCausalLM", false, nil},
		{"gemma2.F32", "Gemma2ForCausalLM", false, nil},
		{"gemma3", "Gemma3ForCausalLM", false, nil},
		{"gemma3", "Gemma3ForConditionalGeneration", false, nil},
	} {
		t.Run(tc.fixture+"/"+tc.arch, func(t *testing.T) {
			src := hfSource(t, tc.fixture)
			defer src.Close()
			dir := t.TempDir()
			writeHFModel(t, dir, src, tc.arch, tc.permute, tc.rope)
			var buf bytes.Buffer
			if err := ConvertHF(dir, &buf); err != nil {
				t.Fatal(err)
			}
			got, err := LoadBytes(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Weights.Config != src.Weights.Config {
				t.Errorf("config %+v, the fixture's %+v", got.Weights.Config, src.Weights.Config)
			}
			for _, ti := range src.GGUF.Tensors {
				want := ti.Data
				gt, ok := got.GGUF.Tensor(ti.Name)
				if !ok {
					t.Errorf("tensor %s missing", ti.Name)
					continue
				}
				have := gt.Data
				if ti.Name == tnRopeFreqs {
					w, h := src.Weights.RopeFreqs, got.Weights.RopeFreqs
					for i := range w {
						if math.Abs(float64(w[i]-h[i])) > 1e-5*float64(w[i]) {
							t.Errorf("rope factor %d: %v, llama.cpp's %v", i, h[i], w[i])
						}
					}
					continue
				}
				if !bytes.Equal(have, want) {
					t.Errorf("tensor %s differs from the fixture's", ti.Name)
				}
			}
			if len(got.GGUF.Tensors) != len(src.GGUF.Tensors) {
				t.Errorf("%d tensors, the fixture has %d", len(got.GGUF.Tensors), len(src.GGUF.Tensors))
			}
			if tc.fixture == "gemma3" {
				return // no reference prompt: a synthetic model
			}
			ref := testmodels.Arch(t, tc.fixture)
			ids := got.Tokenizer.Encode(ref.PromptText, tokenizer.EncodeOptions{BOS: true})
			// A directory given to Load is converted in memory.
			fromDir, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer fromDir.Close()
			if fromDir.Weights.Config != src.Weights.Config || fromDir.Path != dir {
				t.Errorf("Load(dir): config %+v, path %q", fromDir.Weights.Config, fromDir.Path)
			}
			// The prompt is the text twice: its ids but the last (which
			// may join what follows) start the reference's.
			if n, want := len(ids)-1, ref.InputIDs; n < 8 || n > len(want) || !slices.Equal(ids[:n], want[:n]) {
				t.Errorf("prompt ids %v, llama.cpp's %v", ids, want)
			}
		})
	}
}

// hfSource loads the fixture name, or for "gemma3", which has none, a
// random-weight Gemma 3 of the shape shards' tests use (every sixth layer
// global, linear rope scaling).
func hfSource(t *testing.T, name string) *Model {
	t.Helper()
	if name != "gemma3" {
		m, err := Load(testmodels.ArchModel(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	c := model.Config{
		Arch: "gemma3", Dim: 48, Hidden: 64, Layers: 7, Heads: 3, KVHeads: 1, HeadSize: 24,
		Vocab: 320, Context: 64, RopeTheta: 1e6, RopeStyle: kernels.RopeNeoX, NormEps: 1e-6,
		SharedClassifier: true, Act: model.ActGELU, EmbedScale: float32(math.Sqrt(48)),
		SlidingWindow: 5, SlidingEvery: 6, RopeLocalTheta: 10000, RopeScale: 8,
	}
	var buf bytes.Buffer
	if err := SynthArch(&buf, c, "gemma3", 1); err != nil {
		t.Fatal(err)
	}
	m, err := LoadBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A directory that is not a model this converter knows is refused,
// saying what is wrong.
func TestConvertHFRefuses(t *testing.T) {
	src, err := Load(testmodels.ArchModel(t, "qwen2.F32"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	base := t.TempDir()
	writeHFModel(t, base, src, "Qwen2ForCausalLM", false, nil)
	cfg, err := os.ReadFile(filepath.Join(base, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		edit func(dir string)
		says string
	}{
		"no config":    {func(dir string) { os.Remove(filepath.Join(dir, "config.json")) }, "config.json"},
		"unknown arch": {func(dir string) { rewrite(t, dir, "config.json", cfg, "Qwen2ForCausalLM", "GPTNeoXForCausalLM") }, "GPTNeoXForCausalLM"},
		"heads": {func(dir string) {
			rewrite(t, dir, "config.json", cfg, `"num_attention_heads": 4`, `"num_attention_heads": 0`)
		}, "num_attention_heads"},
		"layers": {func(dir string) {
			rewrite(t, dir, "config.json", cfg, `"num_hidden_layers": 2`, `"num_hidden_layers": 3`)
		}, "model.layers.2"},
		"rope": {func(dir string) {
			rewrite(t, dir, "config.json", cfg, `"torch_dtype"`, `"rope_scaling": {"rope_type": "yarn", "factor": 4}, "torch_dtype"`)
		}, "yarn"},
		"no weights": {func(dir string) {
			os.Remove(filepath.Join(dir, "model.safetensors.index.json"))
		}, "safetensors"},
		"no tokenizer": {func(dir string) { os.Remove(filepath.Join(dir, "tokenizer.json")) }, "tokenizer.json"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base, dir)
			c.edit(dir)
			err := ConvertHF(dir, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.says) {
				t.Errorf("%v; want an error saying %q", err, c.says)
			}
		})
	}
}

// rewrite writes orig, with old replaced by new, to dir/name.
func rewrite(t *testing.T, dir, name string, orig []byte, old, new string) {
	t.Helper()
	if !bytes.Contains(orig, []byte(old)) {
		t.Fatalf("%s has no %q", name, old)
	}
	if err := os.WriteFile(filepath.Join(dir, name), bytes.Replace(orig, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the files of from into to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	es, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeTokenizerJSON writes m's SentencePiece vocabulary into dir as
// Llama 2's tokenizer.json and tokenizer_config.json.
func writeTokenizerJSON(t testing.TB, dir string, m *Model) {
	t.Helper()
	g := m.GGUF
	tokens, err := g.Strings("tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	scores, err := g.Float32s("tokenizer.ggml.scores")
	if err != nil {
		t.Fatal(err)
	}
	types, err := g.Int32s("tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"tokenizer.json": spTokenizerJSON(t, tokens, scores, types),
		"tokenizer_config.json": hfJSON(t, map[string]any{
			"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzHFConfig(f *testing.F) {
	f.Add([]byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
		"rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}`))
	f.Add([]byte(`{"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "max_position_embeddings": 128, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32}`))
	f.Add([]byte(`{"architectures": ["Gemma2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "head_dim": 16, "max_position_embeddings": 128, "query_pre_attn_scalar": 16, "sliding_window": 8}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, arch, err := parseHFConfig(data, "config.json")
		if err != nil {
			return
		}
		if c.HeadDim <= 0 || c.HeadDim%2 != 0 || c.Heads%c.KVHeads != 0 || arch.gguf == "" {
			t.Fatalf("accepted %+v for %s", c, arch.gguf)
		}
		kvs, freqs, err := c.ropeScaling(arch.gguf)
		if err != nil {
			return
		}
		if len(kvs) > 0 && freqs != nil {
			t.Fatal("rope scaling both as keys and as factors")
		}
		for _, f := range freqs {
			if !(f >= 1) || math.IsInf(float64(f), 0) {
				t.Fatalf("rope factor %v", f)
			}
		}
	})
}

// BenchmarkConvertHF converts a random-weight Llama of 24M parameters
// (F32, in two safetensors shards) to a GGUF file, against copying the
// shards' bytes to a file in the same run: the conversion's cost over the
// disk's.
func BenchmarkConvertHF(b *testing.B) {
	c := model.Config{Arch: "llama", Dim: 384, Hidden: 1024, Layers: 12, Heads: 6, KVHeads: 6, Vocab: 512, Context: 256,
		RopeTheta: 10000, RopeStyle: kernels.RopeAdjacent, NormEps: 1e-5}
	var buf bytes.Buffer
	if err := SynthArch(&buf, c, "bench", 1); err != nil {
		b.Fatal(err)
	}
	src, err := LoadBytes(buf.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	writeHFModel(b, dir, src, "LlamaForCausalLM", true, nil)
	var shards [][]byte
	var size int64
	for i := range 2 {
		data, err := os.ReadFile(filepath.Join(dir, "model-0000"+strconv.Itoa(i+1)+"-of-00002.safetensors"))
		if err != nil {
			b.Fatal(err)
		}
		shards, size = append(shards, data), size+int64(len(data))
	}
	out := filepath.Join(b.TempDir(), "out")
	b.Run("convert", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriterSize(f, 1<<20)
			if err := ConvertHF(dir, w); err != nil {
				b.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range shards {
				if _, err := f.Write(s); err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
		}
	})
}

// Converted to Q8_0 (or Q4_0) on the way, a model's matrices are those
// ConvertWeights makes of the fixture's, byte for byte: with Llama's rows
// reordered and Mixtral's experts stacked before they are quantized, and
// the router and norms kept as they are.
func TestConvertHFTo(t *testing.T) {
	for _, tc := range []struct {
		fixture, arch string
		permute       bool
		dt            kernels.DType
	}{
		{"mixtral.F32", "MixtralForCausalLM", true, kernels.Q8_0},
		{"qwen3.F32", "Qwen3ForCausalLM", false, kernels.Q4_0},
		{"gemma2.F32", "Gemma2ForCausalLM", false, kernels.BF16},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			src := hfSource(t, tc.fixture)
			defer src.Close()
			dir := t.TempDir()
			writeHFModel(t, dir, src, tc.arch, tc.permute, nil)
			var buf bytes.Buffer
			if err := ConvertHFTo(dir, &buf, tc.dt); err != nil {
				t.Fatal(err)
			}
			got, err := LoadBytes(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			want, err := ConvertWeights(src.Weights, tc.dt)
			if err != nil {
				t.Fatal(err)
			}
			same := func(what string, a, b *kernels.Matrix) {
				t.Helper()
				if a.Type != b.Type || !bytes.Equal(a.Data, b.Data) {
					t.Errorf("%s: %s, want ConvertWeights' %s (bytes equal: %v)", what, a.Type, b.Type, bytes.Equal(a.Data, b.Data))
				}
			}
			same("embedding", got.Weights.Embedding, want.Embedding)
			same("output", got.Weights.Output, want.Output)
			for i, l := range got.Weights.Layers {
				w := want.Layers[i]
				for k, m := range map[string][2]*kernels.Matrix{"q": {l.Wq, w.Wq}, "k": {l.Wk, w.Wk}, "v": {l.Wv, w.Wv}, "o": {l.Wo, w.Wo},
					"gate": {l.W1, w.W1}, "down": {l.W2, w.W2}, "up": {l.W3, w.W3}} {
					if m[0] != nil || m[1] != nil {
						same(fmt.Sprintf("layer %d %s", i, k), m[0], m[1])
					}
				}
				if x := l.Experts; x != nil {
					same(fmt.Sprintf("layer %d router", i), x.Router, w.Experts.Router)
					for e := range x.Gate {
						same(fmt.Sprintf("layer %d expert %d gate", i, e), x.Gate[e], w.Experts.Gate[e])
						same(fmt.Sprintf("layer %d expert %d down", i, e), x.Down[e], w.Experts.Down[e])
					}
				}
				if !slices.Equal(l.AttnNorm, w.AttnNorm) {
					t.Errorf("layer %d: attention norm differs", i)
				}
			}
		})
	}
	if err := ConvertHFTo(t.TempDir(), &bytes.Buffer{}, kernels.Q4_K); err == nil || !strings.Contains(err.Error(), "q8_0") {
		t.Errorf("convert to Q4_K: %v", err)
	}
}
