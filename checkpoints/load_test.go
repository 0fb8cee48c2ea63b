package checkpoints

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

func load(t *testing.T, name string, opts ...Option) *Model {
	t.Helper()
	m, err := Load(testmodels.Path(t, name), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// loadBuiltin loads the built-in model (models/tales.gguf).
func loadBuiltin(t *testing.T) *Model {
	t.Helper()
	m, err := Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// matrices lists every matrix of w with a name, in a fixed order.
func matrices(w *model.Weights) map[string]*kernels.Matrix {
	out := map[string]*kernels.Matrix{"embedding": w.Embedding, "output": w.Output}
	for i, l := range w.Layers {
		p := "layer" + string(rune('0'+i)) + "."
		for n, m := range map[string]*kernels.Matrix{"wq": l.Wq, "wk": l.Wk, "wv": l.Wv, "wo": l.Wo, "w1": l.W1, "w2": l.W2, "w3": l.W3} {
			out[p+n] = m
		}
	}
	return out
}

func norms(w *model.Weights) map[string][]float32 {
	out := map[string][]float32{"final": w.FinalNorm}
	for i, l := range w.Layers {
		p := "layer" + string(rune('0'+i)) + "."
		out[p+"attn"] = l.AttnNorm
		out[p+"ffn"] = l.FFNNorm
	}
	return out
}

func decodeAll(m *kernels.Matrix) []float32 {
	out := make([]float32, m.Rows*m.Cols)
	for r := 0; r < m.Rows; r++ {
		m.RowF32(out[r*m.Cols:(r+1)*m.Cols], r)
	}
	return out
}

func TestLoadStories260KBinAndGGUF(t *testing.T) {
	bin := load(t, "stories260K.bin")
	gg := load(t, "stories260K.gguf")
	if bin.Format != FormatLlama2CV0 || gg.Format != FormatGGUF {
		t.Fatalf("formats %q %q", bin.Format, gg.Format)
	}
	if bin.Tokenizer != nil {
		t.Error("llama2.c checkpoint has a tokenizer")
	}
	if gg.Tokenizer == nil || gg.Tokenizer.VocabSize() != 512 || gg.Tokenizer.BOS() != 1 || gg.Tokenizer.EOS() != 2 || !gg.Tokenizer.AddBOS() {
		t.Fatalf("gguf tokenizer %v", gg.Tokenizer)
	}
	cb, cg := bin.Weights.Config, gg.Weights.Config
	if cb.Context != 512 || cg.Context != 2048 {
		t.Errorf("contexts %d %d", cb.Context, cg.Context)
	}
	cb.Context, cg.Context = 0, 0
	cg.SharedClassifier = true // the GGUF stores an explicit copy
	if cb != cg {
		t.Fatalf("configs differ:\n bin  %+v\n gguf %+v", cb, cg)
	}
	if bin.Weights.Output != bin.Weights.Embedding || !bin.Weights.Config.SharedClassifier {
		t.Error("bin classifier not shared")
	}
	mb, mg := matrices(bin.Weights), matrices(gg.Weights)
	for name, a := range mb {
		b := mg[name]
		if a.Type != kernels.F32 || b.Type != kernels.F32 || a.Rows != b.Rows || a.Cols != b.Cols || !bytes.Equal(a.Data, b.Data) {
			t.Errorf("%s differs", name)
		}
	}
	nb, ng := norms(bin.Weights), norms(gg.Weights)
	for name, a := range nb {
		if !equalBits(a, ng[name]) {
			t.Errorf("norm %s differs", name)
		}
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestLoadStories260KQ80(t *testing.T) {
	ref := load(t, "stories260K.bin")
	for _, deq := range []bool{false, true} {
		var opts []Option
		if deq {
			opts = append(opts, DequantizeQ8())
		}
		q := load(t, "stories260K_q80.bin", opts...)
		if q.Format != FormatLlama2CV2 {
			t.Fatalf("format %q", q.Format)
		}
		if q.Weights.Config != ref.Weights.Config {
			t.Fatalf("configs differ: %+v vs %+v", q.Weights.Config, ref.Weights.Config)
		}
		nr, nq := norms(ref.Weights), norms(q.Weights)
		for name, a := range nr {
			if !equalBits(a, nq[name]) {
				t.Errorf("norm %s differs", name)
			}
		}
		mr, mq := matrices(ref.Weights), matrices(q.Weights)
		worst := 0.0
		for name, a := range mr {
			b := mq[name]
			wantType := kernels.Q8_0
			if deq || b.Cols%32 != 0 {
				wantType = kernels.F32
			}
			if b.Type != wantType {
				t.Errorf("dequantize=%v: %s is %s, want %s", deq, name, b.Type, wantType)
			}
			fa, fb := decodeAll(a), decodeAll(b)
			// The step of a group is its largest magnitude / 127; groups
			// of 32 run through the flattened tensor.
			for g := 0; g < len(fa); g += 32 {
				var amax float64
				for _, v := range fa[g : g+32] {
					amax = max(amax, math.Abs(float64(v)))
				}
				step := amax / 127
				if step == 0 {
					continue
				}
				for j := g; j < g+32; j++ {
					worst = max(worst, math.Abs(float64(fa[j]-fb[j]))/step)
				}
			}
		}
		// The f16 rounding of a Q8_0 scale moves a value by at most
		// 127·2^-11 of a step.
		limit := 0.5 + 1e-4
		if !deq {
			limit = 0.5 + 127.0/2048
		}
		t.Logf("dequantize=%v: worst error %.5f of a step", deq, worst)
		if worst > limit {
			t.Errorf("dequantize=%v: worst error %.5f of a step, want ≤ %.4f", deq, worst, limit)
		}
	}
}

func TestLoadLlama2TinyRandom(t *testing.T) {
	m := load(t, "llama-2-tiny-random.gguf")
	c := m.Weights.Config
	want := model.Config{Arch: "llama", Dim: 8, Hidden: 32, Layers: 1, Heads: 2, KVHeads: 2, Vocab: 32000, Context: 4096,
		RopeTheta: c.RopeTheta, RopeStyle: kernels.RopeAdjacent, NormEps: c.NormEps, SharedClassifier: false}
	if c != want {
		t.Fatalf("config %+v", c)
	}
	if m.Weights.Output == m.Weights.Embedding || m.Weights.Output.Type != kernels.F16 || m.Weights.Embedding.Type != kernels.F16 || m.Weights.Layers[0].Wq.Type != kernels.F16 {
		t.Fatal("want separate F16 classifier and F16 matrices")
	}
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 32000 {
		t.Fatal("tokenizer")
	}
	ids := m.Tokenizer.Encode("Hello world", tokenizer.EncodeOptions{BOS: true})
	if len(ids) < 2 || ids[0] != 1 {
		t.Fatalf("encode: %v", ids)
	}
}

func TestLoadQwen3Fixture(t *testing.T) {
	m := load(t, "tokenizers/qwen3-tokenizer-random.gguf")
	c := m.Weights.Config
	if c.Vocab != 151669 || c.RopeTheta != 1e6 || c.NormEps != float32(1e-6) || c.Dim != 8 {
		t.Fatalf("config %+v", c)
	}
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != 151669 || m.Tokenizer.AddBOS() {
		t.Fatal("tokenizer")
	}
	if got := m.Tokenizer.Encode("The quick brown fox", tokenizer.EncodeOptions{}); len(got) != 4 || got[0] != 785 || got[3] != 38835 {
		t.Fatalf("encode: %v", got)
	}
}

func TestLoadTokenizer(t *testing.T) {
	tk, err := LoadTokenizer(testmodels.Path(t, "tok512.bin"), 512)
	if err != nil || tk.VocabSize() != 512 {
		t.Fatalf("tok512: %v", err)
	}
	tg, err := LoadTokenizer(testmodels.Path(t, "stories260K.gguf"), 512)
	if err != nil || tg.VocabSize() != 512 {
		t.Fatalf("gguf: %v", err)
	}
	for _, s := range []string{"Lily wanted to", "Once upon a time"} {
		a := tk.Encode(s, tokenizer.EncodeOptions{BOS: true})
		b := tg.Encode(s, tokenizer.EncodeOptions{BOS: true})
		if !equalInts(a, b) {
			t.Errorf("%q: tok512 %v, gguf %v", s, a, b)
		}
	}
	// A llama2.c vocabulary for a model of another size is refused.
	if _, err := LoadTokenizer(testmodels.Path(t, "tok512.bin"), 32000); err == nil {
		t.Error("tok512.bin taken for a vocabulary of 32000")
	}
}

// TestLoadTokenizerFromGGUF: LoadTokenizer reads a GGUF's vocabulary,
// the same one Load gives with the model, and refuses it for a model of
// another size, as a llama2.c file of the wrong size is.
func TestLoadTokenizerFromGGUF(t *testing.T) {
	m := loadBuiltin(t)
	n := m.Weights.Config.Vocab
	tk, err := LoadTokenizer(testmodels.Builtin(t), n)
	if err != nil || tk.VocabSize() != n {
		t.Fatalf("built-in model's vocabulary of %d: %v", n, err)
	}
	for _, s := range []string{testmodels.BuiltinPrompt, "Lily wanted to", "naïve ünïcode"} {
		a := tk.Encode(s, tokenizer.EncodeOptions{BOS: true})
		b := m.Tokenizer.Encode(s, tokenizer.EncodeOptions{BOS: true})
		if !equalInts(a, b) || len(a) < 2 {
			t.Errorf("%q: LoadTokenizer %v, Load %v", s, a, b)
		}
	}
	for _, size := range []int{32000, n - 1} {
		if _, err := LoadTokenizer(testmodels.Builtin(t), size); err == nil {
			t.Errorf("the built-in model's vocabulary taken for one of %d", size)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLoadBadMagic(t *testing.T) {
	p := t.TempDir() + "/junk.bin"
	if err := os.WriteFile(p, []byte("PK\x03\x04 this is a zip file, not a model at all........"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "50 4b 03 04") {
		t.Fatalf("error %v", err)
	}
	t.Log(err)
}
