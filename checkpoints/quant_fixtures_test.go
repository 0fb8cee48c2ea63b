package checkpoints

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
)

// llama3Types are the weight types of the llama3 fixture ladder in
// shared/models/arch.
var llama3Types = []string{"F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0",
	"Q4_K_M", "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "Q3_K_M", "Q2_K"}

// fixtureRef is the part of a fixture's NAME.ref.json that checks the
// weights: per tensor, the SHA-256 of its float32 dequantization and its
// first four values.
type fixtureRef struct {
	Tensors []struct {
		Name   string    `json:"name"`
		Type   string    `json:"type"`
		Ne     []uint64  `json:"ne"`
		SHA256 string    `json:"dequant_f32_sha256"`
		First4 []float32 `json:"first4"`
	} `json:"tensors"`
}

// TestFixtureDequantChecksums dequantizes every tensor of every llama3
// fixture and every other architecture's quantized one with kernels.Decode and compares the SHA-256 of the float32
// values with llama.cpp's: the block layouts, bit for bit, independently
// of any architecture.
func TestFixtureDequantChecksums(t *testing.T) {
	var names []string
	for _, wt := range llama3Types {
		names = append(names, "llama3."+wt)
	}
	for _, a := range []string{"qwen2", "qwen3", "mixtral", "qwen3moe", "gemma2", "phi3", "deepseek2"} {
		names = append(names, a+".Q4_K_M")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path := testmodels.Path(t, filepath.Join("arch", name+".gguf"))
			raw, err := os.ReadFile(strings.TrimSuffix(path, ".gguf") + ".ref.json")
			if err != nil {
				t.Fatal(err)
			}
			var ref fixtureRef
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatalf("%s.ref.json: %v", name, err)
			}
			g, err := OpenGGUF(path)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if len(ref.Tensors) != len(g.Tensors) {
				t.Errorf("%d tensors in the file, %d in the reference", len(g.Tensors), len(ref.Tensors))
			}
			for _, rt := range ref.Tensors {
				ti, ok := g.Tensor(rt.Name)
				if !ok {
					t.Errorf("tensor %s missing", rt.Name)
					continue
				}
				if ti.Type.String() != rt.Type {
					t.Errorf("%s: type %s, reference %s", rt.Name, ti.Type, rt.Type)
				}
				if !ti.Supported {
					t.Errorf("%s: type %s not supported", rt.Name, ti.Type)
					continue
				}
				vals := make([]float32, ti.Elements())
				kernels.Decode(vals, ti.DType, ti.Data)
				sum := sha256.Sum256(kernels.F32Bytes(vals))
				if got := hex.EncodeToString(sum[:]); got != rt.SHA256 {
					t.Errorf("%s (%s): dequantized sha256 %s, reference %s; first values %v, reference %v",
						rt.Name, rt.Type, got, rt.SHA256, vals[:4], rt.First4)
				}
			}
		})
	}
}
