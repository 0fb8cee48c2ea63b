package swarm

import (
	"cmp"
	"math"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/model"
)

// Coverage is, for each layer of a model, the decode throughput (tokens
// per second) that the swarm's servers offer for it: the sum of the
// throughputs of the servers whose span holds the layer. A pipeline runs
// no faster than its weakest layer, so the minimum of Coverage bounds the
// swarm's rate.
//
// Servers holding some experts of a layer (ServerRecord.Experts) add to
// it only what their least-held expert allows: every row of the layer
// may pick any expert, so the layer runs no faster than the holders of
// its least-held expert. A layer whose servers of some experts lack an
// expert between them gets nothing from them, as no route can use them
// there (PlanOptions.Experts); one whose experts are held by a single
// slow server each counts that slow rate.
type Coverage []float64

// NewCoverage sums the records of servers that serve or are joining,
// leaving out the peer skip (a server judging the swarm without itself),
// for a model of layers layers of experts routed experts each (0: a
// dense model, whose records of some experts, being of no use to a
// route, count for nothing). Per layer it is the rate of the servers of
// every expert plus, of the servers of some, the least that any one
// expert's holders offer (ExpertCoverage's rule, per layer).
// Spans beyond layers are clipped.
// A server that has not measured itself yet (Throughput 0, as when it is
// joining) counts as a typical one (TypicalRate).
func NewCoverage(layers, experts int, recs []ServerRecord, skip peer.ID) Coverage {
	c := make(Coverage, layers)
	typical := TypicalRate(recs)
	held := make([]float64, max(experts, 0))
	for l := range c {
		c[l] = rateAt(recs, l, skip, typical, held)
		if len(held) > 0 {
			c[l] += slices.Min(held)
		}
	}
	return c
}

// rateAt is the rate that the records (skip and leaving ones left out)
// offer at layer l: it returns that of the servers of every expert, and
// fills held, one entry an expert of the layer, with that of the servers
// of some experts holding each one. Records of some experts count only
// in held, so with held empty (a dense model) they count for nothing.
func rateAt(recs []ServerRecord, l int, skip peer.ID, typical float64, held []float64) float64 {
	clear(held)
	whole := 0.0
	for i := range recs {
		r := &recs[i]
		if r.Peer == skip || r.State == StateLeaving || l < r.Span.First || l >= r.Span.Last {
			continue
		}
		rate := r.Throughput
		if rate <= 0 {
			rate = typical
		}
		if r.Experts == nil {
			whole += rate
			continue
		}
		for e := range held {
			if r.Experts.Has(e) {
				held[e] += rate
			}
		}
	}
	return whole
}

// TypicalRate is the mean throughput of the records that have one: what
// an unmeasured server is assumed to add (minRate if none has one).
func TypicalRate(recs []ServerRecord) float64 {
	sum, n := 0.0, 0
	for i := range recs {
		if recs[i].Throughput > 0 && recs[i].State != StateLeaving {
			sum += recs[i].Throughput
			n++
		}
	}
	if n == 0 {
		return minRate
	}
	return sum / float64(n)
}

// minRate stands for a server whose throughput is unknown (0).
const minRate = 1e-3

// Add returns c with rate added to the layers of s.
func (c Coverage) Add(s Span, rate float64) Coverage {
	out := append(Coverage(nil), c...)
	for l := max(s.First, 0); l < min(s.Last, len(c)); l++ {
		out[l] += max(rate, minRate)
	}
	return out
}

// Missing lists the runs of layers that no server covers.
func (c Coverage) Missing() []Span {
	var out []Span
	for l := 0; l < len(c); l++ {
		if c[l] > 0 {
			continue
		}
		first := l
		for l < len(c) && c[l] <= 0 {
			l++
		}
		out = append(out, Span{first, l})
	}
	return out
}

// unserved counts the layers no server covers.
func (c Coverage) unserved() int {
	n := 0
	for _, v := range c {
		if v <= 0 {
			n++
		}
	}
	return n
}

// Min is the weakest layer's throughput (0 for no layers).
func (c Coverage) Min() float64 {
	if len(c) == 0 {
		return 0
	}
	m := math.Inf(1)
	for _, v := range c {
		m = min(m, v)
	}
	return m
}

// better says whether coverage a is a better swarm than b by more than
// the factor 1+margin: fewer unserved layers, or as many and a weakest
// layer faster by that factor.
func better(a, b Coverage, margin float64) bool {
	ua, ub := a.unserved(), b.unserved()
	if ua != ub {
		return ua < ub
	}
	return a.Min() > b.Min()*(1+margin)
}

// ChooseSpan picks where a server that can hold n consecutive layers and
// runs them at rate tokens per second should serve, given the coverage
// of the others: the span that leaves the swarm best, by fewest unserved
// layers, then the fastest weakest layer, then the weakest window (the
// span whose own layers are served least, so that capacity goes where it
// is thinnest), then the lowest first layer.
func ChooseSpan(c Coverage, n int, rate float64) Span {
	layers := len(c)
	n = min(max(n, 1), layers)
	best := Span{0, n}
	var bestCov Coverage
	bestSum := math.Inf(1)
	for first := 0; first+n <= layers; first++ {
		s := Span{first, first + n}
		cov := c.Add(s, rate)
		sum := 0.0
		for l := s.First; l < s.Last; l++ {
			sum += c[l]
		}
		switch {
		case bestCov == nil, better(cov, bestCov, 0):
		case better(bestCov, cov, 0):
			continue
		case sum < bestSum:
		default:
			continue
		}
		best, bestCov, bestSum = s, cov, sum
	}
	return best
}

// Rebalance decides whether a server now at cur should move, given the
// coverage of the others (without itself). It moves to ChooseSpan's pick
// only when that leaves the swarm better by more than margin (hysteresis:
// small gains do not make servers chase each other), and never when a
// layer it serves now would be left to nobody.
func Rebalance(others Coverage, cur Span, rate, margin float64) (Span, bool) {
	next := ChooseSpan(others, cur.Len(), rate)
	if next == cur {
		return cur, false
	}
	for l := max(cur.First, 0); l < min(cur.Last, len(others)); l++ {
		if others[l] <= 0 && (l < next.First || l >= next.Last) {
			return cur, false
		}
	}
	if !better(others.Add(next, rate), others.Add(cur, rate), margin) {
		return cur, false
	}
	return next, true
}

// ExpertCoverage is, for each expert of a model's layers, the throughput
// (tokens per second) of the servers holding it at the layers of span:
// per layer the sum of the records' rates whose span holds the layer
// and whose set holds the expert (a record without a set holds every
// one), and per expert the weakest of its layers. Records as in
// NewCoverage; skip is left out.
func ExpertCoverage(recs []ServerRecord, span Span, experts int, skip peer.ID) []float64 {
	typical := TypicalRate(recs)
	out := make([]float64, experts)
	held := make([]float64, experts)
	for e := range out {
		out[e] = math.Inf(1)
	}
	for l := span.First; l < span.Last; l++ {
		whole := rateAt(recs, l, skip, typical, held)
		for e := range out {
			out[e] = min(out[e], whole+held[e])
		}
	}
	for e := range out {
		if math.IsInf(out[e], 1) {
			out[e] = 0
		}
	}
	return out
}

// ChooseExperts picks which n of a layer span's experts a server that
// can hold n of them should serve: those with the most load for their
// holders' throughput there, (1 + load) / ExpertCoverage, where load is
// the sum of the records' ExpertLoad (the router's picks announced by
// the servers of layers of span). So the experts no one holds come
// first (the most picked of them first), and with no load announced the
// ones whose holders offer the least throughput; ties to the lower
// index. n of at least experts is every one (nil).
func ChooseExperts(recs []ServerRecord, span Span, experts, n int, skip peer.ID) model.ExpertSet {
	if n >= experts {
		return nil
	}
	cov := ExpertCoverage(recs, span, experts, skip)
	load := ExpertDemand(recs, span, experts, skip)
	need := func(e int) float64 {
		if cov[e] <= 0 {
			return math.Inf(1)
		}
		return (1 + load[e]) / cov[e]
	}
	order := make([]int, experts)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(need(b), need(a)); c != 0 {
			return c
		}
		return cmp.Compare(load[b], load[a])
	})
	set := model.ExpertSet{}
	for _, e := range order[:max(n, 1)] {
		set = set.With(e)
	}
	return set
}

// ExpertDemand is, for each expert, the load the records announce for
// it (ExpertLoad, picks a minute) summed over the records whose span
// overlaps span; skip and leaving servers are left out.
func ExpertDemand(recs []ServerRecord, span Span, experts int, skip peer.ID) []float64 {
	out := make([]float64, experts)
	for i := range recs {
		r := &recs[i]
		if r.Peer == skip || r.State == StateLeaving || r.Span.Last <= span.First || r.Span.First >= span.Last {
			continue
		}
		for e, b := range r.ExpertLoad[:min(len(r.ExpertLoad), experts)] {
			out[e] += LoadOf(b)
		}
	}
	return out
}
