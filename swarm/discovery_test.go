package swarm_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/swarm"
)

// dhtSwarm is a set of real loopback nodes (TCP, TLS, yamux) with a
// Kademlia DHT and gossipsub each, joined through the first.
type dhtSwarm struct {
	t     *testing.T
	w     *model.Weights
	boot  []peer.AddrInfo
	nodes []*dhtNode
}

type dhtNode struct {
	h   *p2p.Host
	dir *swarm.Directory
	srv *swarm.Serving
}

func newDHTSwarm(t *testing.T) *dhtSwarm {
	return &dhtSwarm{t: t, w: builtinModel(t)}
}

// node starts a host and its directory, joined to the swarm's first node.
func (s *dhtSwarm) node() *dhtNode {
	t := s.t
	t.Helper()
	opts := []p2p.Option{p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(),
		p2p.MemoryDatastore()}
	if len(s.boot) > 0 {
		opts = append(opts, p2p.Bootstrap(s.boot...))
	}
	h, err := p2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.boot) > 0 {
		if err := h.WaitRoutable(ctx); err != nil {
			t.Fatal(err)
		}
	} else {
		s.boot = []peer.AddrInfo{h.AddrInfo()}
	}
	dir, err := swarm.NewDirectory(h.Libp2p(), swarm.DirectoryConfig{
		Routing: h.Routing(), PubSub: h.PubSub(), LookupInterval: 200 * time.Millisecond, LookupTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	n := &dhtNode{h: h, dir: dir}
	s.nodes = append(s.nodes, n)
	return n
}

// serve starts a node that chooses its span of at most maxLayers layers.
func (s *dhtSwarm) serve(maxLayers int, onEvent func(swarm.ServeEvent)) *dhtNode {
	t := s.t
	t.Helper()
	n := s.node()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := swarm.Serve(ctx, n.h.Libp2p(), n.dir, swarm.ServeConfig{
		Model: modelID, Layers: s.w.Config.Layers, MaxLayers: maxLayers,
		Load: func(context.Context, swarm.Span, model.ExpertSet) (*model.Weights, func() error, error) {
			return s.w, func() error { return nil }, nil
		},
		Backend:           backend(t),
		RebalanceInterval: time.Second, RebalanceDelay: 300 * time.Millisecond,
		OnEvent: onEvent,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	n.srv = srv
	return n
}

// waitCovered waits until dir knows serving records that cover every
// layer, and returns them.
func waitCovered(t *testing.T, dir *swarm.Directory, layers int, ok func([]swarm.ServerRecord) bool) []swarm.ServerRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		recs, err := dir.Servers(ctx, modelID)
		cancel()
		if err == nil {
			var serving []swarm.ServerRecord
			for _, r := range recs {
				if r.State == swarm.StateServing {
					serving = append(serving, r)
				}
			}
			if len(swarm.NewCoverage(layers, 0, serving, "").Missing()) == 0 && (ok == nil || ok(serving)) {
				return serving
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the swarm did not reach the coverage wanted; records: %v (err %v)", recs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Five volunteers, each able to hold two of the built-in model's six layers,
// choose spans that together cover the model; a client that knows one
// node finds them through the DHT and pubsub, plans a route and gets the
// reference ids (f32 on the wire) and the same first 20 with f16.
func TestServersChooseSpansAndClientPlans(t *testing.T) {
	s := newDHTSwarm(t)
	layers := s.w.Config.Layers
	for range 5 {
		s.serve(2, nil)
	}
	for _, n := range s.nodes {
		if n.srv.Throughput() <= 0 {
			t.Fatalf("server %s measured no throughput", n.h.ID())
		}
	}
	// The client sees the five servers cover every layer (a node that
	// chose on a stale view has moved by then).
	c := s.node()
	recs := waitCovered(t, c.dir, layers, func(r []swarm.ServerRecord) bool { return len(r) == 5 })
	var spans []swarm.Span
	for _, r := range recs {
		spans = append(spans, r.Span)
		if r.Span.Len() != 2 {
			t.Fatalf("span %s: want 2 layers", r.Span)
		}
		if r.Throughput <= 0 || r.FreePositions <= 0 || r.MaxPositions != s.w.Config.Context {
			t.Fatalf("record %+v lacks throughput or room", r)
		}
		// No session yet: the whole default budget, in positions of the
		// server's (f16) KV cache over its span.
		perPos := model.CacheBytes(&s.w.Config, model.DefaultKVType, r.Span.Len(), 1)
		if want := int(swarm.DefaultMemoryBudget / perPos); r.FreePositions != want {
			t.Fatalf("record %+v: %d free positions, want %d", r, r.FreePositions, want)
		}
	}
	t.Logf("spans: %v", spans)
	for _, wire := range []kernels.DType{kernels.F32, kernels.F16} {
		ev := &events{t: t}
		cl, route := s.plannedClient(c, swarm.ClientConfig{DType: wire, OnEvent: ev.add})
		ids, err := generate(t, cl, route, len(refFromBOS), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := refFromBOS
		if wire == kernels.F16 {
			ids, want = ids[:20], want[:20]
		}
		if d := firstDiff(ids, want); d != "" {
			t.Fatalf("%s wire, route %v: %s", wire, route, d)
		}
	}
}

// plannedClient makes a client on node n that plans its routes from n's
// directory, and plans a first route over every layer.
func (s *dhtSwarm) plannedClient(n *dhtNode, cfg swarm.ClientConfig) (*swarm.Client, []swarm.Hop) {
	t := s.t
	t.Helper()
	pl := &swarm.Planner{Dir: n.dir, Model: modelID, Layers: s.w.Config.Layers, Positions: 64}
	cfg.Model, cfg.Replan = modelID, pl.Replan
	cl, err := swarm.NewClient(n.h.Libp2p(), s.w, backend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	route, err := pl.Route(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRoute(route, s.w.Config.Layers); err != nil {
		t.Fatal(err)
	}
	return cl, route
}

func checkRoute(route []swarm.Hop, layers int) error {
	at := 0
	for _, h := range route {
		if h.Span.First != at || h.Span.Last <= at {
			return errors.New("route " + swarm.Span{}.String() + " does not chain")
		}
		at = h.Span.Last
	}
	if at != layers {
		return errors.New("route does not reach the last layer")
	}
	return nil
}

// A server that leaves gracefully withdraws its record; the layers only it
// served are taken over by a node whose own layers others also hold, and
// generation works again through the new coverage.
func TestGracefulLeaveTakeover(t *testing.T) {
	s := newDHTSwarm(t)
	layers := s.w.Config.Layers
	var mu sync.Mutex
	var moves []swarm.ServeEvent
	onEvent := func(ev swarm.ServeEvent) {
		t.Logf("serve event: %s", ev)
		if ev.Moved {
			mu.Lock()
			moves = append(moves, ev)
			mu.Unlock()
		}
	}
	// Each holds three of the six layers: the first two take [0,3) and
	// [3,6); the third doubles one of them, depending on their measured
	// speeds.
	a := s.serve(3, onEvent)
	b := s.serve(3, onEvent)
	c := s.serve(3, onEvent)
	nodes := []*dhtNode{a, b, c}
	client := s.node()
	waitCovered(t, client.dir, layers, func(r []swarm.ServerRecord) bool { return len(r) == 3 })
	// (A node that chose on a stale view has moved by now; count only
	// the moves from here on.)
	mu.Lock()
	before := len(moves)
	mu.Unlock()

	// The node that alone serves some layers leaves: those layers have no
	// server until another node moves.
	var victim *dhtNode
	for i, n := range nodes {
		sp := n.srv.Span()
		for l := sp.First; l < sp.Last && victim == nil; l++ {
			alone := true
			for j, o := range nodes {
				if j != i && o.srv.Span().First <= l && l < o.srv.Span().Last {
					alone = false
				}
			}
			if alone {
				victim = n
			}
		}
	}
	if victim == nil {
		t.Fatalf("no node serves a layer alone: %s %s %s", a.srv.Span(), b.srv.Span(), c.srv.Span())
	}
	t.Logf("stopping the node of layers %s", victim.srv.Span())
	if err := victim.srv.Close(); err != nil {
		t.Fatal(err)
	}
	recs := waitCovered(t, client.dir, layers, func(r []swarm.ServerRecord) bool {
		for _, x := range r {
			if x.Peer == victim.h.ID() {
				return false
			}
		}
		return len(r) == 2
	})
	// The move's event follows its announcement; give it a moment, and
	// give a second mover the time to show up.
	nmoves := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		nmoves = len(moves) - before
		mu.Unlock()
		if nmoves > 0 {
			break
		}
	}
	time.Sleep(time.Second)
	mu.Lock()
	nmoves = len(moves) - before
	mu.Unlock()
	if nmoves != 1 {
		t.Fatalf("%d nodes moved, want exactly 1 (records %v)", nmoves, recs)
	}
	cl, route := s.plannedClient(client, swarm.ClientConfig{DType: kernels.F32})
	for _, h := range route {
		if h.Peer == victim.h.ID() {
			t.Fatalf("route %v goes through the node that left", route)
		}
	}
	ids, err := generate(t, cl, route, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:20]); d != "" {
		t.Fatal(d)
	}
}

// With no server for some layers, planning says which and how to serve
// them.
func TestPlannerNamesMissingLayers(t *testing.T) {
	s := newDHTSwarm(t)
	n := s.node()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := swarm.Serve(ctx, n.h.Libp2p(), n.dir, swarm.ServeConfig{
		Model: modelID, Layers: s.w.Config.Layers, Span: swarm.Span{0, 2},
		Load: func(context.Context, swarm.Span, model.ExpertSet) (*model.Weights, func() error, error) {
			return s.w, func() error { return nil }, nil
		},
		Backend: backend(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := s.node()
	pl := &swarm.Planner{Dir: c.dir, Model: modelID, Layers: s.w.Config.Layers}
	var nr *swarm.NoRouteError
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = pl.Route(ctx, nil)
		if errors.As(err, &nr) && len(nr.Missing) == 1 && nr.Missing[0] == (swarm.Span{2, s.w.Config.Layers}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Route: %v; want the missing layers 2-%d", err, s.w.Config.Layers-1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("error: %v", err)
}

// A server of the route dies mid-generation without a word (its host
// closes): the client's planner finds another chain for that span among
// the records (dropping the dead server), replays, and the ids are the
// reference's; the departure and the re-route are in the events.
func TestFailoverThroughDirectory(t *testing.T) {
	s := newDHTSwarm(t)
	layers := s.w.Config.Layers
	for range 4 {
		s.serve(3, nil)
	}
	c := s.node()
	waitCovered(t, c.dir, layers, func(r []swarm.ServerRecord) bool { return len(r) == 4 })
	ev := &events{t: t}
	cl, route := s.plannedClient(c, swarm.ClientConfig{DType: kernels.F32, OnEvent: ev.add, StepTimeout: 5 * time.Second})
	// The victim: a hop whose layers another server also holds.
	var victim *dhtNode
	for _, h := range route {
		for _, n := range s.nodes {
			if n.h.ID() == h.Peer && len(swarm.NewCoverage(layers, 0, c.dir.Known(modelID), h.Peer).Missing()) == 0 {
				victim = n
			}
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		t.Fatalf("no hop of %v can be spared", route)
	}
	ids, err := generate(t, cl, route, len(refFromBOS), func(n int) {
		if n == 12 {
			victim.h.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS); d != "" {
		t.Fatal(d)
	}
	rr := ev.kinds(swarm.EventLeft)
	if len(rr) == 0 || rr[0].Replaced != victim.h.ID() || len(ev.kinds(swarm.EventBanned)) != 0 {
		t.Fatalf("left events %v, bans %v: want %s left, not banned", rr, ev.kinds(swarm.EventBanned), victim.h.ID())
	}
}
