package model

import "math"

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
		pick:   make([]int32, n*k), wt: make([]float32, n*k),
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

// experts sets out ([n, Dim]) to the routed experts x of the layer applied
// to the n rows of xf ([n, Dim]).
func (e *Engine) experts(x *Experts, out, xf []float32, n int) {
	cfg := &e.w.Config
	d, ne, k, h := cfg.Dim, cfg.Experts, cfg.ExpertsUsed, cfg.ExpertHidden
	s := &e.moe
	be := e.be
	mulRows(be, s.logits[:n*ne], x.Router, xf[:n*d], n)
	clear(s.count)
	rt := router{k: k, gating: cfg.ExpertGating, norm: cfg.ExpertNorm, scale: cfg.ExpertScale, bias: x.Bias}
	for r := range n {
		rt.route(s.logits[r*ne:(r+1)*ne], s.pick[r*k:(r+1)*k], s.wt[r*k:(r+1)*k])
		for _, ex := range s.pick[r*k : (r+1)*k] {
			s.count[ex]++
		}
	}
	// Group the (row, weight) pairs by expert, rows in order within each.
	s.start[0] = 0
	for ex, c := range s.count {
		s.start[ex+1] = s.start[ex] + c
	}
	for r := range n {
		for j, ex := range s.pick[r*k : (r+1)*k] {
			i := s.start[ex+1] - s.count[ex]
			s.count[ex]--
			s.rows[i], s.rw[i] = int32(r), s.wt[r*k+j]
		}
	}
	clear(out[:n*d])
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
	if x.SharedGate != nil {
		sh := x.SharedGate.Rows
		e.outs[0], e.outs[1] = s.h1[:n*sh], s.h3[:n*sh]
		e.ws[0], e.ws[1] = x.SharedGate, x.SharedUp
		e.mulMany(e.outs[:2], e.ws[:2], xf[:n*d], n)
		e.glu(s.h1[:n*sh], s.h1[:n*sh], s.h3[:n*sh])
		mulRows(be, s.y[:n*d], x.SharedDown, s.h1[:n*sh], n)
		be.Add(out[:n*d], s.y[:n*d])
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
