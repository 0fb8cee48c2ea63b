package train

import (
	"math"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// Weights drawn for training from scratch have the deviations asked for,
// norms at 1, a shared head, and are the same for the same seed.
func TestInitWeights(t *testing.T) {
	c := model.Config{Arch: "llama", Dim: 64, Hidden: 160, Layers: 4, Heads: 4, KVHeads: 2, Vocab: 300, Context: 64,
		RopeTheta: 10000, RopeStyle: kernels.RopeAdjacent, NormEps: 1e-5, SharedClassifier: true}
	w, err := InitWeights(c, 7)
	if err != nil {
		t.Fatal(err)
	}
	if w.Output != w.Embedding {
		t.Error("the head is not the embedding")
	}
	std := func(m *kernels.Matrix) float64 {
		var s, s2 float64
		f := kernels.BytesF32(m.Data)
		for _, v := range f {
			s += float64(v)
			s2 += float64(v) * float64(v)
		}
		n := float64(len(f))
		return math.Sqrt(s2/n - (s/n)*(s/n))
	}
	resid := InitStd / math.Sqrt(8)
	for _, tc := range []struct {
		name string
		m    *kernels.Matrix
		want float64
	}{
		{"embedding", w.Embedding, InitStd}, {"wq", w.Layers[0].Wq, InitStd}, {"w1", w.Layers[3].W1, InitStd},
		{"wo", w.Layers[1].Wo, resid}, {"w2", w.Layers[2].W2, resid},
	} {
		if got := std(tc.m); math.Abs(got-tc.want) > 0.08*tc.want {
			t.Errorf("%s: deviation %.4f, want %.4f", tc.name, got, tc.want)
		}
	}
	for _, v := range append(slices.Clone(w.FinalNorm), w.Layers[2].AttnNorm...) {
		if v != 1 {
			t.Fatalf("a norm weight is %v, want 1", v)
		}
	}
	again, _ := InitWeights(c, 7)
	other, _ := InitWeights(c, 8)
	if !slices.Equal(w.Layers[1].Wk.Data, again.Layers[1].Wk.Data) {
		t.Error("the same seed gave other weights")
	}
	if slices.Equal(w.Layers[1].Wk.Data, other.Layers[1].Wk.Data) {
		t.Error("seeds 7 and 8 gave the same weights")
	}
	if slices.Equal(w.Layers[0].Wq.Data, w.Layers[1].Wq.Data) {
		t.Error("two layers drew the same matrix")
	}
	c.Heads = 5
	if _, err := InitWeights(c, 1); err == nil {
		t.Error("a bad config was accepted")
	}
}
