package model

import (
	"fmt"
	"math"
)

// A layer of routed experts (Layer.Experts) runs its FFN step as
//
//	r      = Router(xf)                    // [Experts] logits per row
//	p      = softmax(r), or sigmoid(r_i)   // ExpertGating
//	chosen = the ExpertsUsed largest p+Bias // ties to the lower index
//	w_i    = p_i (/ Σ_chosen p with ExpertNorm) (· ExpertScale)
//	delta  = Σ_{i ∈ chosen} w_i · Down_i(act(Gate_i(xf)) · Up_i(xf))
//	       (+ SharedDown(act(SharedGate(xf)) · SharedUp(xf)))
//
// For a batch the rows are grouped by expert: each expert chosen by any
// row runs once, on the rows that chose it, gathered into one block.

// moeScratch is the engine's scratch for a layer of experts over up to
// cap rows.
type moeScratch struct {
	logits []float32 // router logits, then probabilities [n, Experts]
	pick   []int32   // the experts each row chose [n, ExpertsUsed]
	far    []int32   // of those, the ones held elsewhere; -1 for the others
	wt     []float32 // their weights [n, ExpertsUsed]
	// The rows grouped by expert: count of each expert, then the start
	// of each group, and the (row, weight) pairs in group order.
	count, start []int
	rows         []int32
	rw           []float32
	x, y         []float32 // gathered inputs and expert outputs [n, Dim]
	h1, h3       []float32 // an expert's gate and up [n, ExpertHidden]
}

// grow sizes the scratch for n rows and FFNs up to h wide.
func (s *moeScratch) grow(c *Config, n, h int) {
	k := c.ExpertsUsed
	*s = moeScratch{
		logits: make([]float32, n*c.Experts),
		pick:   make([]int32, n*k), far: make([]int32, n*k), wt: make([]float32, n*k),
		count: make([]int, c.Experts), start: make([]int, c.Experts+1),
		rows: make([]int32, n*k), rw: make([]float32, n*k),
		x: make([]float32, n*c.Dim), y: make([]float32, n*c.Dim),
		h1: make([]float32, n*h), h3: make([]float32, n*h),
	}
}

// router is how a layer's router logits become expert weights.
type router struct {
	k      int
	gating Gating
	norm   bool
	scale  float32   // 0: 1
	bias   []float32 // added to choose, not to weigh; nil: none
}

// route turns one row's router logits into its k experts and their
// weights: the gating's probabilities (probs is overwritten with them),
// the k with the largest probability plus bias in decreasing order, ties
// to the lower index, normalised to sum to 1 when norm is set, and
// scaled.
func (rt *router) route(probs []float32, pick []int32, wt []float32) {
	k := rt.k
	if rt.gating == GateSigmoid {
		for i, v := range probs {
			probs[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	} else {
		mx := float32(math.Inf(-1))
		for _, v := range probs {
			mx = max(mx, v)
		}
		var sum float64
		for i, v := range probs {
			p := float32(math.Exp(float64(v - mx)))
			probs[i] = p
			sum += float64(p)
		}
		inv := float32(1 / sum)
		for i := range probs {
			probs[i] *= inv
		}
	}
	score := func(i int) float32 {
		if rt.bias != nil {
			return probs[i] + rt.bias[i]
		}
		return probs[i]
	}
	for j := range k {
		best := -1
		for i := range probs {
			if best >= 0 && score(i) <= score(best) {
				continue
			}
			taken := false
			for _, q := range pick[:j] {
				taken = taken || int(q) == i
			}
			if !taken {
				best = i
			}
		}
		pick[j], wt[j] = int32(best), probs[best]
	}
	if rt.norm {
		var s float32
		for _, w := range wt[:k] {
			s += w
		}
		for j := range wt[:k] {
			wt[j] /= s
		}
	}
	if rt.scale != 0 && rt.scale != 1 {
		for j := range wt[:k] {
			wt[j] *= rt.scale
		}
	}
}

// ExpertRunner runs some of a layer's routed experts on rows that an
// engine routed: the engine's own experts (Engine.RunExperts) or another
// machine's. Routing, and the sum of the experts' weighted outputs, stay
// the engine's (experts below); a runner only computes.
type ExpertRunner interface {
	// RunExperts adds to out ([n, Dim]), for each row r of x ([n, Dim])
	// and each of its k slots j with pick[r*k+j] ≥ 0, wt[r*k+j] times
	// expert pick[r*k+j] of layer li applied to the row. Slots of -1 are
	// skipped.
	RunExperts(li int, x []float32, n, k int, pick []int32, wt []float32, out []float32) error
}

// RemoteExperts makes r the runner of the routed experts the engine's
// weights lack (Experts.Holds): a server holding some experts of a layer
// sends the rows that chose the others to their holders.
func RemoteExperts(r ExpertRunner) Option { return func(e *Engine) { e.remote = r } }

// Routed makes f hear, at each layer of experts of every pass, the
// experts the router chose: pick holds ExpertsUsed slots a row, and is
// the engine's (f must not keep it). A server counts its experts' load
// through it.
func Routed(f func(li int, pick []int32)) Option { return func(e *Engine) { e.routed = f } }

// Holds says whether the weights hold expert i (its three matrices).
func (x *Experts) Holds(i int) bool {
	return i >= 0 && i < len(x.Gate) && x.Gate[i] != nil && x.Up[i] != nil && x.Down[i] != nil
}

// experts sets out ([n, Dim]) to the routed experts x of layer li applied
// to the n rows of xf ([n, Dim]): it routes each row, runs the chosen
// experts the weights hold (RunExperts) and hands the others to the
// remote runner, then adds the shared experts.
func (e *Engine) experts(li int, x *Experts, out, xf []float32, n int) error {
	cfg := &e.w.Config
	d, ne, k := cfg.Dim, cfg.Experts, cfg.ExpertsUsed
	s := &e.moe
	be := e.be
	mulRows(be, s.logits[:n*ne], x.Router, xf[:n*d], n)
	rt := router{k: k, gating: cfg.ExpertGating, norm: cfg.ExpertNorm, scale: cfg.ExpertScale, bias: x.Bias}
	lacking := false
	for r := range n {
		rt.route(s.logits[r*ne:(r+1)*ne], s.pick[r*k:(r+1)*k], s.wt[r*k:(r+1)*k])
		for _, ex := range s.pick[r*k : (r+1)*k] {
			lacking = lacking || !x.Holds(int(ex))
		}
	}
	if e.routed != nil {
		e.routed(li, s.pick[:n*k])
	}
	clear(out[:n*d])
	e.expertRows(x, out, xf, n, k, s.pick, s.wt)
	if lacking {
		// The slots of experts held elsewhere, -1 for the others.
		for i, ex := range s.pick[:n*k] {
			s.far[i] = -1
			if !x.Holds(int(ex)) {
				s.far[i] = ex
			}
		}
		if e.remote == nil {
			return fmt.Errorf("layer %d: the rows chose experts this engine does not hold, and it has no runner for them", li)
		}
		if err := e.remote.RunExperts(li, xf[:n*d], n, k, s.far[:n*k], s.wt[:n*k], out[:n*d]); err != nil {
			return fmt.Errorf("layer %d: experts held elsewhere: %w", li, err)
		}
	}
	if x.SharedGate != nil {
		sh := x.SharedGate.Rows
		e.outs[0], e.outs[1] = s.h1[:n*sh], s.h3[:n*sh]
		e.ws[0], e.ws[1] = x.SharedGate, x.SharedUp
		e.mulMany(e.outs[:2], e.ws[:2], xf[:n*d], n)
		e.glu(s.h1[:n*sh], s.h1[:n*sh], s.h3[:n*sh])
		mulRows(be, s.y[:n*d], x.SharedDown, s.h1[:n*sh], n)
		be.Add(out[:n*d], s.y[:n*d])
	}
	return nil
}

// RunExperts is the engine's own ExpertRunner: it runs the experts of
// layer li that its weights hold, as the engine's forward pass runs
// them. A slot naming an expert the weights lack is an error. An expert
// server answers the rows other engines send it through this.
func (e *Engine) RunExperts(li int, x []float32, n, k int, pick []int32, wt []float32, out []float32) error {
	cfg := &e.w.Config
	if li < 0 || li >= len(e.w.Layers) || e.w.Layers[li] == nil || e.w.Layers[li].Experts == nil {
		return fmt.Errorf("experts: layer %d is not a layer of experts held here", li)
	}
	xs := e.w.Layers[li].Experts
	if k < 1 || k > cfg.ExpertsUsed {
		return fmt.Errorf("experts: %d slots a row, the model routes each row to %d", k, cfg.ExpertsUsed)
	}
	if n < 1 || len(x) < n*cfg.Dim || len(out) < n*cfg.Dim || len(pick) < n*k || len(wt) < n*k {
		return fmt.Errorf("experts: %d rows of %d slots: buffers of %d, %d, %d and %d values too short", n, k, len(x), len(out), len(pick), len(wt))
	}
	for _, ex := range pick[:n*k] {
		if ex >= 0 && !xs.Holds(int(ex)) {
			return fmt.Errorf("experts: layer %d: expert %d is not held here", li, ex)
		}
	}
	e.grow(n)
	e.expertRows(xs, out, x, n, k, pick, wt)
	return nil
}

// expertRows adds to out ([n, Dim]) the routed experts x holds applied to
// the rows of xf that chose them (pick and wt, k slots a row; slots of
// -1 and of experts not held are skipped): the rows grouped by expert,
// each expert run once on its rows gathered into one block, its outputs
// weighted into their rows in expert order.
func (e *Engine) expertRows(x *Experts, out, xf []float32, n, k int, pick []int32, wt []float32) {
	cfg := &e.w.Config
	d, ne, h := cfg.Dim, cfg.Experts, cfg.ExpertHidden
	s := &e.moe
	be := e.be
	clear(s.count)
	for _, ex := range pick[:n*k] {
		if x.Holds(int(ex)) {
			s.count[ex]++
		}
	}
	// Group the (row, weight) pairs by expert, rows in order within each.
	s.start[0] = 0
	for ex, c := range s.count {
		s.start[ex+1] = s.start[ex] + c
	}
	for r := range n {
		for j, ex := range pick[r*k : (r+1)*k] {
			if !x.Holds(int(ex)) {
				continue
			}
			i := s.start[ex+1] - s.count[ex]
			s.count[ex]--
			s.rows[i], s.rw[i] = int32(r), wt[r*k+j]
		}
	}
	for ex := range ne {
		a, b := s.start[ex], s.start[ex+1]
		m := b - a
		if m == 0 {
			continue
		}
		for i, r := range s.rows[a:b] {
			copy(s.x[i*d:(i+1)*d], xf[int(r)*d:(int(r)+1)*d])
		}
		e.outs[0], e.outs[1] = s.h1[:m*h], s.h3[:m*h]
		e.ws[0], e.ws[1] = x.Gate[ex], x.Up[ex]
		e.mulMany(e.outs[:2], e.ws[:2], s.x[:m*d], m)
		e.glu(s.h1[:m*h], s.h1[:m*h], s.h3[:m*h])
		mulRows(be, s.y[:m*d], x.Down[ex], s.h1[:m*h], m)
		for i, r := range s.rows[a:b] {
			w, y := s.rw[a+i], s.y[i*d:(i+1)*d]
			o := out[int(r)*d : (int(r)+1)*d]
			for c := range o {
				o[c] += w * y[c]
			}
		}
	}
}

// expertWidth is the widest FFN of the weights' experts, shared ones
// included.
func expertWidth(w *Weights) int {
	h := w.Config.ExpertHidden
	for _, l := range w.Layers {
		if l != nil && l.Experts != nil && l.Experts.SharedGate != nil {
			h = max(h, l.Experts.SharedGate.Rows)
		}
	}
	return h
}
