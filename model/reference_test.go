package model_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// The reference greedy continuations of stories260K (see the test models'
// README): from BOS, and from the prompt "Lily wanted to".
var (
	refFromBOS = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
		410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352}
	refPromptIDs  = []int{1, 317, 391, 266, 267}
	refFromPrompt = []int{298, 414, 353, 261, 273, 421, 433, 426, 338, 394, 261, 370, 268, 414, 444, 335, 261, 370, 268, 414}
)

func greedy(t *testing.T, path string, prompt []int, n int, opts ...checkpoints.Option) []int {
	t.Helper()
	return greedyKV(t, path, model.DefaultKVType, prompt, n, opts...)
}

// greedyKV is greedy with a KV cache of type kv.
func greedyKV(t *testing.T, path string, kv kernels.DType, prompt []int, n int, opts ...checkpoints.Option) []int {
	t.Helper()
	m, err := checkpoints.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := model.NewEngine(m.Weights, openBackend(t, 0), model.KVType(kv))
	var ids []int
	_, err = e.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: n}, func(id int) error {
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func firstDiff(got, want []int) string {
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			return fmt.Sprintf("differ at %d:\n got %v\nwant %v", i, got, want)
		}
	}
	return ""
}

// TestStories260KReference decodes the reference continuations with both
// KV cache types: rounding the cached keys and values to half precision
// changes none of the 40 + 20 greedy ids.
func TestStories260KReference(t *testing.T) {
	for _, name := range []string{"stories260K.bin", "stories260K.gguf"} {
		for _, kv := range []kernels.DType{kernels.F32, kernels.F16} {
			t.Run(name+"/"+kv.String(), func(t *testing.T) {
				p := testmodels.Path(t, name)
				if d := firstDiff(greedyKV(t, p, kv, []int{1}, len(refFromBOS)), refFromBOS); d != "" {
					t.Errorf("from BOS: %s", d)
				}
				if d := firstDiff(greedyKV(t, p, kv, refPromptIDs, len(refFromPrompt)), refFromPrompt); d != "" {
					t.Errorf("from the prompt: %s", d)
				}
			})
		}
	}
}

// TestKVHalfLogits feeds the built-in model's prompt and its greedy
// continuation through two engines, one with an f32 KV cache and one with
// an f16 cache, and compares the logits at every position: the largest
// difference must stay within kvHalfTol of the largest logit. The
// half-precision cache rounds each key and value by at most 2⁻¹¹
// relative; through the softmax and the six layers of the built-in model
// that moves the logits by about 10⁻⁴ of their scale.
func TestKVHalfLogits(t *testing.T) {
	const kvHalfTol = 1e-3
	m := loadTales(t)
	prompt := m.Tokenizer.Encode(testmodels.BuiltinPrompt, tokenizer.EncodeOptions{BOS: true})
	cont, _ := talesGreedy(t, m, kernels.F32, prompt, 64)
	be := openBackend(t, 1)
	cfg := m.Weights.Config
	var engines [2]*model.Engine
	var caches [2]*model.Cache
	for i, kv := range []kernels.DType{kernels.F32, kernels.F16} {
		engines[i] = model.NewEngine(m.Weights, be, model.KVType(kv))
		var err error
		if caches[i], err = engines[i].NewCache(0, cfg.Layers, cfg.Context); err != nil {
			t.Fatal(err)
		}
	}
	ids := append(slices.Clone(prompt), cont...)
	x := make([]float32, cfg.Dim)
	var logits [2][]float32
	worst := 0.0
	for p, id := range ids {
		for i, e := range engines {
			if err := e.Embed(x, []int{id}); err != nil {
				t.Fatal(err)
			}
			if err := e.Forward(caches[i], x, 1); err != nil {
				t.Fatal(err)
			}
			logits[i] = make([]float32, cfg.Vocab)
			if err := e.Logits(logits[i], x); err != nil {
				t.Fatal(err)
			}
		}
		var scale, diff float64
		for j, v := range logits[0] {
			scale = math.Max(scale, math.Abs(float64(v)))
			diff = math.Max(diff, math.Abs(float64(logits[1][j]-v)))
		}
		worst = math.Max(worst, diff/scale)
		if diff > kvHalfTol*scale {
			t.Errorf("position %d: f16 cache logits differ from f32 by %.3g of their scale %.3g", p, diff/scale, scale)
		}
	}
	t.Logf("largest difference: %.3g of the logits' scale over %d positions", worst, len(ids))
}

// TestStories260KQ8 runs the int8 checkpoint: its rows whose width is a
// multiple of 32 stay Q8_0 (the FFN's down projection, 172 wide, has groups
// that cross rows and is dequantized), activations are quantized on the
// fly, and the first 10 ids still match the f32 model. Fully dequantized,
// the first 20 match.
func TestStories260KQ8(t *testing.T) {
	p := testmodels.Path(t, "stories260K_q80.bin")
	if d := firstDiff(greedy(t, p, []int{1}, 10), refFromBOS[:10]); d != "" {
		t.Errorf("quantized: %s", d)
	}
	if d := firstDiff(greedy(t, p, []int{1}, 20, checkpoints.DequantizeQ8()), refFromBOS[:20]); d != "" {
		t.Errorf("dequantized: %s", d)
	}
}
