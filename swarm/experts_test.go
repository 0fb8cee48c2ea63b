package swarm_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/swarm"
)

// expertSwarm is a fixtureSwarm whose servers hold some experts each,
// with the records they would announce, which every server reads to
// find the holders of the experts it lacks.
type expertSwarm struct {
	*fixtureSwarm
	experts int
	mu      sync.Mutex
	recs    []swarm.ServerRecord
}

func (es *expertSwarm) records() []swarm.ServerRecord {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]swarm.ServerRecord(nil), es.recs...)
}

// server starts a server of span holding the experts of set, loaded from
// the blocks as a serving node pulls them: the layers' parts and only
// those experts' parts.
func (es *expertSwarm) server(span swarm.Span, set model.ExpertSet) *swarm.Server {
	return es.serverWith(span, set, swarm.ServerConfig{})
}

// serverWith is server with cfg's other fields.
func (es *expertSwarm) serverWith(span swarm.Span, set model.ExpertSet, cfg swarm.ServerConfig) *swarm.Server {
	t := es.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := shards.Load(ctx, es.st, es.root, shards.Span{First: span.First, Last: span.Last, Experts: set})
	if err != nil {
		t.Fatal(err)
	}
	for li := span.First; li < span.Last; li++ {
		if x := l.Weights.Layers[li].Experts; x != nil && set != nil && x.Holds(es.experts-1) != set.Has(es.experts-1) {
			t.Fatalf("layer %d loaded with expert %d: %v, the set %v", li, es.experts-1, x.Holds(es.experts-1), set)
		}
	}
	h := loopbackHost(t)
	cfg.Model, cfg.Span, cfg.Experts, cfg.Holders = es.root.String(), span, set, es.records
	s, err := swarm.NewServer(h.Libp2p(), l.Weights, backend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := es.client.Libp2p().Connect(ctx, h.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	es.mu.Lock()
	es.recs = append(es.recs, swarm.ServerRecord{Peer: h.ID(), Model: es.root.String(), Span: span, Experts: set,
		State: swarm.StateServing, FreePositions: 1 << 20, Addrs: h.AddrInfo().Addrs, Expires: time.Now().Add(time.Hour)})
	es.mu.Unlock()
	return s
}

// newExpertSwarm is the fixture swarm of fixture (a mixture of experts),
// its manifest, and its experts cut in two halves, low and high.
func newExpertSwarm(t *testing.T, fixture string) (es *expertSwarm, m *shards.Manifest, low, high model.ExpertSet) {
	t.Helper()
	es = &expertSwarm{fixtureSwarm: newFixtureSwarm(t, fixture, 12)}
	m, err := shards.GetManifest(context.Background(), es.st, es.root)
	if err != nil {
		t.Fatal(err)
	}
	es.experts = m.Config.Experts
	low, high = model.ExpertSet{}, model.ExpertSet{}
	for e := range es.experts {
		if e < es.experts/2 {
			low = low.With(e)
		} else {
			high = high.With(e)
		}
	}
	return es, m, low, high
}

// plan routes every layer over the records.
func (es *expertSwarm) plan() []swarm.Hop {
	es.t.Helper()
	hops, err := swarm.Plan(es.records(), swarm.PlanOptions{Span: swarm.Span{First: 0, Last: 2}, Experts: es.experts})
	if err != nil {
		es.t.Fatal(err)
	}
	return hops
}

// Mixtral- and Qwen3-MoE-style fixtures over four servers of both
// layers, two holding the first half of the experts of each layer and
// two the second half, so that
// no server holds every expert of any layer and each expert is held
// twice: the route planned over their records serves the layers at a
// server of half the experts, which sends the rows that chose the others
// to their holders, and the ids are the local run's. Then a holder of
// experts the route uses closes mid-generation: its rows go to the other
// holder of the same experts, and the ids still do not change.
func TestExpertsSplitOverServers(t *testing.T) {
	for _, name := range []string{"mixtral", "qwen3moe"} {
		t.Run(name, func(t *testing.T) {
			es, m, low, high := newExpertSwarm(t, name+".F32")
			span := swarm.Span{First: 0, Last: 2}
			var servers []*swarm.Server
			// No checks at second holders: which holder is asked when
			// stays as the choice makes it, so that the victim below is
			// asked again after it closes.
			for _, set := range []model.ExpertSet{low, high, low, high} {
				servers = append(servers, es.serverWith(span, set, swarm.ServerConfig{CheckExperts: -1}))
			}
			route := es.plan()
			if d := firstDiff(es.generate(route, swarm.ClientConfig{}, nil), es.want); d != "" {
				t.Fatal(d)
			}
			var served int64
			byPeer := map[string]int64{}
			for i, s := range servers {
				for _, layer := range s.ExpertLoad() {
					for _, n := range layer {
						served += n
						byPeer[es.recs[i].Peer.String()] += n
					}
				}
			}
			if served == 0 {
				t.Fatal("no server ran experts for another")
			}
			// The attention servers counted their routers' picks, k a
			// row at each layer: every slot sent to a holder among them.
			var picks int64
			for _, s := range servers {
				for _, layer := range s.RouterLoad() {
					for _, n := range layer {
						picks += n
					}
				}
			}
			if k := int64(m.Config.ExpertsUsed); picks%k != 0 || picks < served {
				t.Errorf("routers' picks %d (k %d) for %d slots run elsewhere", picks, k, served)
			}

			// Close, after 4 ids, a holder of experts that the route's
			// servers called.
			var victim *swarm.Server
			for i, s := range servers {
				if byPeer[es.recs[i].Peer.String()] > 0 && !onRoute(route, es.recs[i]) {
					victim = s
				}
			}
			if victim == nil {
				t.Fatal("every holder asked is on the route")
			}
			before := loadOf(servers)
			ids := es.generate(route, swarm.ClientConfig{}, func(k int) {
				if k == 4 {
					victim.Close()
				}
			})
			if d := firstDiff(ids, es.want); d != "" {
				t.Error(d)
			}
			if after := loadOf(servers); after <= before {
				t.Errorf("experts served for others: %d before the second run, %d after", before, after)
			}
			var failovers int64
			for _, s := range servers {
				failovers += s.Stats().ExpertFailovers
			}
			if failovers == 0 {
				t.Error("no request to the closed holder failed over to another")
			}
		})
	}
}

// A holder of experts that answers wrong (its answers scaled by 3, as
// from weights that are not the model's) among three holders of the same
// experts, asked by a server that checks every request at a second
// holder: the first answer of it that is checked differs from the
// others', a third holder referees, and the liar is banned; the text is
// the local run's, and the liar is not asked again. With the checks off
// the liar's answers go into the text.
func TestExpertLiarBanned(t *testing.T) {
	es, _, low, high := newExpertSwarm(t, "mixtral.F32")
	span := swarm.Span{First: 0, Last: 2}
	checking := es.serverWith(span, low, swarm.ServerConfig{CheckExperts: 1})
	unchecked := es.serverWith(span, low, swarm.ServerConfig{CheckExperts: -1})
	var holders []*swarm.Server
	for range 3 {
		holders = append(holders, es.server(span, high))
	}
	liar := holders[1]
	swarm.LieAboutExperts(liar, 3)
	liarID := es.recs[3].Peer
	load := func(s *swarm.Server) (n int64) {
		for _, layer := range s.ExpertLoad() {
			for _, k := range layer {
				n += k
			}
		}
		return n
	}

	// The checking server first, on a route of it alone.
	route := []swarm.Hop{{Peer: es.recs[0].Peer, Span: span}}
	if d := firstDiff(es.generate(route, swarm.ClientConfig{}, nil), es.want); d != "" {
		t.Errorf("with checks: %s", d)
	}
	st := checking.Stats()
	why := checking.BannedHolders()[liarID]
	t.Logf("checks %d, liars %d, failovers %d; the liar answered %d rows: %q", st.ExpertChecks, st.ExpertLiars, st.ExpertFailovers, load(liar), why)
	if why == "" || st.ExpertLiars != 1 || len(checking.BannedHolders()) != 1 {
		t.Fatalf("banned %v (%d liars), want the liar %s alone", checking.BannedHolders(), st.ExpertLiars, liarID)
	}
	if st.ExpertChecks == 0 {
		t.Error("no request checked")
	}
	before := load(liar)
	if d := firstDiff(es.generate(route, swarm.ClientConfig{}, nil), es.want); d != "" {
		t.Errorf("with checks, again: %s", d)
	}
	if after := load(liar); after != before {
		t.Errorf("the banned liar answered %d rows more", after-before)
	}

	// The server that does not check takes the liar's answers as they
	// come, once the least asked holders reach it.
	route = []swarm.Hop{{Peer: es.recs[1].Peer, Span: span}}
	before = load(liar)
	got := es.generate(route, swarm.ClientConfig{}, nil)
	if load(liar) == before {
		t.Fatal("the unchecking server never asked the liar")
	}
	if firstDiff(got, es.want) == "" {
		t.Error("the liar's answers left the text as it was: the test's lie is too small to see")
	}
	if unchecked.Stats().ExpertChecks != 0 || len(unchecked.BannedHolders()) != 0 {
		t.Errorf("checks off: %d checks, banned %v", unchecked.Stats().ExpertChecks, unchecked.BannedHolders())
	}
}

func onRoute(route []swarm.Hop, r swarm.ServerRecord) bool {
	for _, h := range route {
		if h.Peer == r.Peer {
			return true
		}
	}
	return false
}

func loadOf(servers []*swarm.Server) int64 {
	var n int64
	for _, s := range servers {
		for _, layer := range s.ExpertLoad() {
			for _, v := range layer {
				n += v
			}
		}
	}
	return n
}
