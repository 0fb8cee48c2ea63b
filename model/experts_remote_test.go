package model_test

import (
	"math"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// keepExperts returns a copy of w whose layers of experts hold only the
// experts of set (the others nil, as a server of some experts loads
// them); the matrices are shared.
func keepExperts(w *model.Weights, set model.ExpertSet) *model.Weights {
	out := *w
	out.Layers = make([]*model.Layer, len(w.Layers))
	for i, l := range w.Layers {
		if l == nil || l.Experts == nil {
			out.Layers[i] = l
			continue
		}
		cl, cx := *l, *l.Experts
		cx.Gate, cx.Up, cx.Down = slicesOf(cx.Gate, set), slicesOf(cx.Up, set), slicesOf(cx.Down, set)
		cl.Experts = &cx
		out.Layers[i] = &cl
	}
	return &out
}

func slicesOf(ms []*kernels.Matrix, set model.ExpertSet) []*kernels.Matrix {
	out := make([]*kernels.Matrix, len(ms))
	for i, m := range ms {
		if set.Has(i) {
			out[i] = m
		}
	}
	return out
}

// An engine whose weights hold the even experts of every layer, with the
// odd ones run by a second engine that holds only those (its
// RunExperts, the runner an expert server answers with), gives the
// prompt's hidden states of the engine that holds every expert, to float
// rounding (the held and the remote experts' outputs are summed in two
// groups); without a runner its forward pass fails, naming the layer.
func TestExpertsHeldElsewhere(t *testing.T) {
	for _, fixture := range []string{"mixtral", "qwen3moe"} {
		m, err := checkpoints.Load(testmodels.Path(t, "arch/"+fixture+".F32.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ids := testmodels.Arch(t, fixture+".F32").InputIDs
		c := &m.Weights.Config
		var even, odd model.ExpertSet = model.ExpertSet{}, model.ExpertSet{}
		for e := range c.Experts {
			if e%2 == 0 {
				even = even.With(e)
			} else {
				odd = odd.With(e)
			}
		}
		be := openBackend(t, 1)
		run := func(e *model.Engine) ([]float32, error) {
			ca, err := e.NewCache(0, c.Layers, len(ids))
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, len(ids)*c.Dim)
			if err := e.Embed(x, ids); err != nil {
				t.Fatal(err)
			}
			return x, e.Forward(ca, x, len(ids))
		}
		want, err := run(model.NewEngine(m.Weights, be))
		if err != nil {
			t.Fatal(err)
		}
		far := model.NewEngine(keepExperts(m.Weights, odd), be)
		got, err := run(model.NewEngine(keepExperts(m.Weights, even), be, model.RemoteExperts(far)))
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if d := math.Abs(float64(got[j] - want[j])); d > 1e-4*(1+math.Abs(float64(want[j]))) {
				t.Fatalf("%s: value %d (row %d) is %g with the odd experts elsewhere, %g with all here", fixture, j, j/c.Dim, got[j], want[j])
			}
		}
		if _, err := run(model.NewEngine(keepExperts(m.Weights, even), be)); err == nil || !strings.Contains(err.Error(), "layer ") {
			t.Errorf("%s: a forward pass without the odd experts nor a runner: %v, want an error naming the layer", fixture, err)
		}
		if err := far.RunExperts(0, make([]float32, c.Dim), 1, 1, []int32{0}, []float32{1}, make([]float32, c.Dim)); err == nil {
			t.Errorf("%s: RunExperts of an expert not held succeeded", fixture)
		}
	}
}

// ExpertSet: ranges in and out, bounds, and the nil set as every expert.
func TestExpertSet(t *testing.T) {
	s, err := model.ParseExperts("0-2, 5,7", 8)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != "0-2,5,7" {
		t.Errorf("String %q, want 0-2,5,7", got)
	}
	if !s.Has(1) || s.Has(3) || s.Count(8) != 5 || s.Covers(8) {
		t.Errorf("set %v: Has(1) %v Has(3) %v Count %d", s, s.Has(1), s.Has(3), s.Count(8))
	}
	if err := s.Check(8); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := s.Check(6); err == nil {
		t.Error("a set naming expert 7 passed Check for 6 experts")
	}
	if all, err := model.ParseExperts("all", 8); err != nil || !all.All() || !all.Covers(8) {
		t.Errorf("all: %v %v", all, err)
	}
	for _, bad := range []string{"3-1", "8", "-1", "x", "0-"} {
		if _, err := model.ParseExperts(bad, 8); err == nil {
			t.Errorf("ParseExperts(%q) passed", bad)
		}
	}
}
