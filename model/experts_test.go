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
		route(probs, c.k, c.norm, pick, wt)
		for j := range c.k {
			if pick[j] != c.pick[j] || math.Abs(float64(wt[j])-c.wt[j]) > 1e-6 {
				t.Errorf("k=%d norm=%v: picked %v weights %v, want %v %v", c.k, c.norm, pick, wt, c.pick, c.wt)
				break
			}
		}
	}
}
