package checkpoints

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// TestExpertsLoad: the mixtral and qwen3moe fixtures load as mixtures of
// experts, their routing read from the keys (qwen3moe's expert width from
// expert_feed_forward_length, not feed_forward_length), each expert a view
// of its stacked tensor in the file, not a copy.
func TestExpertsLoad(t *testing.T) {
	for _, c := range []struct {
		fixture               string
		experts, used, hidden int
	}{{"mixtral", 4, 2, 64}, {"qwen3moe", 8, 2, 32}} {
		m, err := Load(testmodels.Path(t, "arch/"+c.fixture+".F32.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := m.Weights.Config
		if cfg.Experts != c.experts || cfg.ExpertsUsed != c.used || cfg.ExpertHidden != c.hidden || !cfg.ExpertNorm {
			t.Errorf("%s: %d experts, %d used, %d wide, norm %v; want %d, %d, %d, true",
				c.fixture, cfg.Experts, cfg.ExpertsUsed, cfg.ExpertHidden, cfg.ExpertNorm, c.experts, c.used, c.hidden)
		}
		for li, l := range m.Weights.Layers {
			x := l.Experts
			if x == nil || l.W1 != nil {
				t.Fatalf("%s layer %d: experts %v, dense gate %v", c.fixture, li, x != nil, l.W1 != nil)
			}
			ti, _ := m.GGUF.Tensor("blk.0.ffn_down_exps.weight")
			if li == 0 {
				last := x.Down[c.experts-1]
				if want := unsafe.Pointer(&ti.Data[len(ti.Data)-len(last.Data)]); unsafe.Pointer(&last.Data[0]) != want {
					t.Errorf("%s: the last expert's down matrix is not a view of the file", c.fixture)
				}
			}
		}
		m.Close()
	}
}

// TestExpertsLoadErrors: a mixture of experts whose keys or stacked
// tensors are wrong fails with one line naming the file and what is wrong.
func TestExpertsLoadErrors(t *testing.T) {
	g, err := OpenGGUF(testmodels.Path(t, "arch/mixtral.F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, c := range []struct {
		name string
		kv   func(KV) (KV, bool)         // the file's keys, changed or dropped
		t    func(TensorSpec) TensorSpec // its tensors, changed
		want string
	}{
		{"no used count", func(kv KV) (KV, bool) { return kv, kv.Key != "llama.expert_used_count" }, nil,
			"llama.expert_used_count"},
		{"used > count", func(kv KV) (KV, bool) {
			if kv.Key == "llama.expert_used_count" {
				kv.Value = U32(5)
			}
			return kv, true
		}, nil, "llama.expert_used_count = 5 is outside [1, 4]"},
		{"three experts stacked", nil, func(s TensorSpec) TensorSpec {
			if s.Name == "blk.1.ffn_up_exps.weight" {
				s.Dims = []uint64{256, 64, 3}
				s.Data = s.Data[:len(s.Data)/4*3]
			}
			return s
		}, "tensor blk.1.ffn_up_exps.weight has dims [256 64 3], want [256, 64, 4]"},
		{"no experts key", func(kv KV) (KV, bool) { return kv, kv.Key != "llama.expert_count" }, nil,
			"tensor blk.0.ffn_gate_inp.weight is a router, but llama.expert_count is missing or 0"},
	} {
		var kvs []KV
		for _, kv := range g.KVs {
			if c.kv != nil {
				var keep bool
				if kv, keep = c.kv(kv); !keep {
					continue
				}
			}
			kvs = append(kvs, kv)
		}
		var specs []TensorSpec
		for _, ti := range g.Tensors {
			s := TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data}
			if c.t != nil {
				s = c.t(s)
			}
			specs = append(specs, s)
		}
		var buf bytes.Buffer
		if err := WriteGGUF(&buf, kvs, specs); err != nil {
			t.Fatal(err)
		}
		_, err := LoadBytes(buf.Bytes())
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", c.name, err, c.want)
		}
	}
}

// TestExpertsConvert: converting a mixture of experts converts every
// expert (the router stays float32), and the llama writer refuses it.
func TestExpertsConvert(t *testing.T) {
	m, err := Load(testmodels.Path(t, "arch/mixtral.F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w, err := ConvertWeights(m.Weights, kernels.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	x := w.Layers[1].Experts
	if x.Router.Type != kernels.F32 || x.Gate[3].Type != kernels.Q8_0 || x.Down[0].Type != kernels.Q8_0 {
		t.Errorf("converted: router %s, expert 3 gate %s, expert 0 down %s; want f32, q8_0, q8_0", x.Router.Type, x.Gate[3].Type, x.Down[0].Type)
	}
	kvs, _ := LlamaKVs(m.Weights.Config, "")
	err = WriteWeights(&bytes.Buffer{}, m.Weights, kvs)
	if err == nil || !strings.Contains(err.Error(), "layer 0 has routed experts") {
		t.Errorf("writing a mixture of experts: error %v, want one about routed experts", err)
	}
}

// TestDeepseek2Load: deepseek2's keys become latent attention (heads of 96
// with 32 rotated, values of 64), YaRN's frequency factors (1 for the fast
// pairs up to the factor 4 for the slow ones) and attention factor, and a
// router of sigmoids with a choosing bias, renormalised and scaled by 2.5,
// beside a shared expert; its leading block keeps the dense FFN.
func TestDeepseek2Load(t *testing.T) {
	m, err := Load(testmodels.Path(t, "arch/deepseek2.F32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w := m.Weights
	c := w.Config
	if c.HeadDim() != 96 || c.ValueDim() != 64 || c.RotaryDim() != 32 || c.QLoRA != 128 || c.KVLoRA != 256 {
		t.Errorf("heads %d, values %d, rotated %d, ranks %d and %d; want 96, 64, 32, 128, 256", c.HeadDim(), c.ValueDim(), c.RotaryDim(), c.QLoRA, c.KVLoRA)
	}
	ms := 1 + 0.1*math.Log(4)
	if want := ms * ms / math.Sqrt(96); math.Abs(float64(c.QueryScale)-want) > 1e-6 {
		t.Errorf("query scale %g, want %g", c.QueryScale, want)
	}
	if len(w.RopeFreqs) != 16 || w.RopeFreqs[0] != 1 || w.RopeFreqs[15] != 4 || !(w.RopeFreqs[3] > 1 && w.RopeFreqs[3] < 4) {
		t.Errorf("yarn factors %v: want 16 from 1 to 4", w.RopeFreqs)
	}
	if c.ExpertGating != model.GateSigmoid || c.ExpertScale != 2.5 || !c.ExpertNorm || c.ExpertsUsed != 2 || c.ExpertHidden != 64 {
		t.Errorf("router: gating %d, scale %g, norm %v, %d used of %d wide", c.ExpertGating, c.ExpertScale, c.ExpertNorm, c.ExpertsUsed, c.ExpertHidden)
	}
	l0, l1 := w.Layers[0], w.Layers[1]
	if l0.Experts != nil || l0.W1 == nil || l1.Experts == nil || len(l1.Experts.Bias) != 4 || l1.Experts.SharedGate == nil || l1.Experts.SharedGate.Rows != 64 {
		t.Errorf("block 0 should be dense and block 1 routed, with a bias of 4 and a shared expert 64 wide")
	}
	if l0.MLA == nil || l0.Wq != nil || l0.Wk != nil {
		t.Errorf("block 0 should have latent attention only")
	}
}
