package model_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/model"
)

func TestSamplerGreedy(t *testing.T) {
	s, err := model.NewSampler(model.SamplerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sample([]float32{0.1, 3, -1, 3, 2}); got != 1 {
		t.Errorf("greedy picked %d, want 1 (first of the tied maxima)", got)
	}
}

func TestSamplerReproducible(t *testing.T) {
	logits := func() []float32 {
		l := make([]float32, 100)
		for i := range l {
			l[i] = float32(math.Sin(float64(i)))
		}
		return l
	}
	run := func(seed uint64) []int {
		s, _ := model.NewSampler(model.SamplerConfig{Temperature: 1, TopP: 0.95, Seed: seed})
		var ids []int
		for i := 0; i < 50; i++ {
			ids = append(ids, s.Sample(logits()))
		}
		return ids
	}
	a, b, c := run(7), run(7), run(8)
	same := func(x, y []int) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("the same seed gave different tokens")
	}
	if same(a, c) {
		t.Error("different seeds gave the same 50 tokens")
	}
}

// TestSamplerDistribution draws many samples and checks that frequencies
// follow the softmax, and that top-k and top-p cut where they should.
func TestSamplerDistribution(t *testing.T) {
	logits := []float32{2, 1, 0, -1, -30}
	p := make([]float64, len(logits))
	var sum float64
	for i, l := range logits {
		p[i] = math.Exp(float64(l))
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	const n = 40000
	count := func(cfg model.SamplerConfig) []int {
		s, err := model.NewSampler(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := make([]int, len(logits))
		buf := make([]float32, len(logits))
		for i := 0; i < n; i++ {
			copy(buf, logits)
			c[s.Sample(buf)]++
		}
		return c
	}
	c := count(model.SamplerConfig{Temperature: 1, Seed: 1})
	for i := range p {
		got := float64(c[i]) / n
		if math.Abs(got-p[i]) > 4*math.Sqrt(p[i]*(1-p[i])/n)+1e-4 {
			t.Errorf("token %d drawn with frequency %.4f, want %.4f", i, got, p[i])
		}
	}
	c = count(model.SamplerConfig{Temperature: 1, TopK: 2, Seed: 2})
	if c[2]+c[3]+c[4] != 0 {
		t.Errorf("top-k 2 drew tokens outside the top 2: %v", c)
	}
	if r := float64(c[0]) / float64(c[1]); math.Abs(r-math.E) > 0.15 {
		t.Errorf("top-k 2: ratio of the two kept tokens %.3f, want e", r)
	}
	// p[0]+p[1] ≈ 0.90: a nucleus of 0.85 keeps exactly those two.
	c = count(model.SamplerConfig{Temperature: 1, TopP: 0.85, Seed: 3})
	if c[2]+c[3]+c[4] != 0 || c[1] == 0 {
		t.Errorf("top-p 0.85 drew %v, want only tokens 0 and 1", c)
	}
	c = count(model.SamplerConfig{Temperature: 1, TopK: 1, Seed: 4})
	if c[0] != n {
		t.Errorf("top-k 1 is not greedy: %v", c)
	}
}

func TestSamplerConfigErrors(t *testing.T) {
	for _, cfg := range []model.SamplerConfig{
		{Temperature: -1}, {Temperature: float32(math.NaN())}, {TopK: -2}, {TopP: 1.5}, {TopP: -0.1},
	} {
		if _, err := model.NewSampler(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestSamplerAllocatesNothing(t *testing.T) {
	s, _ := model.NewSampler(model.SamplerConfig{Temperature: 0.8, TopP: 0.9, TopK: 40, Seed: 1})
	logits := make([]float32, 32000)
	buf := make([]float32, len(logits))
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i) * 0.37))
	}
	copy(buf, logits)
	s.Sample(buf)
	if n := testing.AllocsPerRun(20, func() { copy(buf, logits); s.Sample(buf) }); n != 0 {
		t.Errorf("sampling allocates %.1f times per token", n)
	}
}

// TestNucleusMatchesSorting checks the bucketed nucleus against the
// definition: sort by falling probability (ties by id) and take the
// shortest prefix whose mass reaches P.
func TestNucleusMatchesSorting(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for trial := 0; trial < 200; trial++ {
		n := 1 + r.IntN(3000)
		p := make([]float32, n)
		var sum float64
		peak := r.Float64() * 12 // 0: flat; 12: one token dominates
		for i := range p {
			v := math.Exp(r.NormFloat64() * peak / 3)
			if r.IntN(10) == 0 && i > 0 {
				v = float64(p[i-1]) // ties
			}
			p[i] = float32(v)
			sum += v
		}
		for i := range p {
			p[i] = float32(float64(p[i]) / sum)
		}
		topP := float32(0.05 + 0.9*r.Float64())
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			if p[a] != p[b] {
				if p[a] > p[b] {
					return -1
				}
				return 1
			}
			return a - b
		})
		var acc float32
		want := map[int]bool{}
		for _, i := range idx {
			want[i] = true
			acc += p[i]
			if acc >= topP {
				break
			}
		}
		got := model.NucleusIDs(p, topP)
		if len(got) != len(want) {
			t.Fatalf("trial %d (n=%d, P=%.3f): nucleus of %d tokens, want %d", trial, n, topP, len(got), len(want))
		}
		for _, i := range got {
			if !want[i] {
				t.Fatalf("trial %d: token %d (p=%g) in the nucleus, but not in the sorted prefix", trial, i, p[i])
			}
		}
	}
}

func BenchmarkSampleTopP(b *testing.B) {
	logits := make([]float32, 32000)
	buf := make([]float32, len(logits))
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)*0.37)) * 0.1 // nearly flat: the worst case
	}
	s, _ := model.NewSampler(model.SamplerConfig{Temperature: 1, TopP: 0.9, Seed: 1})
	for b.Loop() {
		copy(buf, logits)
		s.Sample(buf)
	}
}
