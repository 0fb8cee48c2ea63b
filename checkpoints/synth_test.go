package checkpoints

import (
	"bytes"
	"crypto/sha256"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model/tokenizer"
)

var allDTypes = []kernels.DType{kernels.F32, kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0}

func synthBytes(t testing.TB, shape string, dt kernels.DType, seed uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Synth(&b, shape, dt, seed); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSynthDeterministic(t *testing.T) {
	a := sha256.Sum256(synthBytes(t, "tiny", kernels.Q8_0, 7))
	b := sha256.Sum256(synthBytes(t, "tiny", kernels.Q8_0, 7))
	c := sha256.Sum256(synthBytes(t, "tiny", kernels.Q8_0, 8))
	if a != b {
		t.Fatal("same seed, different bytes")
	}
	if a == c {
		t.Fatal("different seeds, same bytes")
	}
}

func TestSynthRoundTrip(t *testing.T) {
	shapes := []string{"tiny", "stories260K"}
	if !testing.Short() {
		shapes = append(shapes, "stories15M")
	}
	for _, shape := range shapes {
		for _, dt := range allDTypes {
			t.Run(shape+"/"+dt.String(), func(t *testing.T) {
				data := synthBytes(t, shape, dt, 1)
				p := filepath.Join(t.TempDir(), "m.gguf")
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
				m, err := Load(p)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				want, _ := SynthConfig(shape)
				if m.Weights.Config != want {
					t.Fatalf("config %+v, want %+v", m.Weights.Config, want)
				}
				for name, mat := range matrices(m.Weights) {
					wt := dt
					if mat.Cols%dt.BlockLen() != 0 {
						wt = kernels.F32
					}
					if mat.Type != wt {
						t.Errorf("%s is %s, want %s", name, mat.Type, wt)
					}
				}
				if m.Weights.Output != m.Weights.Embedding {
					t.Error("classifier not shared")
				}
				// Weights have the intended spread.
				row := make([]float32, want.Dim)
				var ss float64
				for r := 0; r < 64; r++ {
					m.Weights.Layers[0].Wq.RowF32(row, r)
					for _, v := range row {
						ss += float64(v) * float64(v)
					}
				}
				if std := math.Sqrt(ss / float64(64*want.Dim)); std < 0.015 || std > 0.025 {
					t.Errorf("wq std %g, want about 0.02", std)
				}
				for _, v := range m.Weights.FinalNorm {
					if v < 0.9 || v > 1.1 {
						t.Fatalf("final norm value %g", v)
					}
				}
				tk := m.Tokenizer
				if tk == nil || tk.VocabSize() != want.Vocab {
					t.Fatal("no tokenizer")
				}
				ids := tk.Encode("Once upon a time", tokenizer.EncodeOptions{BOS: tk.AddBOS()})
				if ids[0] != 1 || tk.Decode(ids) != "Once upon a time" {
					t.Errorf("encode %v decode %q", ids, tk.Decode(ids))
				}
			})
		}
	}
}

func TestSynthUnknown(t *testing.T) {
	if err := Synth(&bytes.Buffer{}, "gpt-5", kernels.F32, 1); err == nil {
		t.Fatal("unknown shape: no error")
	}
	if len(SynthShapes()) != 5 || SynthShapes()[0] != "tiny" {
		t.Fatalf("shapes %v", SynthShapes())
	}
}

func TestSynthVocabUnique(t *testing.T) {
	for _, n := range []int{259, 320, 512, 32000, 40000} {
		toks, scores, types := SynthVocab(n)
		if len(toks) != n || len(scores) != n || len(types) != n {
			t.Fatalf("n=%d: lengths %d %d %d", n, len(toks), len(scores), len(types))
		}
		seen := map[string]bool{}
		for _, s := range toks {
			if seen[s] {
				t.Fatalf("n=%d: duplicate %q", n, s)
			}
			seen[s] = true
		}
	}
}
