package swarm_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/swarm"
)

// perturbed returns a copy of w in which layer's attention output matrix
// Wo is scaled by f: a real model with wrong weights in one layer. The
// copy shares every other matrix with w and must not be closed.
func perturbed(t *testing.T, w *model.Weights, layer int, f float32) *model.Weights {
	t.Helper()
	cp := *w
	cp.Layers = slices.Clone(w.Layers)
	l := *w.Layers[layer]
	vals := decodeMatrix(l.Wo)
	for i := range vals {
		vals[i] *= f
	}
	wo, err := kernels.NewMatrix(l.Wo.Type, l.Wo.Rows, l.Wo.Cols, kernels.Encode(nil, l.Wo.Type, vals))
	if err != nil {
		t.Fatal(err)
	}
	l.Wo = wo
	cp.Layers[layer] = &l
	return &cp
}

// decodeMatrix returns m's values in float32.
func decodeMatrix(m *kernels.Matrix) []float32 {
	out := make([]float32, m.Rows*m.Cols)
	for r := range m.Rows {
		m.RowF32(out[r*m.Cols:(r+1)*m.Cols], r)
	}
	return out
}

// quantizedQ8 copies w with every matrix of its layers in Q8_0: the same
// model run by a server that quantized it.
func quantizedQ8(t *testing.T, w *model.Weights) *model.Weights {
	t.Helper()
	q := func(m *kernels.Matrix) *kernels.Matrix {
		out, err := kernels.NewMatrix(kernels.Q8_0, m.Rows, m.Cols, kernels.Encode(nil, kernels.Q8_0, decodeMatrix(m)))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cp := *w
	cp.Layers = make([]*model.Layer, len(w.Layers))
	for i, l := range w.Layers {
		ql := *l
		ql.Wq, ql.Wk, ql.Wv, ql.Wo, ql.W1, ql.W2, ql.W3 = q(l.Wq), q(l.Wk), q(l.Wv), q(l.Wo), q(l.W1), q(l.W2), q(l.W3)
		cp.Layers[i] = &ql
	}
	return &cp
}

// serverWith starts a server for span on a new host, computing with w.
func (n *testNet) serverWith(w *model.Weights, span swarm.Span) swarm.Hop {
	n.t.Helper()
	h := n.host()
	s, err := swarm.NewServer(h, w, backend(n.t), swarm.ServerConfig{Model: modelID, Span: span})
	if err != nil {
		n.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { s.Close() })
	return swarm.Hop{Peer: h.ID(), Span: span}
}

// run generates greedily from BOS like generate, and returns the session
// (closed) for its route and shadows.
func run(t *testing.T, c *swarm.Client, route []swarm.Hop, n int, after func(int)) ([]int, *swarm.Session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := c.Open(ctx, route, 64)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	var ids []int
	_, err = s.Generate(ctx, []int{1}, model.GenerateOptions{MaxTokens: n}, func(id int) error {
		ids = append(ids, id)
		if after != nil {
			after(len(ids))
		}
		return nil
	})
	return ids, s, err
}

// all returns every event collected.
func (e *events) all() []swarm.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ev)
}

func (e *events) reset() {
	e.mu.Lock()
	e.ev = nil
	e.mu.Unlock()
}

// rowDiff is max|a-b| / max(max|a|, max|b|, 1) over one row, the measure
// DefaultVerifyTolerance bounds.
func rowDiff(a, b []float32) float64 {
	d, scale := 0.0, 1.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
		scale = max(scale, math.Abs(float64(a[i])), math.Abs(float64(b[i])))
	}
	return d / scale
}

func wire(dt kernels.DType, x []float32) []float32 {
	out := make([]float32, len(x))
	kernels.Decode(out, dt, kernels.Encode(nil, dt, x))
	return out
}

// TestVerifyToleranceMargins measures, on the built-in model's real
// hidden states, how far honest results of layers [2,4) can be apart (a
// prompt run as one matrix-matrix pass against the same positions one at
// a time, then rounded to the wire dtype) and how far a server whose
// layer 2 Wo is scaled by 1.25 is from an honest one.
// DefaultVerifyTolerance must sit well between the two: above every
// honest row, below every lying one. For scale, it also logs how far a
// server running a Q8_0 copy of the weights is from one running the
// file's.
func TestVerifyToleranceMargins(t *testing.T) {
	n := newNet(t)
	be := backend(t)
	honest := model.NewEngine(n.w, be)
	liar := model.NewEngine(perturbed(t, n.w, 2, 1.25), be)
	quant := model.NewEngine(quantizedQ8(t, n.w), be)
	const pos = 40
	dim := n.w.Config.Dim
	ids := append([]int{1}, refFromBOS[:pos-1]...)
	x := make([]float32, pos*dim)
	if err := honest.Embed(x, ids); err != nil {
		t.Fatal(err)
	}
	c01, err := honest.NewCache(0, 2, pos)
	if err != nil {
		t.Fatal(err)
	}
	if err := honest.Forward(c01, x, pos); err != nil {
		t.Fatal(err)
	}
	// x holds the real inputs of layer 2 for 40 positions.
	forward := func(e *model.Engine, oneByOne bool) []float32 {
		c, err := e.NewCache(2, 4, pos)
		if err != nil {
			t.Fatal(err)
		}
		y := slices.Clone(x)
		if !oneByOne {
			if err := e.Forward(c, y, pos); err != nil {
				t.Fatal(err)
			}
			return y
		}
		for p := range pos {
			if err := e.Forward(c, y[p*dim:(p+1)*dim], 1); err != nil {
				t.Fatal(err)
			}
		}
		return y
	}
	batched, single := forward(honest, false), forward(honest, true)
	lying, q8out := forward(liar, true), forward(quant, true)
	tol := float64(swarm.DefaultVerifyTolerance)
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		a, b, l, q := wire(dt, batched), wire(dt, single), wire(dt, lying), wire(dt, q8out)
		worstHonest, leastLiar, worstQ8 := 0.0, math.Inf(1), 0.0
		for p := range pos {
			r := func(v []float32) []float32 { return v[p*dim : (p+1)*dim] }
			worstHonest = max(worstHonest, rowDiff(r(a), r(b)))
			leastLiar = min(leastLiar, rowDiff(r(b), r(l)))
			worstQ8 = max(worstQ8, rowDiff(r(b), r(q)))
		}
		t.Logf("%s: honest rows differ by at most %.2g, the liar's by at least %.2g, q8_0 against the file's weights by up to %.2g (tolerance %.2g)",
			dt, worstHonest, leastLiar, worstQ8, tol)
		if worstHonest > tol/2 {
			t.Errorf("%s: honest rows differ by %.3g, too close to the tolerance %.3g", dt, worstHonest, tol)
		}
		if leastLiar <= tol {
			t.Errorf("%s: a row of the liar is only %.3g off, within the tolerance %.3g", dt, leastLiar, tol)
		}
	}
}

// TestVerifyCatchesLiar: three servers hold layers [2,4), one of them
// with wrong weights. With Verify on, the client catches it whether it is
// the primary or the shadow, bans it on a referee's word and generates
// exactly the reference ids.
func TestVerifyCatchesLiar(t *testing.T) {
	for _, role := range []string{"primary", "shadow"} {
		t.Run("liar as "+role, func(t *testing.T) {
			n := newNet(t)
			_, route := n.pipeline(swarm.ServerConfig{})
			span := route[1].Span
			liar := n.serverWith(perturbed(t, n.w, 2, 1.25), span)
			other := n.serverWith(n.w, span)
			ev := &events{t: t}
			cfg := swarm.ClientConfig{DType: kernels.F32, Verify: true, OnEvent: ev.add}
			r := slices.Clone(route)
			if role == "primary" {
				r[1] = liar
				cfg.Alternatives = []swarm.Hop{route[1], other}
			} else {
				cfg.Alternatives = []swarm.Hop{liar, other}
			}
			c := n.client(cfg)
			ids, s, err := run(t, c, r, 40, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(ids, refFromBOS); d != "" {
				t.Error(d)
			}
			if b := c.Banned(); len(b) != 1 || b[0] != liar.Peer {
				t.Errorf("banned %v, want only the liar %s", b, liar.Peer)
			}
			mm := ev.kinds(swarm.EventMismatch)
			if len(mm) != 1 || !errors.Is(mm[0].Err, swarm.ErrVerification) ||
				(mm[0].Hop.Peer != liar.Peer && mm[0].Other != liar.Peer) {
				t.Errorf("mismatch events %v, want one naming %s", mm, liar.Peer)
			}
			bans := ev.kinds(swarm.EventBanned)
			if len(bans) != 1 || bans[0].Hop.Peer != liar.Peer || !errors.Is(bans[0].Err, swarm.ErrVerification) {
				t.Errorf("ban events %v, want one for %s", bans, liar.Peer)
			}
			// The mismatch comes before the ban.
			all := ev.all()
			if slices.IndexFunc(all, func(e swarm.Event) bool { return e.Kind == swarm.EventMismatch }) >
				slices.IndexFunc(all, func(e swarm.Event) bool { return e.Kind == swarm.EventBanned }) {
				t.Errorf("ban before mismatch: %v", all)
			}
			// Layers [2,4) end with two honest servers; the others had no
			// spare and ran unverified.
			got := []swarm.Hop{s.Route()[1], s.Shadows()[1]}
			if slices.Contains(got, liar) || got[0].Span != span || got[1].Span != span {
				t.Errorf("hop [2,4) ends on %v", got)
			}
			if role == "shadow" && got[0] != route[1] {
				t.Errorf("the honest primary %s was replaced by %s", route[1], got[0])
			}
			if u := ev.kinds(swarm.EventUnverified); len(u) != 2 || u[0].Hop != route[0] || u[1].Hop != route[2] {
				t.Errorf("unverified events %v, want hops %s and %s", u, route[0], route[2])
			}
		})
	}
}

// TestVerifyNoReferee: two servers of a span disagree and there is no
// third; the client cannot tell which one lies and stops with
// ErrVerification naming both, banning neither.
func TestVerifyNoReferee(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	liar := n.serverWith(perturbed(t, n.w, 3, 1.25), route[1].Span)
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F16, Verify: true, Alternatives: []swarm.Hop{liar}, OnEvent: ev.add})
	ids, _, err := run(t, c, route, 20, nil)
	if !errors.Is(err, swarm.ErrVerification) || !errors.Is(err, swarm.ErrNoRoute) {
		t.Fatalf("got ids %v, err %v; want ErrVerification for want of a referee", ids, err)
	}
	for _, p := range []peer.ID{route[1].Peer, liar.Peer} {
		if !strings.Contains(err.Error(), p.String()) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}
	t.Logf("%v", err)
	if b := c.Banned(); len(b) != 0 {
		t.Errorf("banned %v, want nobody", b)
	}
	if mm := ev.kinds(swarm.EventMismatch); len(mm) != 1 {
		t.Errorf("mismatch events %v, want one", mm)
	}
}

// TestVerifyHonest: with an honest swarm and a shadow for every hop,
// verified generation gives exactly the ids of unverified generation, in
// every wire dtype, and nobody is banned.
func TestVerifyHonest(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	_, spares := n.pipeline(swarm.ServerConfig{})
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			want, err := generate(t, n.client(swarm.ClientConfig{DType: dt}), route, 40, nil)
			if err != nil {
				t.Fatal(err)
			}
			ev := &events{t: t}
			c := n.client(swarm.ClientConfig{DType: dt, Verify: true, Alternatives: spares, OnEvent: ev.add})
			ids, s, err := run(t, c, route, 40, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(ids, want); d != "" {
				t.Error(d)
			}
			if !slices.Equal(s.Shadows(), spares) || !slices.Equal(s.Route(), route) {
				t.Errorf("route %v shadows %v, want %v and %v", s.Route(), s.Shadows(), route, spares)
			}
			for _, k := range []swarm.EventKind{swarm.EventMismatch, swarm.EventBanned, swarm.EventUnverified, swarm.EventHopFailed} {
				if e := ev.kinds(k); len(e) != 0 {
					t.Errorf("%s events: %v", k, e)
				}
			}
			if b := c.Banned(); len(b) != 0 {
				t.Errorf("banned %v", b)
			}
		})
	}
}

// TestVerifyFailover: with Verify on, a primary that dies is replaced by
// its shadow, which holds the same cache, and a shadow that dies is
// replaced; either way a spare joins as the new shadow after a replay,
// and the ids stay the reference ones.
func TestVerifyFailover(t *testing.T) {
	for _, victim := range []string{"primary", "shadow"} {
		t.Run(victim, func(t *testing.T) {
			n := newNet(t)
			srvs, route := n.pipeline(swarm.ServerConfig{})
			span := route[1].Span
			shadowSrv, shadow := n.server(span, swarm.ServerConfig{})
			spare := n.serverWith(n.w, span)
			primarySrv := srvs[1]
			ev := &events{t: t}
			c := n.client(swarm.ClientConfig{DType: kernels.F32, Verify: true,
				Alternatives: []swarm.Hop{shadow, spare}, OnEvent: ev.add})
			dead := route[1]
			if victim == "shadow" {
				dead = shadow
			}
			ids, s, err := run(t, c, route, 40, func(k int) {
				if k != 15 {
					return
				}
				if victim == "primary" {
					primarySrv.Close()
				} else {
					shadowSrv.Close()
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(ids, refFromBOS); d != "" {
				t.Error(d)
			}
			wantPrimary := route[1]
			if victim == "primary" {
				wantPrimary = shadow
				lv := ev.kinds(swarm.EventLeft)
				if len(lv) != 1 || lv[0].Hop != shadow || lv[0].Replaced != dead.Peer || lv[0].Replayed != 0 {
					t.Errorf("left events %v, want the shadow taking over with nothing replayed", lv)
				}
			} else if lv := ev.kinds(swarm.EventLeft); len(lv) != 1 || lv[0].Replaced != dead.Peer || lv[0].Other != route[1].Peer || lv[0].Hop.Peer != "" {
				t.Errorf("left events %v, want the shadow of %s leaving", lv, route[1].Peer)
			}
			if got := []swarm.Hop{s.Route()[1], s.Shadows()[1]}; got[0] != wantPrimary || got[1] != spare {
				t.Errorf("hop [2,4) ends on %v, want %s shadowed by %s", got, wantPrimary, spare)
			}
			sh := ev.kinds(swarm.EventShadow)
			if len(sh) != 2 || sh[1].Hop != spare || sh[1].Replayed != 16 {
				t.Errorf("shadow events %v, want the spare joining after 16 positions", sh)
			}
			if b, x := c.Banned(), c.Excluded(); len(b) != 0 || len(x) != 1 || x[0] != dead.Peer {
				t.Errorf("banned %v, avoided %v: want %s avoided, nobody banned", b, x, dead.Peer)
			}
		})
	}
}

// TestBanAcrossSessions: a server that failed a hop in one session is
// banned by the client, so the next session does not even try it; the
// ban expires after BanDuration. Client.Ban keeps an alternative out of a
// failover too.
func TestBanAcrossSessions(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{})
	_, replica := n.server(route[1].Span, swarm.ServerConfig{})
	var mu sync.Mutex
	var steps int
	silent := fakeServer(t, n, route[1].Span, func(network.Stream, *swarm.Step) {
		mu.Lock()
		steps++
		mu.Unlock()
	})
	stepsSeen := func() int {
		mu.Lock()
		defer mu.Unlock()
		return steps
	}
	ev := &events{t: t}
	const banFor = 1500 * time.Millisecond
	c := n.client(swarm.ClientConfig{DType: kernels.F32, StepTimeout: 300 * time.Millisecond, BanDuration: banFor,
		Alternatives: []swarm.Hop{replica}, OnEvent: ev.add})
	bad := []swarm.Hop{route[0], silent, route[2]}

	// Session 1 finds out at the step deadline.
	ids, _, err := run(t, c, bad, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:10]); d != "" {
		t.Error(d)
	}
	if b := c.Banned(); len(b) != 1 || b[0] != silent.Peer {
		t.Fatalf("banned %v after the failure, want %s", b, silent.Peer)
	}
	if bans := ev.kinds(swarm.EventBanned); len(bans) != 1 || !errors.Is(bans[0].Err, swarm.ErrDeadline) {
		t.Errorf("ban events %v, want one for the deadline", bans)
	}
	if stepsSeen() != 1 {
		t.Fatalf("the silent server saw %d steps, want 1", stepsSeen())
	}

	// Session 2 skips it at Open: no step reaches it, nothing is replayed.
	ev.reset()
	start := time.Now()
	ids, s, err := run(t, c, bad, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:10]); d != "" {
		t.Error(d)
	}
	if stepsSeen() != 1 || s.Route()[1] != replica {
		t.Errorf("second session: the banned server saw %d steps, route %v", stepsSeen(), s.Route())
	}
	if f := ev.kinds(swarm.EventHopFailed); len(f) != 1 || !errors.Is(f[0].Err, swarm.ErrBanned) || !errors.Is(f[0].Err, swarm.ErrDeadline) {
		t.Errorf("hop failures %v, want one saying the peer is banned and why", f)
	}
	if re := ev.kinds(swarm.EventReroute); len(re) != 1 || re[0].Replaced != silent.Peer || re[0].Replayed != 0 {
		t.Errorf("re-routes %v", re)
	}
	if took := time.Since(start); took > banFor/2 {
		t.Errorf("second session took %v: it waited on the banned server?", took)
	}
	if len(ev.kinds(swarm.EventBanned)) != 0 {
		t.Errorf("a banned peer banned again: %v", ev.kinds(swarm.EventBanned))
	}

	// With no replacement, Open names the banned peer.
	lone := n.client(swarm.ClientConfig{DType: kernels.F32})
	lone.Ban(route[1].Peer, time.Minute, errors.New("test ban"))
	if _, err := lone.Open(context.Background(), route, 16); !errors.Is(err, swarm.ErrBanned) || !errors.Is(err, swarm.ErrNoRoute) ||
		!strings.Contains(err.Error(), route[1].Peer.String()) || !strings.Contains(err.Error(), "test ban") {
		t.Errorf("open through a banned peer: %v", err)
	}

	// The ban ends; the next session tries the server again.
	waitFor(t, func() bool { return len(c.Banned()) == 0 })
	ev.reset()
	if _, _, err = run(t, c, bad, 10, nil); err != nil {
		t.Fatal(err)
	}
	if stepsSeen() != 2 {
		t.Errorf("after the ban: the server saw %d steps, want 2", stepsSeen())
	}
	if b := c.Banned(); len(b) != 1 || b[0] != silent.Peer || len(ev.kinds(swarm.EventBanned)) != 1 {
		t.Errorf("banned %v after failing again, want %s", b, silent.Peer)
	}

	// Client.Ban: a banned alternative is passed over, and Replan is told.
	var excluded [][]peer.ID
	c2 := n.client(swarm.ClientConfig{DType: kernels.F32, Alternatives: []swarm.Hop{silent, replica},
		Replan: func(_ context.Context, span swarm.Span, exclude []peer.ID) ([]swarm.Hop, error) {
			excluded = append(excluded, exclude)
			return nil, errors.New("nothing else")
		}})
	c2.Ban(silent.Peer, time.Minute, errors.New("known bad"))
	ids, s, err = run(t, c2, route, 20, func(k int) {
		if k == 5 {
			srvs[1].Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:20]); d != "" {
		t.Error(d)
	}
	if s.Route()[1] != replica || stepsSeen() != 2 {
		t.Errorf("route %v, the banned server saw %d steps", s.Route(), stepsSeen())
	}
	// Layer [2,4)'s first server is gone too: a second failover finds
	// only Replan, which hears of both the failed and the banned peer.
	excluded = nil
	c3 := n.client(swarm.ClientConfig{DType: kernels.F32, Alternatives: []swarm.Hop{silent},
		Replan: func(_ context.Context, span swarm.Span, exclude []peer.ID) ([]swarm.Hop, error) {
			excluded = append(excluded, exclude)
			return nil, errors.New("nothing else")
		}})
	c3.Ban(silent.Peer, time.Minute, errors.New("known bad"))
	_, err = c3.Open(context.Background(), route, 16)
	want := []peer.ID{route[1].Peer, silent.Peer}
	slices.Sort(want)
	if !errors.Is(err, swarm.ErrNoRoute) || len(excluded) != 1 || !slices.Equal(excluded[0], want) {
		t.Errorf("open with the span's server gone: %v; replan excluded %v, want %v", err, excluded, want)
	}

	// A short ban ends on its own; a longer one in force is not
	// shortened. The server that left is avoided, not banned.
	c2.Ban(replica.Peer, 50*time.Millisecond, nil)
	c2.Ban(silent.Peer, time.Millisecond, nil)
	want = []peer.ID{replica.Peer, silent.Peer}
	slices.Sort(want)
	if b := c2.Banned(); !slices.Equal(b, want) {
		t.Errorf("banned %v, want %v", b, want)
	}
	if x := c2.Excluded(); len(x) != 3 || !slices.Contains(x, route[1].Peer) {
		t.Errorf("excluded %v, want the bans and %s, which left", x, route[1].Peer)
	}
	// A ban replaces an avoidance.
	c2.Ban(route[1].Peer, time.Minute, errors.New("lied after all"))
	if b := c2.Banned(); !slices.Contains(b, route[1].Peer) {
		t.Errorf("banned %v after banning %s", b, route[1].Peer)
	}
	want = append(want, route[1].Peer)
	slices.Sort(want)
	want = slices.DeleteFunc(want, func(p peer.ID) bool { return p == replica.Peer })
	waitFor(t, func() bool { return slices.Equal(c2.Banned(), want) })
}

// TestVerifyChainLiar: the two servers of layers [2,4) die together and
// Replan splits the span over two servers, the first of which lies. The
// replay fed the second one the liar's outputs; once the first hop's
// shadow and a referee out-vote the liar, the second hop is fed the
// majority's outputs again, so the ids stay the reference ones.
func TestVerifyChainLiar(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{})
	bSrv2, b2 := n.server(route[1].Span, swarm.ServerConfig{})
	lo, hi := swarm.Span{First: 2, Last: 3}, swarm.Span{First: 3, Last: 4}
	liar := n.serverWith(perturbed(t, n.w, 2, 1.25), lo)
	mSrv, m := n.server(hi, swarm.ServerConfig{})
	h1, h2 := n.serverWith(n.w, lo), n.serverWith(n.w, lo)
	m2 := n.serverWith(n.w, hi)

	// The liar alone changes the output.
	bad, err := generate(t, n.client(swarm.ClientConfig{DType: kernels.F32}), []swarm.Hop{route[0], liar, m, route[2]}, 40, nil)
	if err != nil {
		t.Fatal(err)
	}
	if firstDiff(bad, refFromBOS) == "" {
		t.Fatal("the perturbed server gives the reference ids")
	}
	// The server counts a step just after it hands the result over.
	waitFor(t, func() bool { return mSrv.Stats().Steps == 40 })

	byspan := map[swarm.Span][]swarm.Hop{lo: {h1, h2}, hi: {m2}}
	var asked []swarm.Span
	replan := func(_ context.Context, span swarm.Span, exclude []peer.ID) ([]swarm.Hop, error) {
		asked = append(asked, span)
		if span == route[1].Span {
			return []swarm.Hop{liar, m}, nil
		}
		for _, h := range byspan[span] {
			if !slices.Contains(exclude, h.Peer) {
				return []swarm.Hop{h}, nil
			}
		}
		return nil, errors.New("none left")
	}
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F32, Verify: true, Alternatives: []swarm.Hop{b2}, Replan: replan, OnEvent: ev.add})
	ids, s, err := run(t, c, route, 40, func(k int) {
		if k == 7 {
			srvs[1].Close()
			bSrv2.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS); d != "" {
		t.Error(d)
	}
	if r, sh := s.Route(), s.Shadows(); !slices.Equal(r, []swarm.Hop{route[0], h1, m, route[2]}) || sh[1] != h2 || sh[2] != m2 {
		t.Errorf("route %v shadows %v", r, sh)
	}
	// The two that died are avoided; only the liar is banned.
	if b := c.Banned(); !slices.Equal(b, []peer.ID{liar.Peer}) {
		t.Errorf("banned %v, want %v", b, liar.Peer)
	}
	want := []peer.ID{route[1].Peer, b2.Peer, liar.Peer}
	slices.Sort(want)
	if x := c.Excluded(); !slices.Equal(x, want) {
		t.Errorf("excluded %v, want %v", x, want)
	}
	if mm := ev.kinds(swarm.EventMismatch); len(mm) != 1 || mm[0].Hop != liar || mm[0].Other != h1.Peer {
		t.Errorf("mismatch events %v", mm)
	}
	// m ran 8 replayed steps, 8 again fed by the majority, then 32 more.
	steps := func() int64 { return mSrv.Stats().Steps - 40 }
	for deadline := time.Now().Add(2 * time.Second); steps() < 48 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := steps(); got != 48 {
		t.Errorf("the hop after the liar ran %d steps, want 48", got)
	}
	t.Logf("replan asked for %v", asked)
}

// TestVerifyTwoLiars: the shadow and the first referee lie, each in its
// own way; the referee agrees with nobody, so a second referee is asked,
// which sides with the primary. Both liars are banned.
func TestVerifyTwoLiars(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	span := route[1].Span
	liarA := n.serverWith(perturbed(t, n.w, 2, 1.25), span)
	liarB := n.serverWith(perturbed(t, n.w, 3, 0.7), span)
	honest := n.serverWith(n.w, span)
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F16, Verify: true,
		Alternatives: []swarm.Hop{liarA, liarB, honest}, OnEvent: ev.add})
	want, err := generate(t, n.client(swarm.ClientConfig{DType: kernels.F16}), route, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, s, err := run(t, c, route, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, want); d != "" {
		t.Error(d)
	}
	wantBans := []peer.ID{liarA.Peer, liarB.Peer}
	slices.Sort(wantBans)
	if b := c.Banned(); !slices.Equal(b, wantBans) {
		t.Errorf("banned %v, want %v", b, wantBans)
	}
	if s.Route()[1] != route[1] || s.Shadows()[1] != honest {
		t.Errorf("hop [2,4) ends on %s shadowed by %s", s.Route()[1], s.Shadows()[1])
	}
	if mm := ev.kinds(swarm.EventMismatch); len(mm) != 1 || mm[0].Other != liarA.Peer {
		t.Errorf("mismatch events %v", mm)
	}
}

// TestUnfitSpareNotBanned: a spare whose step limit is below the prefill
// step it would have to replay is passed over, not banned; the next
// spare takes the span.
func TestUnfitSpareNotBanned(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{})
	_, small := n.server(route[1].Span, swarm.ServerConfig{MaxStep: 4})
	_, replica := n.server(route[1].Span, swarm.ServerConfig{})
	prompt := append([]int{1}, refFromBOS[:7]...)
	gen := func(c *swarm.Client, kill bool) []int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := c.Open(ctx, route, 64)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var ids []int
		_, err = s.Generate(ctx, prompt, model.GenerateOptions{MaxTokens: 10}, func(id int) error {
			ids = append(ids, id)
			if kill && len(ids) == 3 {
				srvs[1].Close()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	want := gen(n.client(swarm.ClientConfig{DType: kernels.F32}), false)
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F32, Alternatives: []swarm.Hop{small, replica}, OnEvent: ev.add})
	if d := firstDiff(gen(c, true), want); d != "" {
		t.Error(d)
	}
	if b, x := c.Banned(), c.Excluded(); len(b) != 0 || len(x) != 1 || x[0] != route[1].Peer {
		t.Errorf("banned %v, avoided %v: want only the dead server %s avoided", b, x, route[1].Peer)
	}
	if lv := ev.kinds(swarm.EventLeft); len(lv) != 1 || lv[0].Hop != replica {
		t.Errorf("left events %v, want one: %s replaced by %s", lv, route[1].Peer, replica)
	}
}

// TestVerifyConcurrentSessions runs several verified generations at once
// on one client, with a liar first among the spares of layers [2,4):
// each session that meets it catches it, the ban is shared, and every
// generation gives the reference ids.
func TestVerifyConcurrentSessions(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	_, spares := n.pipeline(swarm.ServerConfig{})
	liar := n.serverWith(perturbed(t, n.w, 3, 1.25), route[1].Span)
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F32, Verify: true,
		Alternatives: append([]swarm.Hop{liar}, spares...), OnEvent: ev.add})
	const sessions = 4
	var wg sync.WaitGroup
	got := make([][]int, sessions)
	errs := make([]error, sessions)
	for i := range sessions {
		wg.Go(func() { got[i], _, errs[i] = run(t, c, route, 40, nil) })
	}
	wg.Wait()
	for i := range sessions {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if d := firstDiff(got[i], refFromBOS); d != "" {
			t.Errorf("session %d: %s", i, d)
		}
	}
	if b := c.Banned(); len(b) != 1 || b[0] != liar.Peer {
		t.Errorf("banned %v, want %s", b, liar.Peer)
	}
	mm := ev.kinds(swarm.EventMismatch)
	if len(mm) == 0 || len(mm) > sessions {
		t.Errorf("%d mismatch events, want 1 to %d", len(mm), sessions)
	}
	for _, e := range mm {
		if e.Other != liar.Peer {
			t.Errorf("mismatch %v does not name the liar", e)
		}
	}
}
