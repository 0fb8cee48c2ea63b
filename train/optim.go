package train

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
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
	// Workers is how many goroutines share an update (0 or 1: the
	// caller's alone); the result is the same whatever their number.
	Workers int
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
	for i, p := range params {
		if len(o.M[i]) != len(p.W) || len(p.G) != len(p.W) {
			return fmt.Errorf("adamw: parameter %s has %d values, %d gradients and %d moments", p.Name, len(p.W), len(p.G), len(o.M[i]))
		}
	}
	o.Step++
	u := adamStep{b1: float32(o.Beta1), b2: float32(o.Beta2), eps: float32(o.Eps), lr: float32(lr),
		c1: float32(1 / (1 - math.Pow(o.Beta1, float64(o.Step)))),
		c2: float32(1 / (1 - math.Pow(o.Beta2, float64(o.Step))))}
	// Every value is updated on its own, so splitting the work among
	// workers changes nothing in the result.
	type span struct{ i, from, to int }
	var spans []span
	for i, p := range params {
		for from := 0; from < len(p.W); from += adamChunk {
			spans = append(spans, span{i, from, min(from+adamChunk, len(p.W))})
		}
	}
	run := func(sp span) {
		p := params[sp.i]
		decay := float32(0)
		if p.Decay {
			decay = float32(o.WeightDecay)
		}
		u.apply(p.W[sp.from:sp.to], p.G[sp.from:sp.to], o.M[sp.i][sp.from:sp.to], o.V[sp.i][sp.from:sp.to], decay)
	}
	workers := min(max(o.Workers, 1), len(spans))
	if workers <= 1 {
		for _, sp := range spans {
			run(sp)
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < len(spans); k = int(next.Add(1) - 1) {
				run(spans[k])
			}
		})
	}
	wg.Wait()
	return nil
}

// adamChunk is how many values one worker of an AdamW update takes at a
// time.
const adamChunk = 1 << 16

// adamStep is one AdamW step's constants.
type adamStep struct {
	b1, b2, eps, lr, c1, c2 float32
}

// apply updates the values w with gradients g and moments m and v.
func (u *adamStep) apply(w, g, m, v []float32, decay float32) {
	b1, b2 := u.b1, u.b2
	for j, gj := range g {
		mj := b1*m[j] + (1-b1)*gj
		vj := b2*v[j] + (1-b2)*gj*gj
		m[j], v[j] = mj, vj
		upd := (mj * u.c1) / (float32(math.Sqrt(float64(vj*u.c2))) + u.eps)
		w[j] -= u.lr * (upd + decay*w[j])
	}
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
