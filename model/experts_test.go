package model

import (
	"math"
	"testing"
)

// TestRoute: the router's softmax over all experts, the k largest in
// decreasing order (ties to the lower index), and the two weightings:
// renormalised over the chosen (a softmax over their logits) or each its
// share of the whole softmax.
func TestRoute(t *testing.T) {
	logits := []float32{0.5, 2, -1, 2, 1}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	p := func(v float32) float64 { return math.Exp(float64(v)) / z }
	for _, c := range []struct {
		k    int
		norm bool
		pick []int32
		wt   []float64
	}{
		{1, true, []int32{1}, []float64{1}},
		{2, true, []int32{1, 3}, []float64{0.5, 0.5}},
		{3, false, []int32{1, 3, 4}, []float64{p(2), p(2), p(1)}},
		{3, true, []int32{1, 3, 4}, []float64{
			math.Exp(2) / (2*math.Exp(2) + math.E), math.Exp(2) / (2*math.Exp(2) + math.E), math.E / (2*math.Exp(2) + math.E)}},
	} {
		probs := append([]float32(nil), logits...)
		pick, wt := make([]int32, c.k), make([]float32, c.k)
		rt := router{k: c.k, norm: c.norm}
		rt.route(probs, pick, wt)
		for j := range c.k {
			if pick[j] != c.pick[j] || math.Abs(float64(wt[j])-c.wt[j]) > 1e-6 {
				t.Errorf("k=%d norm=%v: picked %v weights %v, want %v %v", c.k, c.norm, pick, wt, c.pick, c.wt)
				break
			}
		}
	}

	// Sigmoid gating with a bias that only chooses: expert 0 (sigmoid
	// 0.62) comes first by its bias, then 1 (0.88, tied with 3: the lower
	// index), and the weights are the unbiased sigmoids, normalised and
	// scaled by 2.5.
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	probs := append([]float32(nil), logits...)
	pick, wt := make([]int32, 2), make([]float32, 2)
	rt := router{k: 2, gating: GateSigmoid, norm: true, scale: 2.5, bias: []float32{0.4, 0, 0, 0, 0}}
	rt.route(probs, pick, wt)
	w1, w0 := sig(2), sig(0.5)
	if pick[0] != 0 || pick[1] != 1 || math.Abs(float64(wt[0])-2.5*w0/(w0+w1)) > 1e-6 || math.Abs(float64(wt[1])-2.5*w1/(w0+w1)) > 1e-6 {
		t.Errorf("sigmoid with bias: picked %v weights %v, want [0 1] [%.6f %.6f]", pick, wt, 2.5*w0/(w0+w1), 2.5*w1/(w0+w1))
	}
}

// TestParamsLatent: a config's parameter count follows latent attention's
// projections and the experts (every layer counted with experts).
func TestParamsLatent(t *testing.T) {
	c := Config{Dim: 256, Hidden: 256, Layers: 1, Heads: 4, KVHeads: 4, Vocab: 512,
		HeadSize: 96, ValueSize: 64, RopeDim: 32, QLoRA: 128, KVLoRA: 256,
		Experts: 4, ExpertsUsed: 2, ExpertHidden: 64}
	att := 256*128 + 128 + 128*384 + 256*288 + 256 + 256*4*128 + 256*256
	ffn := 4*256 + 4*3*256*64
	want := int64(512*256 + 2*256 + att + ffn + 256 + 512*256)
	if got := c.Params(); got != want {
		t.Errorf("params %d, want %d", got, want)
	}
}
