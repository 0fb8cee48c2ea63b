package model_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// archFixtures are the F32 fixtures of models/arch the runtime runs, with
// the largest logit difference from llama.cpp allowed (the fixtures'
// README: 1e-3, and 3e-2 for gemma2, whose reference GELU goes through an
// fp16 table while ours is exact). prefill, when not 0, is the bound for
// the prompt run as one batch: the float GEMM sums each product in one
// running total, the matrix-vector products (a position at a time) in
// several, and qwen3moe's q/k norms (weights around 3) make its attention
// sharp enough to carry that difference past 1e-3 at one position (1.2e-3;
// 1.8e-4 a position at a time; the README's float64 implementation is
// itself 6.4e-4 from llama.cpp).
var archFixtures = []struct {
	name         string
	tol, prefill float64
}{
	{"llama3", 1e-3, 0},
	{"qwen2", 1e-3, 0},
	{"qwen3", 1e-3, 0},
	{"gemma2", 3e-2, 0},
	{"phi3", 1e-3, 0},
	{"mixtral", 1e-3, 0},
	{"qwen3moe", 1e-3, 2e-3},
	{"deepseek2", 1e-3, 0},
}

// TestArchFixturesF32 runs the 48-token prompt of each F32 fixture as one
// prefill and compares the logits at every position with llama.cpp's; the
// top-1 must agree wherever llama.cpp's top-1 leads its second by more
// than twice the tolerance. It runs the prompt again one position at a
// time (decode), whose logits must be as close. It then decodes 24 tokens
// greedily, one at a time, and requires llama.cpp's continuation, up to a
// step where our own margin is within twice the tolerance (there either
// choice is right).
func TestArchFixturesF32(t *testing.T) {
	for _, f := range archFixtures {
		t.Run(f.name, func(t *testing.T) {
			name := f.name + ".F32"
			path := testmodels.ArchModel(t, name)
			ref := testmodels.Arch(t, name)
			if len(ref.Greedy.Threads1) == 0 {
				t.Fatalf("%s: no greedy continuation in its reference", name)
			}
			want := testmodels.ArchLogits(t, name)
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
			prefillTol := f.tol
			if f.prefill != 0 {
				prefillTol = f.prefill
			}
			maxDiff, meanDiff := logitDiff(got, want)
			t.Logf("%s: prefill: max |Δlogit| %.3g, mean %.3g over %d×%d", f.name, maxDiff, meanDiff, n, v)
			if !(maxDiff <= prefillTol) {
				t.Errorf("prefill: max |Δlogit| %.4g > %g", maxDiff, prefillTol)
			}

			// The prompt a position at a time, in a cache of its own.
			steps := make([]float32, n*v)
			sc, err := e.NewCache(0, c.Layers, c.Context)
			if err != nil {
				t.Fatal(err)
			}
			row := make([]float32, c.Dim)
			for p, id := range ref.InputIDs {
				if err := e.Embed(row, []int{id}); err != nil {
					t.Fatal(err)
				}
				if err := e.Forward(sc, row, 1); err != nil {
					t.Fatal(err)
				}
				if err := e.Logits(steps[p*v:(p+1)*v], row); err != nil {
					t.Fatal(err)
				}
			}
			maxDiff, meanDiff = logitDiff(steps, want)
			t.Logf("%s: decode: max |Δlogit| %.3g, mean %.3g", f.name, maxDiff, meanDiff)
			if !(maxDiff <= f.tol) {
				t.Errorf("decode: max |Δlogit| %.4g > %g", maxDiff, f.tol)
			}
			checked := 0
			for p := range n {
				w1, margin := testmodels.Top2(want[p*v : (p+1)*v])
				g1, _ := testmodels.Top2(got[p*v : (p+1)*v])
				if float64(margin) > 2*prefillTol {
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
			next, _ := testmodels.Top2(got[(n-1)*v:])
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
				next, margin = testmodels.Top2(logits)
				if float64(margin) <= 2*f.tol {
					t.Logf("greedy stops being checked at token %d: our margin %.3g", i+1, margin)
					return
				}
			}
		})
	}
}

// TestArchErrors: a GGUF of an architecture the runtime does not run, and
// deepseek2 with its latent attention's up-projection of the wrong shape,
// each fail with one line naming the file and what is wrong.
func TestArchErrors(t *testing.T) {
	g, err := checkpoints.OpenGGUF(testmodels.Path(t, "arch/deepseek2.F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, c := range []struct {
		name, arch, tensor string
		want               string
	}{
		{"mamba", "mamba", "", `architecture "mamba" is not supported (this runtime runs deepseek2, gemma2, gemma3, llama, phi3, qwen2, qwen3, qwen3moe)`},
		{"kv_b", "deepseek2", "blk.1.attn_kv_b.weight", "tensor blk.1.attn_kv_b.weight has dims [256 384], want [256, 512] (the single attn_kv_b is read"},
	} {
		var kvs []checkpoints.KV
		for _, kv := range g.KVs {
			if kv.Key == "general.architecture" {
				kv.Value = checkpoints.Str(c.arch)
			}
			kvs = append(kvs, kv)
		}
		var specs []checkpoints.TensorSpec
		for _, ti := range g.Tensors {
			s := checkpoints.TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data}
			if ti.Name == c.tensor {
				s.Dims, s.Data = []uint64{256, 384}, s.Data[:256*384*4]
			}
			specs = append(specs, s)
		}
		p, err := loadWritten(t, c.name, kvs, specs)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line naming the file and %q", c.name, err, c.want)
		}
	}
}

// logitDiff is the largest and the mean |got - want|.
func logitDiff(got, want []float32) (maxDiff, mean float64) {
	var sum float64
	for i := range got {
		d := math.Abs(float64(got[i] - want[i]))
		sum += d
		maxDiff = max(maxDiff, d)
	}
	return maxDiff, sum / float64(len(got))
}

// TestArchTrainingRefused: training refuses an architecture whose backward
// it lacks, naming it, while inference runs it (TestArchFixturesF32).
func TestArchTrainingRefused(t *testing.T) {
	for _, c := range []struct{ fixture, want string }{
		{"qwen2", "architecture qwen2 yet (its backward lacks q/k/v biases)"},
		{"gemma2", "architecture gemma2 yet (its backward lacks the gelu activation"},
		{"mixtral", "architecture llama yet (its backward lacks a mixture of experts)"},
		{"qwen3moe", "architecture qwen3moe yet (its backward lacks a mixture of experts, q/k norms)"},
		{"deepseek2", "architecture deepseek2 yet (its backward lacks a query scale, a mixture of experts, latent attention"},
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

// TestExpertsForwardRows: a batch of decode steps of several sequences
// through a mixture of experts, whose rows the layer groups by expert,
// gives each row what it gets alone: bit for bit for 3 rows (no expert
// sees more rows than the row-by-row products take), to rounding for 9
// (the float GEMM's, which qwen3moe's sharp attention carries to 2e-4;
// an expert chosen differently would move a row by far more).
func TestExpertsForwardRows(t *testing.T) {
	for _, fixture := range []string{"mixtral", "qwen3moe", "deepseek2"} {
		m, err := checkpoints.Load(testmodels.Path(t, "arch/"+fixture+".F32.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		ids := testmodels.Arch(t, fixture+".F32").InputIDs
		c := &m.Weights.Config
		d := c.Dim
		e := model.NewEngine(m.Weights, openBackend(t, 2), model.KVType(kernels.F32))
		for _, rows := range []int{3, 9} {
			var batch, alone []*model.Cache
			for i := range rows {
				// Sequence i has seen the first i+1 prompt tokens.
				for _, dst := range []*[]*model.Cache{&batch, &alone} {
					ca, err := e.NewCache(0, c.Layers, 32)
					if err != nil {
						t.Fatal(err)
					}
					x := make([]float32, (i+1)*d)
					if err := e.Embed(x, ids[:i+1]); err != nil {
						t.Fatal(err)
					}
					if err := e.Forward(ca, x, i+1); err != nil {
						t.Fatal(err)
					}
					*dst = append(*dst, ca)
				}
			}
			x := make([]float32, rows*d)
			if err := e.Embed(x, ids[20:20+rows]); err != nil {
				t.Fatal(err)
			}
			want := append([]float32(nil), x...)
			if err := e.ForwardRows(batch, x); err != nil {
				t.Fatal(err)
			}
			for i, ca := range alone {
				if err := e.Forward(ca, want[i*d:(i+1)*d], 1); err != nil {
					t.Fatal(err)
				}
			}
			for j := range x {
				diff := math.Abs(float64(x[j] - want[j]))
				if rows <= 3 && diff != 0 || diff > 1e-3*(1+math.Abs(float64(want[j]))) {
					t.Fatalf("%s, %d rows: value %d (row %d) is %g, alone %g", fixture, rows, j, j/d, x[j], want[j])
				}
			}
		}
		m.Close()
	}
}

// loadWritten writes a GGUF of kvs and specs as name.gguf in a temporary
// directory and loads it: it returns the file's path and the load's
// error (a model that loads is closed).
func loadWritten(t *testing.T, name string, kvs []checkpoints.KV, specs []checkpoints.TensorSpec) (string, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".gguf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoints.WriteGGUF(f, kvs, specs); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := checkpoints.Load(p)
	if err == nil {
		m.Close()
	}
	return p, err
}
