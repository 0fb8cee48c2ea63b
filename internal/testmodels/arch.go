package testmodels

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// ArchRef is what a fixture of the models' arch folder says llama.cpp
// computed on it (arch/NAME.ref.json; the folder's README): the prompt,
// the greedy continuation and, per tensor, its dequantized values'
// checksum.
type ArchRef struct {
	Architecture string `json:"architecture"`
	PromptText   string `json:"prompt_text"` // input_ids are BOS, then this text twice, cut short
	InputIDs     []int  `json:"input_ids"`
	NVocab       int    `json:"n_vocab"`
	Greedy       struct {
		Threads1 []int `json:"threads_1"`
	} `json:"greedy"`
	Tensors []ArchTensor `json:"tensors"`
}

// ArchTensor is one tensor of a fixture: its name, type and shape, the
// SHA-256 of its float32 dequantization and its first four values.
type ArchTensor struct {
	Name   string    `json:"name"`
	Type   string    `json:"type"`
	Ne     []uint64  `json:"ne"`
	SHA256 string    `json:"dequant_f32_sha256"`
	First4 []float32 `json:"first4"`
}

// ArchModel returns the path of the fixture name ("llama3.Q4_K_M"), a GGUF
// of the arch folder; absent, the test skips or fails as Path says.
func ArchModel(tb testing.TB, name string) string {
	tb.Helper()
	return Path(tb, "arch/"+name+".gguf")
}

// Arch reads the reference of the fixture name ("llama3.F32"). A reference
// without a prompt fails the test.
func Arch(tb testing.TB, name string) *ArchRef {
	tb.Helper()
	p := Path(tb, "arch/"+name+".ref.json")
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	var r ArchRef
	if err := json.Unmarshal(b, &r); err != nil {
		tb.Fatalf("%s: %v", p, err)
	}
	if len(r.InputIDs) == 0 {
		tb.Fatalf("%s: no input_ids", p)
	}
	return &r
}

// ArchLogits reads llama.cpp's logits of the fixture name at every
// position of its prompt (arch/NAME.logits.f32: little-endian float32,
// position after position).
func ArchLogits(tb testing.TB, name string) []float32 {
	tb.Helper()
	p := Path(tb, "arch/"+name+".logits.f32")
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	if len(b)%4 != 0 {
		tb.Fatalf("%s: %d bytes, not whole float32s", p, len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// Top2 returns the index of the largest value of x and its lead over the
// second largest: where the lead is small, two implementations may pick
// differently without either being wrong.
func Top2(x []float32) (int, float32) {
	best, second := 0, float32(math.Inf(-1))
	for i, v := range x[1:] {
		if v > x[best] {
			best, second = i+1, x[best]
		} else if v > second {
			second = v
		}
	}
	return best, x[best] - second
}
