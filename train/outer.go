package train

import (
	"fmt"
	"math"
)

// Outer is DiLoCo's outer optimizer (Douillard et al., 2023). Every peer
// takes H inner AdamW steps from the round's starting parameters θ on its
// own data; the peers average their outer gradients Δ = θ − θ_peer; then
// every peer applies SGD with Nesterov momentum μ and learning rate η to
// the starting parameters:
//
//	v ← μ·v + Δ
//	θ ← θ − η·(Δ + μ·v)
//
// With H = 1, η = 1 and μ = 0 this is θ_peer averaged: plain data-parallel
// AdamW. Start and the momentum V are float32, one value per trained
// value; each update is computed in float64 and rounded once, so peers
// that apply the same Δ hold bitwise the same θ.
type Outer struct {
	LR, Momentum float64
	// Start is θ, the parameters the round started from.
	Start []float32
	// V is the momentum.
	V []float32
	// Pending, when the averaging runs a round behind the training, is
	// the round whose change is still to come (it travels in checkpoints).
	Pending *PendingRound
}

// NewOuter starts the outer optimizer from params' values.
func NewOuter(params []*Param, lr, momentum float64) *Outer {
	start := Flatten(params, Values, make([]float32, 0, VectorLen(params)))
	return &Outer{LR: lr, Momentum: momentum, Start: start, V: make([]float32, len(start))}
}

// Delta writes this peer's outer gradient θ − θ_peer into dst (of the
// parameters' length) and returns it.
func (o *Outer) Delta(params []*Param, dst []float32) []float32 {
	dst = dst[:0]
	i := 0
	for _, p := range params {
		for _, w := range p.W {
			dst = append(dst, float32(float64(o.Start[i])-float64(w)))
			i++
		}
	}
	return dst
}

// Step applies the averaged outer gradient delta: it moves Start and
// writes the new parameters into params. A delta that is not finite is
// refused and changes nothing.
func (o *Outer) Step(params []*Param, delta []float32) error {
	if len(delta) != len(o.Start) {
		return fmt.Errorf("train: outer step: %d values for %d parameters", len(delta), len(o.Start))
	}
	for i, d := range delta {
		if math.IsNaN(float64(d)) || math.IsInf(float64(d), 0) {
			return fmt.Errorf("train: outer step: value %d of the averaged change: %w", i, ErrNotFinite)
		}
	}
	for i, d := range delta {
		o.Start[i], o.V[i] = o.next(o.Start[i], o.V[i], d)
	}
	return Unflatten(params, Values, o.Start)
}

// next is the outer step of one value θ with momentum v and change d:
// the new value and momentum.
func (o *Outer) next(theta, v, d float32) (float32, float32) {
	nv := o.Momentum*float64(v) + float64(d)
	return float32(float64(theta) - o.LR*(float64(d)+o.Momentum*nv)), float32(nv)
}

// Ahead appends to dst the values Step(delta) would give Start (delta
// may be shorter than Start: its first values), changing nothing.
func (o *Outer) Ahead(delta, dst []float32) []float32 {
	for i, d := range delta {
		theta, _ := o.next(o.Start[i], o.V[i], d)
		dst = append(dst, theta)
	}
	return dst
}

// Preview writes into params the parameters Step(delta) would give, and
// returns them (in dst's buffer), changing neither Start nor V.
func (o *Outer) Preview(params []*Param, delta, dst []float32) ([]float32, error) {
	if len(delta) != len(o.Start) {
		return nil, fmt.Errorf("train: outer preview: %d values for %d parameters", len(delta), len(o.Start))
	}
	dst = o.Ahead(delta, dst[:0])
	return dst, Unflatten(params, Values, dst)
}
