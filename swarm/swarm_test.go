package swarm_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/swarm"
)

// The tests run the built-in model (models/tales.gguf), whose six layers
// the pipelines split in three.
const modelID = "tales"

var (
	builtinOnce sync.Once
	builtinM    *checkpoints.Model
	builtinErr  error
	// refFromBOS is the built-in model's greedy continuation of BOS, 40
	// ids, as one engine in this process generates it (package model's
	// tests check that engine against references), with the servers'
	// default KV cache type: every route of the swarm, with f32 on the
	// wire, must give exactly these ids.
	refFromBOS []int
)

// builtinModel loads the built-in model once for the package's tests
// (they only read its weights) and computes refFromBOS.
func builtinModel(t *testing.T) *model.Weights {
	t.Helper()
	p := testmodels.Builtin(t)
	builtinOnce.Do(func() {
		if builtinM, builtinErr = checkpoints.Load(p); builtinErr != nil {
			return
		}
		be, err := kernels.Open("cpu", 1)
		if err != nil {
			builtinErr = err
			return
		}
		defer be.Close()
		_, builtinErr = model.NewEngine(builtinM.Weights, be).Generate(context.Background(), []int{1}, model.GenerateOptions{MaxTokens: 40},
			func(id int) error { refFromBOS = append(refFromBOS, id); return nil })
	})
	if builtinErr != nil {
		t.Fatal(builtinErr)
	}
	if len(refFromBOS) != 40 {
		t.Fatalf("the built-in model gave %d ids from BOS, want 40", len(refFromBOS))
	}
	return builtinM.Weights
}

// net is a mock network of hosts with the built-in model's weights.
type testNet struct {
	t  *testing.T
	mn mocknet.Mocknet
	w  *model.Weights
}

func newNet(t *testing.T) *testNet {
	t.Helper()
	w := builtinModel(t)
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	return &testNet{t: t, mn: mn, w: w}
}

// host adds a host linked and connected to every other one.
func (n *testNet) host() host.Host {
	n.t.Helper()
	h, err := n.mn.GenPeer()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.mn.LinkAll(); err != nil {
		n.t.Fatal(err)
	}
	if err := n.mn.ConnectAllButSelf(); err != nil {
		n.t.Fatal(err)
	}
	return h
}

func backend(t testing.TB) kernels.Backend {
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// server starts a server for span on a new host.
func (n *testNet) server(span swarm.Span, cfg swarm.ServerConfig) (*swarm.Server, swarm.Hop) {
	n.t.Helper()
	h := n.host()
	cfg.Model, cfg.Span = modelID, span
	s, err := swarm.NewServer(h, n.w, backend(n.t), cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { s.Close() })
	return s, swarm.Hop{Peer: h.ID(), Span: span}
}

// pipeline starts three servers splitting the six layers.
func (n *testNet) pipeline(cfg swarm.ServerConfig) ([]*swarm.Server, []swarm.Hop) {
	var srvs []*swarm.Server
	var route []swarm.Hop
	for _, sp := range []swarm.Span{{0, 2}, {2, 4}, {4, 6}} {
		s, h := n.server(sp, cfg)
		srvs, route = append(srvs, s), append(route, h)
	}
	return srvs, route
}

func (n *testNet) client(cfg swarm.ClientConfig) *swarm.Client {
	n.t.Helper()
	cfg.Model = modelID
	c, err := swarm.NewClient(n.host(), n.w, backend(n.t), cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

// events collects a client's events and logs them (visible with -v).
type events struct {
	t  *testing.T
	mu sync.Mutex
	ev []swarm.Event
}

func (e *events) add(ev swarm.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
	e.t.Logf("event: %s", ev)
}

func (e *events) kinds(k swarm.EventKind) []swarm.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []swarm.Event
	for _, ev := range e.ev {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// generate runs greedy generation from BOS; after is called after each
// emitted token with the count so far.
func generate(t *testing.T, c *swarm.Client, route []swarm.Hop, n int, after func(int)) ([]int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := c.Open(ctx, route, 64)
	if err != nil {
		return nil, err
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
	return ids, err
}

func firstDiff(got, want []int) string {
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			return fmt.Sprintf("differ at %d:\n got %v\nwant %v", i, got, want)
		}
	}
	return ""
}

func TestPipelineReference(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	for _, tc := range []struct {
		dt    kernels.DType
		match int
	}{{kernels.F32, 40}, {kernels.F16, 20}, {kernels.BF16, 10}} {
		t.Run(tc.dt.String(), func(t *testing.T) {
			c := n.client(swarm.ClientConfig{DType: tc.dt})
			ids, err := generate(t, c, route, 40, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(ids[:tc.match], refFromBOS[:tc.match]); d != "" {
				t.Error(d)
			}
			t.Logf("%s on the wire: %d of 40 ids match the reference", tc.dt, common(ids, refFromBOS))
		})
	}
}

func common(a, b []int) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// TestFailover kills the server of the middle span mid-generation, in
// three ways; the client moves the span to a replica, replays, and the ids
// stay the reference ones. A server that went away is no liar: one
// EventLeft names it, its replacement and the positions replayed, and it
// is avoided for LeftAvoid, not banned.
func TestFailover(t *testing.T) {
	for _, how := range []string{"server closed", "host crashed", "link cut"} {
		t.Run(how, func(t *testing.T) {
			n := newNet(t)
			srvs, route := n.pipeline(swarm.ServerConfig{})
			_, replica := n.server(swarm.Span{First: 2, Last: 4}, swarm.ServerConfig{})
			ev := &events{t: t}
			const avoid = 500 * time.Millisecond
			c := n.client(swarm.ClientConfig{DType: kernels.F32, Alternatives: []swarm.Hop{replica}, OnEvent: ev.add, LeftAvoid: avoid})
			victim := route[1].Peer
			ids, err := generate(t, c, route, 40, func(k int) {
				if k != 15 {
					return
				}
				switch how {
				case "server closed":
					srvs[1].Close()
				case "host crashed":
					n.mn.Host(victim).Close()
				case "link cut":
					for _, p := range n.mn.Peers() {
						if p != victim {
							n.mn.UnlinkPeers(p, victim)
							n.mn.DisconnectPeers(p, victim)
						}
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(ids, refFromBOS); d != "" {
				t.Error(d)
			}
			lv := ev.kinds(swarm.EventLeft)
			if len(lv) != 1 || lv[0].Hop != replica || lv[0].Replaced != victim || lv[0].Replayed != 16 || !slices.Equal(lv[0].Chain, []swarm.Hop{replica}) ||
				!errors.Is(lv[0].Err, swarm.ErrLeft) || !strings.Contains(lv[0].Err.Error(), victim.String()) {
				t.Errorf("left events %v, want one: %s replaced by %s after 16 positions", lv, victim, replica)
			}
			for _, k := range []swarm.EventKind{swarm.EventBanned, swarm.EventHopFailed, swarm.EventReroute} {
				if e := ev.kinds(k); len(e) != 0 {
					t.Errorf("%s events %v for a server that left", k, e)
				}
			}
			if b, x := c.Banned(), c.Excluded(); len(b) != 0 || len(x) != 1 || x[0] != victim {
				t.Errorf("banned %v, avoided %v: want %s avoided, nobody banned", b, x, victim)
			}
			waitFor(t, func() bool { return len(c.Excluded()) == 0 })
		})
	}
}

// TestSilentHopRerouted: a server that stops answering is dropped at the
// step deadline and its span moves to a spare.
func TestSilentHopRerouted(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	silent := fakeServer(t, n, swarm.Span{First: 2, Last: 4}, func(network.Stream, *swarm.Step) {})
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F32, StepTimeout: 300 * time.Millisecond,
		Alternatives: []swarm.Hop{route[1]}, OnEvent: ev.add})
	ids, err := generate(t, c, []swarm.Hop{route[0], silent, route[2]}, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:20]); d != "" {
		t.Error(d)
	}
	if f := ev.kinds(swarm.EventHopFailed); len(f) != 1 || !errors.Is(f[0].Err, swarm.ErrDeadline) {
		t.Errorf("hop failure events %v, want one deadline", f)
	}
}

// TestReplanSplitsSpan kills the middle server with no spare of its exact
// span; Replan offers two servers that each take half of it, and the
// replay runs through both in turn.
func TestReplanSplitsSpan(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{})
	_, a := n.server(swarm.Span{First: 2, Last: 4}, swarm.ServerConfig{})
	_, b := n.server(swarm.Span{First: 3, Last: 5}, swarm.ServerConfig{})
	ev := &events{t: t}
	var asked []swarm.Span
	replan := func(ctx context.Context, span swarm.Span, exclude []peer.ID) ([]swarm.Hop, error) {
		asked = append(asked, span)
		if len(exclude) != 1 || exclude[0] != route[1].Peer {
			return nil, fmt.Errorf("exclude %v", exclude)
		}
		return []swarm.Hop{{Peer: a.Peer, Span: swarm.Span{First: 2, Last: 3}}, {Peer: b.Peer, Span: swarm.Span{First: 3, Last: 4}}}, nil
	}
	c := n.client(swarm.ClientConfig{DType: kernels.F16, Replan: replan, OnEvent: ev.add})
	// The same f16 run without a failure is the baseline.
	want, err := generate(t, c, route, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := generate(t, c, route, 30, func(k int) {
		if k == 7 {
			srvs[1].Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, want); d != "" {
		t.Error(d)
	}
	if len(asked) != 1 || asked[0] != route[1].Span {
		t.Errorf("replan asked for %v, want [%s]", asked, route[1].Span)
	}
	chain := []swarm.Hop{{Peer: a.Peer, Span: swarm.Span{First: 2, Last: 3}}, {Peer: b.Peer, Span: swarm.Span{First: 3, Last: 4}}}
	if lv := ev.kinds(swarm.EventLeft); len(lv) != 1 || lv[0].Hop != (swarm.Hop{Span: route[1].Span}) || lv[0].Replaced != route[1].Peer ||
		!slices.Equal(lv[0].Chain, chain) || lv[0].Replayed != 8 {
		t.Errorf("left events %v, want one: %s replaced by the chain %v after 8 positions", lv, route[1], chain)
	}
}

// TestNoReplacement: a dead hop with nowhere to go ends generation with an
// error naming the peer.
func TestNoReplacement(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{})
	c := n.client(swarm.ClientConfig{DType: kernels.F32})
	_, err := generate(t, c, route, 20, func(k int) {
		if k == 3 {
			srvs[2].Close()
		}
	})
	if !errors.Is(err, swarm.ErrNoRoute) || !strings.Contains(err.Error(), route[2].Peer.String()) {
		t.Fatalf("got %v, want ErrNoRoute naming %s", err, route[2].Peer)
	}
}

// fakeServer answers OPEN properly and then misbehaves on STEP.
func fakeServer(t *testing.T, n *testNet, span swarm.Span, onStep func(s network.Stream, step *swarm.Step)) swarm.Hop {
	h := n.host()
	h.SetStreamHandler(p2p.InferProtocol, func(s network.Stream) {
		defer s.Reset()
		r := bufio.NewReader(s)
		m, err := swarm.ReadMessage(r, swarm.MaxControlFrame)
		if err != nil {
			return
		}
		o := m.(*swarm.Open)
		ok := &swarm.OK{Session: 1, First: o.First, Last: o.Last, MaxPositions: o.MaxPositions, Dim: n.w.Config.Dim, MaxStep: 16, IdleMillis: 1000}
		if _, err := s.Write(swarm.AppendMessage(nil, ok)); err != nil {
			return
		}
		for {
			m, err := swarm.ReadMessage(r, 1<<20)
			if err != nil {
				return
			}
			if st, isStep := m.(*swarm.Step); isStep {
				onStep(s, st)
			}
		}
	})
	return swarm.Hop{Peer: h.ID(), Span: span}
}

func TestMisbehavingServer(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	dim := n.w.Config.Dim
	cases := map[string]func(s network.Stream, st *swarm.Step){
		"wrong shape": func(s network.Stream, st *swarm.Step) {
			r := &swarm.Result{ID: st.ID, Tensor: swarm.Tensor{DType: st.Tensor.DType, Shape: []int{st.N, dim + 1}, Data: make([]byte, st.N*(dim+1)*4)}}
			s.Write(swarm.AppendMessage(nil, r))
		},
		"wrong dtype": func(s network.Stream, st *swarm.Step) {
			r := &swarm.Result{ID: st.ID, Tensor: swarm.Tensor{DType: kernels.F16, Shape: []int{st.N, dim}, Data: make([]byte, st.N*dim*2)}}
			s.Write(swarm.AppendMessage(nil, r))
		},
		"garbage": func(s network.Stream, st *swarm.Step) {
			s.Write([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3})
		},
		"unknown type": func(s network.Stream, st *swarm.Step) {
			s.Write([]byte{3, 0x7f, 0, 0})
		},
		"silent": func(s network.Stream, st *swarm.Step) {},
	}
	for name, onStep := range cases {
		t.Run(name, func(t *testing.T) {
			bad := fakeServer(t, n, swarm.Span{First: 2, Last: 4}, onStep)
			c := n.client(swarm.ClientConfig{DType: kernels.F32, StepTimeout: 300 * time.Millisecond})
			r := []swarm.Hop{route[0], bad, route[2]}
			_, err := generate(t, c, r, 5, nil)
			if err == nil || !strings.Contains(err.Error(), bad.Peer.String()) {
				t.Fatalf("got %v, want an error naming %s", err, bad.Peer)
			}
			if name == "silent" && !errors.Is(err, swarm.ErrDeadline) {
				t.Errorf("got %v, want ErrDeadline", err)
			}
			if name != "silent" && !errors.Is(err, swarm.ErrProtocol) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
			t.Logf("%v", err)
		})
	}
}

// rawSession opens a session by hand, for tests that speak the protocol
// directly.
type rawSession struct {
	t *testing.T
	s network.Stream
	r *bufio.Reader
}

func openRaw(t *testing.T, h host.Host, to peer.ID, o *swarm.Open) (*rawSession, swarm.Message) {
	t.Helper()
	s, err := h.NewStream(context.Background(), to, p2p.InferProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	rs := &rawSession{t: t, s: s, r: bufio.NewReader(s)}
	rs.send(o)
	return rs, rs.recv()
}

func (rs *rawSession) send(m swarm.Message) {
	rs.t.Helper()
	if _, err := rs.s.Write(swarm.AppendMessage(nil, m)); err != nil {
		rs.t.Fatal(err)
	}
}

func (rs *rawSession) recv() swarm.Message {
	rs.t.Helper()
	m, err := swarm.ReadMessage(rs.r, 1<<20)
	if err != nil {
		rs.t.Fatal(err)
	}
	return m
}

// TestBudget: a peer that opens sessions without end is refused once its
// share of the memory is spent, and another client is still served.
func TestBudget(t *testing.T) {
	n := newNet(t)
	// A session of 64 positions over 2 layers holds its keys and values
	// (f16) and MaxStep rows of step buffers: two fit in a peer's share,
	// and one of the whole context (512 positions) does not.
	mc := &n.w.Config
	session := func(positions int) int64 {
		return model.CacheBytes(mc, model.DefaultKVType, 2, positions) + int64(64*mc.Dim)*(4+2*4)
	}
	peerBudget := session(64) * 5 / 2
	if session(mc.Context) <= peerBudget {
		t.Fatalf("a session of the whole context (%d bytes) fits in a peer's share (%d)", session(mc.Context), peerBudget)
	}
	cfg := swarm.ServerConfig{MemoryBudget: 4 * peerBudget, PeerBudget: peerBudget, MaxStep: 64, Counters: &swarm.Counters{}}
	srvs, route := n.pipeline(cfg)
	greedy := n.host()
	opened := 0
	var refusal *swarm.Error
	for i := 0; i < 100 && refusal == nil; i++ {
		_, m := openRaw(t, greedy, route[0].Peer, &swarm.Open{Model: modelID, First: 0, Last: 2, MaxPositions: 64, DType: kernels.F32})
		switch m := m.(type) {
		case *swarm.OK:
			opened++
		case *swarm.Error:
			refusal = m
		}
	}
	if refusal == nil || refusal.Code != swarm.CodeBusy || !strings.Contains(refusal.Message, "memory") {
		t.Fatalf("after %d sessions: refusal %+v, want a busy error about memory", opened, refusal)
	}
	t.Logf("refused after %d sessions: %s", opened, refusal.Message)
	if st := srvs[0].Stats(); st.Refused != 1 || st.ReservedBytes > cfg.PeerBudget {
		t.Errorf("stats %+v", st)
	}
	c := n.client(swarm.ClientConfig{DType: kernels.F32})
	ids, err := generate(t, c, route, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:10]); d != "" {
		t.Error(d)
	}
	// The three servers add up in the counters they share; from BOS alone
	// every step is one position.
	var steps, passes int64
	for _, s := range srvs {
		st := s.Stats()
		steps, passes = steps+st.Steps, passes+st.Passes
	}
	cn := cfg.Counters
	if cn.Steps.Load() != steps || cn.Positions.Load() != steps || cn.Passes.Load() != passes || steps < 3*10 ||
		cn.Refused.Load() != 1 || cn.Sessions.Load() != int64(opened+3) || cn.Open.Load() < int64(opened) {
		t.Errorf("counters: steps %d positions %d passes %d sessions %d open %d refused %d; the servers ran %d steps in %d passes, %d sessions opened",
			cn.Steps.Load(), cn.Positions.Load(), cn.Passes.Load(), cn.Sessions.Load(), cn.Open.Load(), cn.Refused.Load(), steps, passes, opened+3)
	}
	// A client-side view of the refusal: errors.Is(err, ErrBusy).
	big := n.client(swarm.ClientConfig{DType: kernels.F32, BusyBan: 300 * time.Millisecond})
	_, err = big.Open(context.Background(), route, 512)
	if !errors.Is(err, swarm.ErrBusy) || !strings.Contains(err.Error(), route[0].Peer.String()) {
		t.Errorf("oversized session: %v, want ErrBusy naming %s", err, route[0].Peer)
	}
	// A busy server is honest: it is left alone for BusyBan only, not for
	// the full BanDuration.
	if b := big.Banned(); len(b) != 1 || b[0] != route[0].Peer {
		t.Errorf("banned after a busy refusal: %v, want %s", b, route[0].Peer)
	}
	time.Sleep(400 * time.Millisecond)
	if b := big.Banned(); len(b) != 0 {
		t.Errorf("still banned after BusyBan: %v", b)
	}
}

// TestStalledClient: a client that stops in the middle of a frame, or
// sends nothing, is cut off at the deadline and its memory freed.
func TestStalledClient(t *testing.T) {
	n := newNet(t)
	cfg := swarm.ServerConfig{IdleTimeout: 400 * time.Millisecond, IOTimeout: 200 * time.Millisecond}
	layers, dim := n.w.Config.Layers, n.w.Config.Dim
	srv, hop := n.server(swarm.Span{First: 0, Last: layers}, cfg)
	h := n.host()
	open := &swarm.Open{Model: modelID, First: 0, Last: layers, MaxPositions: 16, DType: kernels.F32}

	half, m := openRaw(t, h, hop.Peer, open)
	if _, ok := m.(*swarm.OK); !ok {
		t.Fatalf("open: %v", m)
	}
	frame := swarm.AppendMessage(nil, &swarm.Step{ID: 1, N: 1, Tensor: swarm.Tensor{DType: kernels.F32, Shape: []int{1, dim}, Data: make([]byte, 4*dim)}})
	if _, err := half.s.Write(frame[:100]); err != nil {
		t.Fatal(err)
	}
	idle, m := openRaw(t, h, hop.Peer, open)
	if _, ok := m.(*swarm.OK); !ok {
		t.Fatalf("open: %v", m)
	}
	// Each session reserves its KV cache, in the server's (default, f16)
	// cache type, and its step buffers: MaxStep rows in, out and in float32.
	c := &n.w.Config
	perSession := model.CacheBytes(c, model.DefaultKVType, layers, 16) + int64(srv.Config().MaxStep*c.Dim)*(4+2*4)
	if st := srv.Stats(); st.Sessions != 2 || st.ReservedBytes != 2*perSession {
		t.Fatalf("stats %+v, want two sessions of %d bytes", st, perSession)
	}
	start := time.Now()
	for _, rs := range []*rawSession{half, idle} {
		rs.s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := swarm.ReadMessage(rs.r, 1<<10); err == nil {
			t.Fatal("stalled stream still open")
		}
	}
	took := time.Since(start)
	if took > 2*time.Second {
		t.Errorf("stalled streams closed after %v", took)
	}
	waitFor(t, func() bool { st := srv.Stats(); return st.Sessions == 0 && st.ReservedBytes == 0 })
	t.Logf("stalled and idle streams closed after %v", took)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStepsIdempotent speaks the protocol by hand: a repeated step gets
// the same bytes, an old step is recomputed after truncation, and errors
// leave the session usable.
func TestStepsIdempotent(t *testing.T) {
	n := newNet(t)
	srv, hop := n.server(swarm.Span{First: 0, Last: 2}, swarm.ServerConfig{})
	rs, m := openRaw(t, n.host(), hop.Peer, &swarm.Open{Model: modelID, First: 0, Last: 2, MaxPositions: 16, DType: kernels.F32})
	if _, ok := m.(*swarm.OK); !ok {
		t.Fatalf("open: %v", m)
	}
	dim := n.w.Config.Dim
	x := func(n int, seed float32) swarm.Tensor {
		v := make([]float32, n*dim)
		for i := range v {
			v[i] = seed * float32(i%7-3) / 10
		}
		return swarm.Tensor{DType: kernels.F32, Shape: []int{n, dim}, Data: kernels.F32Bytes(v)}
	}
	result := func(m swarm.Message) []byte {
		t.Helper()
		r, ok := m.(*swarm.Result)
		if !ok {
			t.Fatalf("got %+v, want RESULT", m)
		}
		return r.Tensor.Data
	}
	errCode := func(m swarm.Message) swarm.ErrorCode {
		t.Helper()
		e, ok := m.(*swarm.Error)
		if !ok {
			t.Fatalf("got %+v, want ERROR", m)
		}
		return e.Code
	}
	rs.send(&swarm.Step{ID: 1, Start: 0, N: 3, Tensor: x(3, 1)})
	r1 := string(result(rs.recv()))
	rs.send(&swarm.Step{ID: 1, Start: 0, N: 3, Tensor: x(3, 1)})
	if string(result(rs.recv())) != r1 {
		t.Error("retried step: different bytes")
	}
	rs.send(&swarm.Step{ID: 2, Start: 3, N: 1, Tensor: x(1, 2)})
	r2 := string(result(rs.recv()))
	// Step 2 again, as a fresh id: the cache drops position 3 first.
	rs.send(&swarm.Step{ID: 3, Start: 3, N: 1, Tensor: x(1, 2)})
	if string(result(rs.recv())) != r2 {
		t.Error("step recomputed at the same position: different bytes (position held twice?)")
	}
	// Step 1 again after later steps: recomputed from position 0.
	rs.send(&swarm.Step{ID: 1, Start: 0, N: 3, Tensor: x(3, 1)})
	if string(result(rs.recv())) != r1 {
		t.Error("old step recomputed: different bytes")
	}
	rs.send(&swarm.Step{ID: 4, Start: 3, N: 1, Tensor: x(1, 2)})
	if string(result(rs.recv())) != r2 {
		t.Error("step after the recomputed one: different bytes")
	}
	for name, bad := range map[string]*swarm.Step{
		"gap":          {ID: 5, Start: 9, N: 1, Tensor: x(1, 1)},
		"shape":        {ID: 5, Start: 4, N: 2, Tensor: x(1, 1)},
		"dtype":        {ID: 5, Start: 4, N: 1, Tensor: swarm.Tensor{DType: kernels.F16, Shape: []int{1, dim}, Data: make([]byte, 2*dim)}},
		"reused id":    {ID: 4, Start: 0, N: 1, Tensor: x(1, 1)},
		"past the end": {ID: 5, Start: 4, N: 13, Tensor: x(13, 1)},
	} {
		rs.send(bad)
		if c := errCode(rs.recv()); c != swarm.CodeBadStep && c != swarm.CodeContextFull {
			t.Errorf("%s: code %s", name, c)
		}
	}
	if _, err := rs.s.Write([]byte{2, 0x7f, 0}); err != nil {
		t.Fatal(err)
	}
	if c := errCode(rs.recv()); c != swarm.CodeBadMessage {
		t.Errorf("unknown type: code %s", c)
	}
	rs.send(&swarm.Step{ID: 5, Start: 4, N: 1, Tensor: x(1, 3)})
	result(rs.recv())
	rs.send(&swarm.Close{})
	waitFor(t, func() bool { return srv.Stats().Sessions == 0 })
}

// generateAll runs greedy generation from BOS in one session per entry
// of cls at once (an entry may repeat: sessions of one client), n tokens
// each, and checks every session gets the reference ids.
func generateAll(t *testing.T, cls []*swarm.Client, route []swarm.Hop, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(cls))
	got := make([][]int, len(cls))
	for i, c := range cls {
		wg.Go(func() { got[i], errs[i] = generate(t, c, route, n, nil) })
	}
	wg.Wait()
	for i := range cls {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if d := firstDiff(got[i], refFromBOS[:n]); d != "" {
			t.Errorf("session %d: %s", i, d)
		}
	}
}

func TestServerCloseStopsEverything(t *testing.T) {
	n := newNet(t)
	layers := n.w.Config.Layers
	srv, hop := n.server(swarm.Span{First: 0, Last: layers}, swarm.ServerConfig{})
	rs, _ := openRaw(t, n.host(), hop.Peer, &swarm.Open{Model: modelID, First: 0, Last: layers, MaxPositions: 8, DType: kernels.F32})
	done := make(chan error, 1)
	go func() {
		_, err := swarm.ReadMessage(rs.r, 1<<10)
		done <- err
	}()
	srv.Close()
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("session stream still open after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session stream not closed by Close")
	}
	if st := srv.Stats(); st.Sessions != 0 {
		t.Errorf("stats after Close: %+v", st)
	}
}

// TestOpenUsesAlternative: a hop of the initial route that does not speak
// the protocol is replaced before the first step.
func TestOpenUsesAlternative(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	dead := swarm.Hop{Peer: n.host().ID(), Span: route[1].Span}
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F32, Alternatives: []swarm.Hop{route[1]}, OnEvent: ev.add})
	ids, err := generate(t, c, []swarm.Hop{route[0], dead, route[2]}, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:10]); d != "" {
		t.Error(d)
	}
	if re := ev.kinds(swarm.EventReroute); len(re) != 1 || re[0].Replaced != dead.Peer || re[0].Replayed != 0 {
		t.Errorf("re-route events %v", re)
	}
}

// TestCancelledContext: cancelling the context of a generation stops it
// with the context's error, without re-routing.
func TestCancelledContext(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	ev := &events{t: t}
	c := n.client(swarm.ClientConfig{DType: kernels.F32, Alternatives: route, OnEvent: ev.add})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Open(ctx, route, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Generate(ctx, []int{1}, model.GenerateOptions{MaxTokens: 40}, func(id int) error {
		if id == refFromBOS[5] {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if f := ev.kinds(swarm.EventHopFailed); len(f) != 0 {
		t.Errorf("hop failures after cancel: %v", f)
	}
}

// TestGarbageClient: a client that sends bytes that are not frames gets an
// ERROR and loses its stream; the server goes on serving others.
func TestGarbageClient(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{})
	// An OPEN whose dtype byte is q8_0, which activations cannot use.
	q8Open := swarm.AppendMessage(nil, &swarm.Open{Model: modelID, First: 0, Last: 2, MaxPositions: 8, DType: kernels.F32})
	q8Open[len(q8Open)-1] = byte(kernels.Q8_0)
	for name, junk := range map[string][]byte{
		"huge length":  {0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad dtype":    q8Open,
		"close first":  swarm.AppendMessage(nil, &swarm.Close{}),
		"unknown type": {1, 0x42},
	} {
		s, err := n.host().NewStream(context.Background(), route[0].Peer, p2p.InferProtocol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(junk); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(s)
		m, err := swarm.ReadMessage(r, 1<<12)
		if e, ok := m.(*swarm.Error); err != nil || !ok || e.Code != swarm.CodeBadMessage {
			t.Errorf("%s: got %v, %v; want ERROR bad message", name, m, err)
		} else {
			t.Logf("%s: %s", name, e.Message)
		}
		if _, err := swarm.ReadMessage(r, 1<<12); err == nil {
			t.Errorf("%s: stream still open", name)
		}
		s.Reset()
	}
	c := n.client(swarm.ClientConfig{DType: kernels.F32})
	ids, err := generate(t, c, route, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:10]); d != "" {
		t.Error(d)
	}
	waitFor(t, func() bool { return srvs[0].Stats().Sessions == 0 })
}

// Sessions of one client that reach the output head together share one
// pass over it; every session still gets the reference ids.
func TestSessionsShareTheHead(t *testing.T) {
	n := newNet(t)
	_, route := n.pipeline(swarm.ServerConfig{})
	cl := n.client(swarm.ClientConfig{DType: kernels.F32, HeadWait: 200 * time.Millisecond})
	generateAll(t, []*swarm.Client{cl, cl, cl, cl}, route, 40)
	batches, rows := cl.HeadStats()
	t.Logf("%d shared head passes, %d rows", batches, rows)
	if batches == 0 || rows < 2*batches {
		t.Errorf("head passes shared: %d batches of %d rows in all", batches, rows)
	}
	// A client whose sessions never meet at the head still works alone.
	solo := n.client(swarm.ClientConfig{DType: kernels.F32, HeadWait: -1})
	ids, err := generate(t, solo, route, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:20]); d != "" {
		t.Error(d)
	}
	if b, _ := solo.HeadStats(); b != 0 {
		t.Errorf("HeadWait < 0 batched %d head passes", b)
	}
}

// TestServerGathersDecodeSteps checks the servers' waiting for batches
// (the behaviour the throughput benchmark measures) for what does not
// depend on timing: a lone session never waits and never batches; four
// sessions decoding at once through servers that wait for each other's
// steps all give the reference ids, every step counted once. How much
// they batch here, where a step takes microseconds and the scheduler's
// jitter is as large, is only logged.
func TestServerGathersDecodeSteps(t *testing.T) {
	n := newNet(t)
	srvs, route := n.pipeline(swarm.ServerConfig{BatchWait: 50 * time.Millisecond})
	lone := n.client(swarm.ClientConfig{DType: kernels.F32})
	ids, err := generate(t, lone, route, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(ids, refFromBOS[:20]); d != "" {
		t.Error(d)
	}
	for i, s := range srvs {
		if st := s.Stats(); st.Waits != 0 || st.Batches != 0 || st.Steps != 20 || st.Passes != 20 {
			t.Errorf("server %s, one session: %+v, want 20 steps in 20 passes, no waits", route[i].Span, st)
		}
	}

	const clients = 4
	cls := make([]*swarm.Client, clients)
	for i := range cls {
		cls[i] = n.client(swarm.ClientConfig{DType: kernels.F32})
	}
	generateAll(t, cls, route, 40)
	for i, s := range srvs {
		st := s.Stats()
		t.Logf("server %s: %d steps in %d passes, %d waits (%d ran out), passes by rows %v",
			route[i].Span, st.Steps, st.Passes, st.Waits, st.WaitsExpired, st.BatchRows)
		if st.Steps != 20+clients*40 {
			t.Errorf("server %s: %d steps, want %d", route[i].Span, st.Steps, 20+clients*40)
		}
	}
}
