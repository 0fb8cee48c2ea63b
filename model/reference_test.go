package model_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model"
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
	m, err := checkpoints.Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := model.NewEngine(m.Weights, openBackend(t, 0))
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

func TestStories260KReference(t *testing.T) {
	for _, name := range []string{"stories260K.bin", "stories260K.gguf"} {
		t.Run(name, func(t *testing.T) {
			p := testmodels.Path(t, name)
			if d := firstDiff(greedy(t, p, []int{1}, len(refFromBOS)), refFromBOS); d != "" {
				t.Errorf("from BOS: %s", d)
			}
			if d := firstDiff(greedy(t, p, refPromptIDs, len(refFromPrompt)), refFromPrompt); d != "" {
				t.Errorf("from the prompt: %s", d)
			}
		})
	}
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
