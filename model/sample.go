package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/mycel-net/mycel/kernels"
)

// SamplerConfig chooses how the next token is drawn from the logits.
type SamplerConfig struct {
	// Temperature divides the logits; 0 picks the most likely token
	// (greedy decoding) and ignores the other fields.
	Temperature float32
	// TopK keeps only the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose
	// probabilities sum to at least P (nucleus sampling; 0 or 1: all).
	TopP float32
	// Seed makes a run reproducible: the same seed, model and prompt give
	// the same tokens.
	Seed uint64
}

// Validate checks the ranges of the fields.
func (c SamplerConfig) Validate() error {
	switch {
	case c.Temperature < 0 || math.IsNaN(float64(c.Temperature)) || math.IsInf(float64(c.Temperature), 0):
		return fmt.Errorf("temperature %g must be 0 or positive", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("top-k %d must be 0 (off) or positive", c.TopK)
	case !(c.TopP >= 0 && c.TopP <= 1):
		return fmt.Errorf("top-p %g must be between 0 and 1", c.TopP)
	}
	return nil
}

// Sampler draws tokens from logits. It keeps its scratch between calls and
// allocates nothing per token once warm.
type Sampler struct {
	cfg  SamplerConfig
	rng  *rand.Rand
	cand []candidate
	hist [probBuckets]float32
}

type candidate struct {
	id int
	p  float32
}

// NewSampler returns a sampler seeded from cfg.Seed.
func NewSampler(cfg SamplerConfig) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}, nil
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(x []float32) int {
	best, bv := 0, float32(math.Inf(-1))
	for i, v := range x {
		if v > bv {
			best, bv = i, v
		}
	}
	return best
}

// Sample picks the next token id from logits. logits may be modified.
func (s *Sampler) Sample(logits []float32) int {
	c := s.cfg
	if c.Temperature == 0 {
		return Argmax(logits)
	}
	// Softmax with temperature.
	maxv := logits[Argmax(logits)]
	inv := 1 / c.Temperature
	var sum float64
	for i, v := range logits {
		e := kernels.Exp32((v - maxv) * inv)
		logits[i] = e
		sum += float64(e)
	}
	norm := float32(1 / sum)
	for i := range logits {
		logits[i] *= norm
	}
	topP := c.TopP
	if topP <= 0 || topP >= 1 {
		topP = 1
	}
	if k := c.TopK; k > 0 && k < len(logits) {
		s.cand = s.cand[:0]
		for i, p := range logits {
			s.cand = append(s.cand, candidate{i, p})
		}
		s.cand = topK(s.cand, k)
		slices.SortFunc(s.cand, byProbDesc)
		return s.drawSorted(s.cand, topP)
	}
	if topP == 1 {
		return s.draw(logits)
	}
	return s.drawNucleus(logits, topP)
}

// drawSorted draws from the shortest prefix of cand (sorted by falling
// probability) whose mass reaches topP.
func (s *Sampler) drawSorted(cand []candidate, topP float32) int {
	var total float32
	for i, cd := range cand {
		total += cd.p
		if total >= topP {
			cand = cand[:i+1]
			break
		}
	}
	r := s.rng.Float32() * total
	var acc float32
	for _, cd := range cand {
		acc += cd.p
		if r < acc {
			return cd.id
		}
	}
	return cand[len(cand)-1].id
}

// probBucket orders probabilities coarsely: the float32 bits of a
// non-negative value grow with it, and the top 16 (exponent and 7 bits of
// mantissa) split each octave in 128. Probabilities in [0, 1] fall in
// buckets 0..16256.
func probBucket(p float32) int { return int(math.Float32bits(p) >> 16) }

const probBuckets = 16384

// nucleus finds the smallest set of most likely tokens whose mass reaches
// topP, in O(V) without sorting the vocabulary: a histogram of mass by
// bucket locates the bucket where the running mass from the top crosses
// topP; every token in a higher bucket is in, and only the boundary
// bucket's tokens are sorted to pick the rest. It returns the boundary
// bucket, the boundary tokens taken (in s.cand) and the set's total mass.
func (s *Sampler) nucleus(p []float32, topP float32) (boundary int, taken []candidate, total float32) {
	clear(s.hist[:])
	for _, v := range p {
		s.hist[probBucket(v)] += v
	}
	var above float32
	boundary = 0
	for b := probBuckets - 1; b >= 0; b-- {
		if above+s.hist[b] >= topP {
			boundary = b
			break
		}
		above += s.hist[b]
	}
	s.cand = s.cand[:0]
	for i, v := range p {
		if probBucket(v) == boundary {
			s.cand = append(s.cand, candidate{i, v})
		}
	}
	slices.SortFunc(s.cand, byProbDesc)
	total = above
	for i, cd := range s.cand {
		total += cd.p
		if total >= topP {
			return boundary, s.cand[:i+1], total
		}
	}
	return boundary, s.cand, total
}

// drawNucleus samples from the nucleus of p. The tokens above the boundary
// bucket are visited in vocabulary order: any fixed order gives the same
// distribution.
func (s *Sampler) drawNucleus(p []float32, topP float32) int {
	boundary, taken, total := s.nucleus(p, topP)
	r := s.rng.Float32() * total
	var acc float32
	last := -1
	for i, v := range p {
		if probBucket(v) > boundary {
			acc += v
			last = i
			if r < acc {
				return i
			}
		}
	}
	for _, cd := range taken {
		acc += cd.p
		last = cd.id
		if r < acc {
			return cd.id
		}
	}
	return last // rounding left r above the sum
}

func byProbDesc(a, b candidate) int {
	switch {
	case a.p > b.p:
		return -1
	case a.p < b.p:
		return 1
	}
	return a.id - b.id
}

// topK moves the k most likely candidates to the front of c (in no
// particular order) and returns them, in O(len(c)·log k): a min-heap of the
// best k seen so far, whose root is the weakest of them.
func topK(c []candidate, k int) []candidate {
	h := c[:k]
	less := func(i, j int) bool { return byProbDesc(h[i], h[j]) > 0 } // i is worse than j
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= k {
				return
			}
			m := l
			if r := l + 1; r < k && less(r, l) {
				m = r
			}
			if !less(m, i) {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for _, cd := range c[k:] {
		if byProbDesc(cd, h[0]) < 0 {
			h[0] = cd
			down(0)
		}
	}
	return h
}

// draw samples an index from probabilities that sum to about 1.
func (s *Sampler) draw(p []float32) int {
	r := s.rng.Float32()
	var acc float32
	for i, v := range p {
		acc += v
		if r < acc {
			return i
		}
	}
	return len(p) - 1 // rounding left r above the sum
}
