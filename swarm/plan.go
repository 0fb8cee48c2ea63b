package swarm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PlanOptions tune route planning.
type PlanOptions struct {
	// Span is the layers the route must cover.
	Span Span
	// Positions is how many KV-cache positions the session will hold; a
	// server with less room than that is used only when nothing else
	// covers its layers.
	Positions int
	// Exclude are peers not to use (failed or banned).
	Exclude []peer.ID
	// Latency is the round trip to a peer (nil or 0: DefaultLatency).
	Latency func(peer.ID) time.Duration
	// Experts is the model's routed experts a layer (0: none). A server
	// holding some of them (ServerRecord.Experts) serves a layer only
	// where the usable servers of the layer hold every expert together;
	// with Experts 0 such servers are not used.
	Experts int
}

// DefaultLatency stands for the round trip to a peer never measured.
const DefaultLatency = 50 * time.Millisecond

// noRoomPenalty is added to the cost of a hop on a server whose cache is
// too full for the session: it wins only where it is the only choice.
const noRoomPenalty = time.Hour

// NoRouteError says which layers of a model no usable server covers.
type NoRouteError struct {
	Model   string
	Missing []Span
}

func (e *NoRouteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "swarm: no server for layers ")
	for i, s := range e.Missing {
		if i > 0 {
			b.WriteString(", ")
		}
		if s.Len() == 1 {
			fmt.Fprintf(&b, "%d", s.First)
		} else {
			fmt.Fprintf(&b, "%d-%d", s.First, s.Last-1)
		}
	}
	fmt.Fprintf(&b, " of model %s; serve them with: mycel node --serve %s --layers %d:%d",
		e.Model, e.Model, e.Missing[0].First, e.Missing[0].Last)
	return b.String()
}

// Plan finds the fastest chain of hops covering opts.Span among the
// servers of recs: a shortest path over layer boundaries, where a hop on
// server s through layers [a,b) costs the round trip to s plus the time s
// takes for b-a of its layers (its span's time per token, pro rata).
// Servers not serving, expired, excluded or without room are avoided.
func Plan(recs []ServerRecord, opts PlanOptions) ([]Hop, error) {
	span := opts.Span
	if span.First < 0 || span.First >= span.Last {
		return nil, fmt.Errorf("swarm: plan: bad span %s", span)
	}
	excluded := map[peer.ID]bool{}
	for _, p := range opts.Exclude {
		excluded[p] = true
	}
	now := time.Now()
	var usable []*ServerRecord
	model := ""
	for i := range recs {
		r := &recs[i]
		model = r.Model
		if r.State != StateServing || excluded[r.Peer] || !r.Valid(now) {
			continue
		}
		if r.Span.Last <= span.First || r.Span.First >= span.Last {
			continue
		}
		usable = append(usable, r)
	}
	n := span.Last - span.First
	// whole[l-span.First]: the usable servers of layer l hold every
	// expert of it together, so a server of some of them may serve it.
	whole := make([]bool, n)
	for l := span.First; l < span.Last; l++ {
		have := make([]bool, opts.Experts)
		for _, r := range usable {
			if l >= r.Span.First && l < r.Span.Last {
				for _, e := range r.Experts.List(opts.Experts) {
					have[e] = true
				}
			}
		}
		whole[l-span.First] = opts.Experts > 0 && !slices.Contains(have, false)
	}
	serves := func(r *ServerRecord, l int) bool { return r.Experts == nil || whole[l-span.First] }
	// cost[i] is the best time to reach layer boundary span.First+i.
	cost := make([]float64, n+1)
	from := make([]int, n+1)
	via := make([]*ServerRecord, n+1)
	for i := range cost {
		cost[i] = math.Inf(1)
	}
	cost[0] = 0
	// Every edge goes forward, so boundaries in order are a topological
	// order: one pass relaxes every path.
	for i := 0; i < n; i++ {
		if math.IsInf(cost[i], 1) {
			continue
		}
		at := span.First + i
		for _, r := range usable {
			if at < r.Span.First || at >= r.Span.Last {
				continue
			}
			if !serves(r, at) {
				continue
			}
			hop := hopCost(r, opts)
			perLayer := 1 / (max(r.Throughput, minRate) * float64(r.Span.Len()))
			if r.Experts != nil {
				// A round trip to the holders of the experts it lacks, at
				// each layer.
				perLayer += DefaultLatency.Seconds()
			}
			for end := at + 1; end <= min(r.Span.Last, span.Last); end++ {
				if !serves(r, end-1) {
					break
				}
				j := end - span.First
				c := cost[i] + hop + perLayer*float64(end-at)
				if c < cost[j] {
					cost[j], from[j], via[j] = c, i, r
				}
			}
		}
	}
	if math.IsInf(cost[n], 1) {
		cov := make(Coverage, span.Last)
		for _, r := range usable {
			for l := max(r.Span.First, span.First); l < min(r.Span.Last, span.Last); l++ {
				if serves(r, l) {
					cov[l] = 1
				}
			}
		}
		var missing []Span
		for _, m := range cov.Missing() {
			if m.Last > span.First {
				missing = append(missing, Span{max(m.First, span.First), m.Last})
			}
		}
		return nil, &NoRouteError{Model: model, Missing: missing}
	}
	var hops []Hop
	for j := n; j > 0; j = from[j] {
		hops = append(hops, Hop{Peer: via[j].Peer, Span: Span{span.First + from[j], span.First + j}})
	}
	for i, k := 0, len(hops)-1; i < k; i, k = i+1, k-1 {
		hops[i], hops[k] = hops[k], hops[i]
	}
	return hops, nil
}

// hopCost is the fixed cost in seconds of a hop on r: its round trip,
// and a large penalty when its cache has no room for the session.
func hopCost(r *ServerRecord, opts PlanOptions) float64 {
	d := DefaultLatency
	if opts.Latency != nil {
		if l := opts.Latency(r.Peer); l > 0 {
			d = l
		}
	}
	if opts.Positions > 0 && (r.FreePositions < opts.Positions || (r.MaxPositions > 0 && r.MaxPositions < opts.Positions)) {
		d += noRoomPenalty
	}
	return d.Seconds()
}

// Planner plans the routes of one model's sessions from a Directory's
// records. Its Replan method fits ClientConfig.Replan.
type Planner struct {
	Dir    *Directory
	Model  string
	Layers int
	// Positions is the KV-cache room a session needs (0: any).
	Positions int
	// Experts is the model's routed experts a layer (PlanOptions.Experts).
	Experts int
}

// Route plans a chain over every layer of the model.
func (p *Planner) Route(ctx context.Context, exclude []peer.ID) ([]Hop, error) {
	return p.Replan(ctx, Span{0, p.Layers}, exclude)
}

// Replan plans a chain over span, leaving out exclude and this node
// itself (a host cannot open a stream to itself). It plans from the
// records at hand, and asks the network again only if they do not cover
// span and it has not just asked.
func (p *Planner) Replan(ctx context.Context, span Span, exclude []peer.ID) ([]Hop, error) {
	opts := PlanOptions{
		Span: span, Positions: p.Positions,
		Exclude: append(slices.Clone(exclude), p.Dir.h.ID()),
		Latency: p.Dir.Latency, Experts: p.Experts,
	}
	recs, looked, err := p.Dir.servers(ctx, p.Model)
	if err != nil {
		return nil, err
	}
	hops, err := Plan(recs, opts)
	var nr *NoRouteError
	if errors.As(err, &nr) && !looked {
		if err := p.Dir.Lookup(ctx, p.Model); err != nil {
			return nil, err
		}
		hops, err = Plan(p.Dir.Known(p.Model), opts)
	}
	if errors.As(err, &nr) {
		nr.Model = p.Model
	}
	return hops, err
}
