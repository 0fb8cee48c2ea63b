package train

import (
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
)

// TestTrainerRefusesExperts: a trainer for a mixture of experts, by
// either method, fails at once with an error naming the architecture and
// what the backward lacks.
func TestTrainerRefusesExperts(t *testing.T) {
	m, err := checkpoints.Load(testmodels.Path(t, "arch/mixtral.F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	seq := Sequence{Tokens: make([]int, 17), Weights: make([]float32, 16)}
	for _, method := range []string{MethodFull, MethodLoRA} {
		j := DefaultJob("mixtral", "random")
		j.Method, j.SeqLen, j.BatchTokens = method, 16, 16
		_, err := NewTrainer(j, m.Weights, be, []Sequence{seq}, nil)
		const want = "training does not support architecture llama yet (its backward lacks a mixture of experts)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", method, err, want)
		}
	}
}
