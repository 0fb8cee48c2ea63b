package train

import (
	"errors"
	"fmt"
	"math"
)

// Param is one trained tensor: its values, the gradient accumulated for
// them and whether weight decay applies (not to norm weights and biases).
type Param struct {
	Name  string
	W     []float32
	G     []float32
	Decay bool
}

// AdamW is Adam with decoupled weight decay (Loshchilov and Hutter): for
// each parameter w with gradient g, at step t (from 1),
//
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	w ← w − lr·( m/(1−β1^t) / (√(v/(1−β2^t)) + ε) + wd·w )
//
// with wd applied only to parameters whose Decay is set. The moments are
// float32, one pair per parameter value; the update is element by element,
// so it is deterministic.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// Step is the number of updates applied so far.
	Step int
	// M and V are the first and second moments, one slice per parameter,
	// in the order Update received them.
	M, V [][]float32
}

// NewAdamW is AdamW with β1 0.9, β2 0.999, ε 1e-8 and the given decay.
func NewAdamW(weightDecay float64) *AdamW {
	return &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
}

// Update applies one step with learning rate lr to params (always the same
// parameters, in the same order) and leaves their gradients as they were.
func (o *AdamW) Update(params []*Param, lr float64) error {
	if o.M == nil {
		o.M = make([][]float32, len(params))
		o.V = make([][]float32, len(params))
		for i, p := range params {
			o.M[i] = make([]float32, len(p.W))
			o.V[i] = make([]float32, len(p.W))
		}
	}
	if len(o.M) != len(params) {
		return fmt.Errorf("adamw: state for %d parameters, update of %d", len(o.M), len(params))
	}
	o.Step++
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	c1 := float32(1 / (1 - math.Pow(o.Beta1, float64(o.Step))))
	c2 := float32(1 / (1 - math.Pow(o.Beta2, float64(o.Step))))
	eps, flr := float32(o.Eps), float32(lr)
	for i, p := range params {
		m, v := o.M[i], o.V[i]
		if len(m) != len(p.W) || len(p.G) != len(p.W) {
			return fmt.Errorf("adamw: parameter %s has %d values, %d gradients and %d moments", p.Name, len(p.W), len(p.G), len(m))
		}
		decay := float32(0)
		if p.Decay {
			decay = float32(o.WeightDecay)
		}
		for j, g := range p.G {
			mj := b1*m[j] + (1-b1)*g
			vj := b2*v[j] + (1-b2)*g*g
			m[j], v[j] = mj, vj
			upd := (mj * c1) / (float32(math.Sqrt(float64(vj*c2))) + eps)
			p.W[j] -= flr * (upd + decay*p.W[j])
		}
	}
	return nil
}

// LRAt is the learning rate of step (0-based) of a job: a linear warmup from
// lr/warmup to lr over the first warmup steps, then a cosine from lr down
// to lr/10 at the last step.
func (j *Job) LRAt(step int) float64 {
	if step < j.Warmup {
		return j.LR * float64(step+1) / float64(j.Warmup)
	}
	span := j.Steps - j.Warmup - 1
	if span <= 0 {
		return j.LR
	}
	progress := float64(step-j.Warmup) / float64(span)
	progress = min(max(progress, 0), 1)
	floor := j.LR / 10
	return floor + (j.LR-floor)*0.5*(1+math.Cos(math.Pi*progress))
}

// ErrNotFinite means a loss or a gradient became NaN or infinite.
var ErrNotFinite = errors.New("not finite")

// GradNorm is the global L2 norm of the gradients of params, summed in
// float64 in a fixed order.
func GradNorm(params []*Param) float64 {
	var s float64
	for _, p := range params {
		for _, g := range p.G {
			s += float64(g) * float64(g)
		}
	}
	return math.Sqrt(s)
}

// ClipGrads scales the gradients of params so that their global norm is at
// most maxNorm (0: no clipping) and returns the norm before clipping. A
// norm that is NaN or infinite is ErrNotFinite: such a step must not be
// applied.
func ClipGrads(params []*Param, maxNorm float64) (float64, error) {
	norm := GradNorm(params)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("gradient norm: %w", ErrNotFinite)
	}
	if maxNorm > 0 && norm > maxNorm {
		s := float32(maxNorm / norm)
		for _, p := range params {
			for j := range p.G {
				p.G[j] *= s
			}
		}
	}
	return norm, nil
}

// ZeroGrads clears the gradients of params before a step accumulates them.
func ZeroGrads(params []*Param) {
	for _, p := range params {
		clear(p.G)
	}
}
