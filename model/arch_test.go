package model_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// archRef is the part of a fixture's NAME.ref.json the tests read.
type archRef struct {
	Architecture string `json:"architecture"`
	InputIDs     []int  `json:"input_ids"`
	NVocab       int    `json:"n_vocab"`
	Greedy       struct {
		Threads1 []int `json:"threads_1"`
	} `json:"greedy"`
}

// archFixtures are the F32 fixtures of models/arch the runtime runs, with
// the largest logit difference from llama.cpp allowed (the fixtures'
// README: 1e-3, and 3e-2 for gemma2, whose reference GELU goes through an
// fp16 table while ours is exact).
var archFixtures = []struct {
	name string
	tol  float64
}{
	{"llama3", 1e-3},
	{"qwen2", 1e-3},
	{"qwen3", 1e-3},
	{"gemma2", 3e-2},
	{"phi3", 1e-3},
}

// TestArchFixturesF32 runs the 48-token prompt of each F32 fixture as one
// prefill and compares the logits at every position with llama.cpp's; the
// top-1 must agree wherever llama.cpp's top-1 leads its second by more
// than twice the tolerance. It then decodes 24 tokens greedily, one at a
// time, and requires llama.cpp's continuation, up to a step where our own
// margin is within twice the tolerance (there either choice is right).
func TestArchFixturesF32(t *testing.T) {
	for _, f := range archFixtures {
		t.Run(f.name, func(t *testing.T) {
			name := "arch/" + f.name + ".F32"
			path := testmodels.Path(t, name+".gguf")
			ref := readArchRef(t, testmodels.Path(t, name+".ref.json"))
			want := readF32s(t, testmodels.Path(t, name+".logits.f32"))
			m, err := checkpoints.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got := m.Weights.Config.Arch; got != ref.Architecture {
				t.Fatalf("config arch %q, the file's %q", got, ref.Architecture)
			}
			be := openBackend(t, 1)
			e := model.NewEngine(m.Weights, be, model.KVType(kernels.F32))
			c := &m.Weights.Config
			n, v := len(ref.InputIDs), c.Vocab
			if v != ref.NVocab || len(want) != n*v {
				t.Fatalf("vocab %d, reference %d with %d logits for %d positions", v, ref.NVocab, len(want), n)
			}
			cache, err := e.NewCache(0, c.Layers, c.Context)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, n*c.Dim)
			if err := e.Embed(x, ref.InputIDs); err != nil {
				t.Fatal(err)
			}
			if err := e.Forward(cache, x, n); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, n*v)
			if err := e.LogitsRows(got, x, n); err != nil {
				t.Fatal(err)
			}
			var maxDiff, sumDiff float64
			for i := range got {
				d := math.Abs(float64(got[i] - want[i]))
				sumDiff += d
				maxDiff = max(maxDiff, d)
			}
			t.Logf("%s: max |Δlogit| %.3g, mean %.3g over %d×%d", f.name, maxDiff, sumDiff/float64(len(got)), n, v)
			if !(maxDiff <= f.tol) {
				t.Errorf("max |Δlogit| %.4g > %g", maxDiff, f.tol)
			}
			checked := 0
			for p := range n {
				w1, margin := top2(want[p*v : (p+1)*v])
				g1, _ := top2(got[p*v : (p+1)*v])
				if float64(margin) > 2*f.tol {
					checked++
					if g1 != w1 {
						t.Errorf("position %d: top-1 %d, llama.cpp's %d (its margin %.3g)", p, g1, w1, margin)
					}
				}
			}
			if checked < n/2 {
				t.Errorf("only %d of %d positions have a clear top-1", checked, n)
			}

			// Greedy decoding from the prompt, one position at a time.
			next, _ := top2(got[(n-1)*v:])
			logits := make([]float32, v)
			for i, w := range ref.Greedy.Threads1 {
				if next != w {
					t.Fatalf("greedy token %d: %d, llama.cpp's %d", i, next, w)
				}
				if i == len(ref.Greedy.Threads1)-1 {
					break
				}
				row := x[:c.Dim]
				if err := e.Embed(row, []int{next}); err != nil {
					t.Fatal(err)
				}
				if err := e.Forward(cache, row, 1); err != nil {
					t.Fatal(err)
				}
				if err := e.Logits(logits, row); err != nil {
					t.Fatal(err)
				}
				var margin float32
				next, margin = top2(logits)
				if float64(margin) <= 2*f.tol {
					t.Logf("greedy stops being checked at token %d: our margin %.3g", i+1, margin)
					return
				}
			}
		})
	}
}

// TestArchErrors: a GGUF of an architecture the runtime does not run, and
// one with a tensor of the wrong shape, each fail with one line naming the
// file and what is wrong.
func TestArchErrors(t *testing.T) {
	for _, c := range []struct{ fixture, want string }{
		{"deepseek2", `architecture "deepseek2" is not supported (this runtime runs gemma2, llama, phi3, qwen2, qwen3)`},
		{"mixtral", "architecture llama with 4 experts"},
	} {
		p := testmodels.Path(t, "arch/"+c.fixture+".F32.gguf")
		_, err := checkpoints.Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line naming the file and %q", c.fixture, err, c.want)
		}
	}
}

// top2 returns the argmax of x and its lead over the second largest value.
func top2(x []float32) (int, float32) {
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

func readArchRef(t *testing.T, path string) *archRef {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r archRef
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(r.InputIDs) == 0 || len(r.Greedy.Threads1) == 0 {
		t.Fatalf("%s: no input_ids or greedy.threads_1", path)
	}
	return &r
}

func readF32s(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%4 != 0 {
		t.Fatalf("%s: %d bytes, not whole float32s", path, len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestArchTrainingRefused: training refuses an architecture whose backward
// it lacks, naming it, while inference runs it (TestArchFixturesF32).
func TestArchTrainingRefused(t *testing.T) {
	for _, c := range []struct{ fixture, want string }{
		{"qwen2", "architecture qwen2 yet (its backward lacks q/k/v biases)"},
		{"gemma2", "architecture gemma2 yet (its backward lacks the gelu activation"},
	} {
		m, err := checkpoints.Load(testmodels.Path(t, "arch/"+c.fixture+".F32.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		e := model.NewEngine(m.Weights, openBackend(t, 1))
		_, err = e.NewActivations(0, m.Weights.Config.Layers, 1, 4)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: training activations: error %v, want %q", c.fixture, err, c.want)
		}
		m.Close()
	}
}
