package swarm

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/model"
)

func rec(p string, first, last int, tps float64) ServerRecord {
	return ServerRecord{Peer: peer.ID(p), Model: "m", Span: Span{first, last}, Throughput: tps,
		State: StateServing, FreePositions: 1 << 20, Expires: time.Now().Add(time.Minute)}
}

// Nodes that join one after another, each able to hold 3 of 5 layers,
// first cover every layer, then add capacity where it is thinnest.
func TestChooseSpanFillsGaps(t *testing.T) {
	var recs []ServerRecord
	want := []Span{{0, 3}, {2, 5}, {0, 3}}
	for i, w := range want {
		got := ChooseSpan(NewCoverage(5, 0, recs, ""), 3, 10)
		if got != w {
			t.Fatalf("node %d chose %s, want %s (swarm %v)", i, got, w, NewCoverage(5, 0, recs, ""))
		}
		recs = append(recs, rec(string(rune('a'+i)), got.First, got.Last, 10))
	}
	// A slow swarm on the last layers draws the next node there.
	recs = []ServerRecord{rec("a", 0, 3, 100), rec("b", 2, 5, 5)}
	if got := ChooseSpan(NewCoverage(5, 0, recs, ""), 2, 10); got != (Span{3, 5}) {
		t.Fatalf("chose %s, want [3,5) where the swarm is slowest", got)
	}
	// A node that holds every layer takes them all.
	if got := ChooseSpan(NewCoverage(5, 0, nil, ""), 9, 1); got != (Span{0, 5}) {
		t.Fatalf("chose %s, want [0,5)", got)
	}
}

func TestCoverageMissing(t *testing.T) {
	c := NewCoverage(8, 0, []ServerRecord{rec("a", 1, 3, 1), rec("b", 5, 6, 1), rec("c", 0, 8, 0)}, "c")
	got := c.Missing()
	want := []Span{{0, 1}, {3, 5}, {6, 8}}
	if len(got) != len(want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("missing %v, want %v", got, want)
		}
	}
	// A joining server counts; a leaving one does not; an unmeasured one
	// still serves.
	j := rec("j", 0, 8, 0)
	j.State = StateJoining
	l := rec("l", 0, 8, 5)
	l.State = StateLeaving
	if m := NewCoverage(8, 0, []ServerRecord{j, l}, "").Missing(); len(m) != 0 {
		t.Fatalf("joining server not counted: missing %v", m)
	}
	if m := NewCoverage(8, 0, []ServerRecord{l}, "").Missing(); len(m) != 1 || m[0] != (Span{0, 8}) {
		t.Fatalf("leaving server counted: missing %v", m)
	}
}

func TestRebalance(t *testing.T) {
	// b left: layers 3 and 4 are unserved; c, whose layers a also holds,
	// moves to cover them.
	others := NewCoverage(5, 0, []ServerRecord{rec("a", 0, 3, 10)}, "")
	next, move := Rebalance(others, Span{0, 3}, 10, DefaultMargin)
	if !move || next != (Span{2, 5}) {
		t.Fatalf("Rebalance = %s, %v; want a move to [2,5)", next, move)
	}
	// The only server of layers 0-2 never leaves them, even to cover
	// others.
	others = NewCoverage(5, 0, []ServerRecord{rec("a", 3, 5, 10)}, "")
	if next, move := Rebalance(others, Span{0, 3}, 10, DefaultMargin); move {
		t.Fatalf("moved to %s, leaving layers unserved", next)
	}
	// A balanced swarm stays put.
	others = NewCoverage(5, 0, []ServerRecord{rec("a", 0, 3, 10), rec("b", 2, 5, 10)}, "")
	if next, move := Rebalance(others, Span{0, 3}, 10, DefaultMargin); move {
		t.Fatalf("balanced swarm: moved to %s", next)
	}
	// Hysteresis: a 10% gain does not move a server; a 2x gain does.
	others = NewCoverage(4, 0, []ServerRecord{rec("a", 0, 4, 100), rec("b", 2, 4, 10)}, "")
	// cur [0,2): weakest layer 2-3 at 110; moving to [2,4) gives min(100, 120) = 100: worse.
	if next, move := Rebalance(others, Span{0, 2}, 10, DefaultMargin); move {
		t.Fatalf("moved to %s for no gain", next)
	}
	others = NewCoverage(4, 0, []ServerRecord{rec("a", 0, 2, 100), rec("b", 2, 4, 10)}, "")
	// cur [0,2) gives min 10; [2,4) gives min(100, 20) = 20: a 2x gain.
	if next, move := Rebalance(others, Span{0, 2}, 10, DefaultMargin); !move || next != (Span{2, 4}) {
		t.Fatalf("Rebalance = %s, %v; want a move to [2,4)", next, move)
	}
	others = NewCoverage(4, 0, []ServerRecord{rec("a", 0, 2, 100), rec("b", 2, 4, 100)}, "")
	// [0,2) gives min 100; [2,4) min 100: no gain.
	if next, move := Rebalance(others, Span{0, 2}, 10, DefaultMargin); move {
		t.Fatalf("moved to %s for a 0%% gain", next)
	}
}

func TestPlan(t *testing.T) {
	recs := []ServerRecord{
		rec("whole-slow", 0, 6, 1), // 1 s per token
		rec("front", 0, 3, 100),    // 10 ms per token for 3 layers
		rec("back", 3, 6, 100),     //
		rec("mid", 2, 4, 1000),     //
		rec("tail", 4, 6, 1000),    //
	}
	hops, err := Plan(recs, PlanOptions{Span: Span{0, 6}})
	if err != nil {
		t.Fatal(err)
	}
	// front(0-3) 10ms + back(3-6) 10ms + 2 hops: 120 ms; three hops
	// front(0-2)+mid(2-4)+tail: ~6.7+1+1 ms + 150 ms; one hop on
	// whole-slow: 1.05 s.
	want := []Hop{{"front", Span{0, 3}}, {"back", Span{3, 6}}}
	if !sameHops(hops, want) {
		t.Fatalf("route %v, want %v", hops, want)
	}
	// With "back" excluded, the tail of the route goes through mid and tail.
	hops, err = Plan(recs, PlanOptions{Span: Span{0, 6}, Exclude: []peer.ID{"back"}})
	if err != nil {
		t.Fatal(err)
	}
	// mid is 10x faster per layer than front: it takes layer 2 too.
	want = []Hop{{"front", Span{0, 2}}, {"mid", Span{2, 4}}, {"tail", Span{4, 6}}}
	if !sameHops(hops, want) {
		t.Fatalf("route without back %v, want %v", hops, want)
	}
	// Low latency to whole-slow does not make it win; a server without
	// room is avoided.
	full := rec("front-full", 0, 3, 1e6)
	full.FreePositions = 10
	hops, err = Plan(append(recs, full), PlanOptions{Span: Span{0, 6}, Positions: 64})
	if err != nil {
		t.Fatal(err)
	}
	if hops[0].Peer == "front-full" {
		t.Fatalf("route %v uses a server without room", hops)
	}
	// A sub-span, as failover asks for.
	hops, err = Plan(recs, PlanOptions{Span: Span{3, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 1 || hops[0].Span != (Span{3, 5}) {
		t.Fatalf("route for [3,5) = %v", hops)
	}
	// Missing layers are named, with the command that serves them.
	expired := rec("old", 0, 6, 1000)
	expired.Expires = time.Now().Add(-time.Second)
	_, err = Plan([]ServerRecord{rec("a", 0, 2, 1), rec("b", 3, 4, 1), expired}, PlanOptions{Span: Span{0, 6}})
	var nr *NoRouteError
	if !errors.As(err, &nr) {
		t.Fatalf("err = %v, want NoRouteError", err)
	}
	if len(nr.Missing) != 2 || nr.Missing[0] != (Span{2, 3}) || nr.Missing[1] != (Span{4, 6}) {
		t.Fatalf("missing %v, want [2,3) and [4,6)", nr.Missing)
	}
	if msg := err.Error(); !strings.Contains(msg, "layers 2, 4-5") || !strings.Contains(msg, "--serve m --layers 2:3") {
		t.Fatalf("error %q does not say which layers and how to serve them", msg)
	}
}

func sameHops(a, b []Hop) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRecordSignOpen(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	r := ServerRecord{Model: "bafy-model", Span: Span{2, 4}, Throughput: 12.5, FreePositions: 1000, MaxPositions: 512,
		State: StateServing, Seq: 7, Expires: time.Now().Add(time.Minute).Truncate(time.Second), Software: "mycel test",
		Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4747")}, Experts: model.NewExpertSet(1, 9),
		ExpertLoad: []byte{0, 9, 255}}
	raw, err := SignRecord(&r, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != id || got.Model != r.Model || got.Span != r.Span || got.Throughput != r.Throughput ||
		got.FreePositions != r.FreePositions || got.Seq != r.Seq || !got.Expires.Equal(r.Expires) ||
		len(got.Addrs) != 1 || !got.Addrs[0].Equal(r.Addrs[0]) || got.State != StateServing || got.Experts.String() != "1,9" ||
		!bytes.Equal(got.ExpertLoad, r.ExpertLoad) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
	if !got.Valid(time.Now()) || got.Valid(time.Now().Add(2*time.Minute)) {
		t.Fatal("validity does not follow expiry")
	}
	// Any changed byte breaks the signature or the decoding.
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x20
		if g, err := OpenRecord(bad); err == nil && (g.Peer != id || g.Model != r.Model || g.Span != r.Span || g.Throughput != r.Throughput) {
			t.Fatalf("byte %d flipped: accepted a changed record %+v", i, g)
		}
	}
	// Bad fields are refused at signing and opening.
	for _, bad := range []ServerRecord{
		{Model: "", Span: Span{0, 1}, State: StateServing},
		{Model: "m", Span: Span{3, 3}, State: StateServing},
		{Model: "m", Span: Span{0, 1}, State: "asleep"},
		{Model: "m", Span: Span{0, 1}, State: StateServing, Throughput: -1},
		{Model: "m", Span: Span{0, 1}, State: StateServing, Experts: model.ExpertSet{0, 0}},
		{Model: "m", Span: Span{0, 1}, State: StateServing, Experts: make(model.ExpertSet, model.MaxExperts/8+1)},
		{Model: "m", Span: Span{0, 1}, State: StateServing, ExpertLoad: make([]byte, model.MaxExperts+1)},
	} {
		if _, err := SignRecord(&bad, key); err == nil {
			t.Fatalf("signed a bad record %+v", bad)
		}
	}
	if _, err := OpenRecord(make([]byte, MaxRecordBytes+1)); err == nil {
		t.Fatal("opened an oversized record")
	}
}

func FuzzOpenRecord(f *testing.F) {
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	r := ServerRecord{Model: "m", Span: Span{0, 2}, State: StateServing, Expires: time.Now().Add(time.Minute)}
	raw, _ := SignRecord(&r, key)
	f.Add(raw)
	r.Experts = model.NewExpertSet(0, 3)
	raw, _ = SignRecord(&r, key)
	f.Add(raw)
	r.ExpertLoad = []byte{0, 1, 40, 255}
	raw, _ = SignRecord(&r, key)
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := OpenRecord(b)
		if err != nil {
			return
		}
		if err := got.check(); err != nil {
			t.Fatalf("opened a record that fails its checks: %v", err)
		}
	})
}

// Servers that see the same gap agree, from the same records, on which
// one of them moves: the one whose move helps most, else the lowest ID.
func TestMover(t *testing.T) {
	recs := []ServerRecord{rec("c", 0, 3, 10), rec("a", 0, 3, 10)}
	if m := Mover(5, 0, recs, DefaultMargin); m != "a" {
		t.Fatalf("mover %q, want a (tie, lowest ID)", m)
	}
	// b is slow: a's move to [2,5) gives the weakest layer 10 tok/s,
	// b's only 1.
	recs = []ServerRecord{rec("a", 0, 3, 10), rec("b", 0, 3, 1), rec("c", 0, 3, 10)}
	if m := Mover(5, 0, recs, DefaultMargin); m != "a" {
		t.Fatalf("mover %q, want a", m)
	}
	// A balanced swarm: nobody moves.
	recs = []ServerRecord{rec("a", 0, 3, 10), rec("b", 2, 5, 10)}
	if m := Mover(5, 0, recs, DefaultMargin); m != "" {
		t.Fatalf("mover %q in a balanced swarm", m)
	}
}

// someExperts is a record of a server holding the experts of set at
// layers first..last.
func someExperts(p string, first, last int, tps float64, set model.ExpertSet) ServerRecord {
	r := rec(p, first, last, tps)
	r.Experts = set
	return r
}

// Servers holding experts 0-3 of layers 0-1, with nobody holding 4-7,
// leave those layers to no route: a new whole-layer node takes them,
// and a whole-layer server where capacity is spare moves there.
func TestCoverageExpertsUnheld(t *testing.T) {
	low := model.NewExpertSet(0, 1, 2, 3)
	recs := []ServerRecord{someExperts("a", 0, 2, 10, low), someExperts("b", 0, 2, 10, low), rec("c", 2, 4, 10)}
	cov := NewCoverage(4, 8, recs, "")
	if m := cov.Missing(); len(m) != 1 || m[0] != (Span{0, 2}) {
		t.Errorf("missing %v, want [0,2) (coverage %v)", m, cov)
	}
	if got := ChooseSpan(cov, 2, 10); got != (Span{0, 2}) {
		t.Errorf("a new whole-layer node chose %s, want [0,2) (coverage %v)", got, cov)
	}
	// With d beside c at layers 2-3, one of them (the lower ID) moves.
	recs = append(recs, rec("d", 2, 4, 10))
	if m := Mover(4, 8, recs, DefaultMargin); m != "c" {
		t.Errorf("mover %q, want c", m)
	}
	if next, move := Rebalance(NewCoverage(4, 8, recs, "c"), Span{2, 4}, 10, DefaultMargin); !move || next != (Span{0, 2}) {
		t.Errorf("c rebalances to %s (move %v), want [0,2)", next, move)
	}
}

// Servers of some experts whose sets hold every expert together cover
// the layer, at the rate of its least-held expert; a model told to have
// no experts counts them for nothing, as its planner cannot use them.
func TestCoverageExpertsHeld(t *testing.T) {
	low, high := model.NewExpertSet(0, 1, 2, 3), model.NewExpertSet(4, 5, 6, 7)
	recs := []ServerRecord{someExperts("a", 0, 2, 10, low), someExperts("b", 0, 2, 30, high), rec("c", 0, 1, 5)}
	cov := NewCoverage(2, 8, recs, "")
	if m := cov.Missing(); len(m) != 0 {
		t.Errorf("missing %v with every expert held (coverage %v)", m, cov)
	}
	if cov[0] != 15 || cov[1] != 10 {
		t.Errorf("coverage %v, want [15 10]: c's 5 and the least-held experts' 10", cov)
	}
	if cov := NewCoverage(2, 0, recs, ""); cov[0] != 5 || cov[1] != 0 {
		t.Errorf("coverage %v without experts, want [5 0]", cov)
	}
	// Experts 4-7 of layer 0 held by one slow server only: layer 0 is the
	// weakest, though its servers' rates add up to the most.
	recs = []ServerRecord{someExperts("a", 0, 1, 100, low), someExperts("b", 0, 1, 1, high), rec("c", 1, 2, 20)}
	cov = NewCoverage(2, 8, recs, "")
	if cov[0] != 1 || cov[1] != 20 {
		t.Errorf("coverage %v, want [1 20]", cov)
	}
	if got := ChooseSpan(cov, 1, 10); got != (Span{0, 1}) {
		t.Errorf("a new one-layer node chose %s, want [0,1) (coverage %v)", got, cov)
	}
}

// A layer is routed through servers of some experts only where their
// sets hold every expert together; a server of every expert serves as
// before, and a planner that does not know the experts uses none of the
// others.
func TestPlanExperts(t *testing.T) {
	part := func(p string, first, last int, set model.ExpertSet) ServerRecord {
		r := rec(p, first, last, 10)
		r.Experts = set
		return r
	}
	low, high := model.NewExpertSet(0, 1), model.NewExpertSet(2, 3)
	span := Span{0, 2}
	if hops, err := Plan([]ServerRecord{part("a", 0, 2, low), part("b", 0, 2, high)}, PlanOptions{Span: span, Experts: 4}); err != nil || len(hops) != 1 {
		t.Errorf("two halves: %v %v, want one hop", hops, err)
	}
	_, err := Plan([]ServerRecord{part("a", 0, 2, low), part("b", 1, 2, high)}, PlanOptions{Span: span, Experts: 4})
	var nr *NoRouteError
	if !errors.As(err, &nr) || len(nr.Missing) != 1 || nr.Missing[0] != (Span{0, 1}) {
		t.Errorf("layer 0 with half its experts: %v, want layer 0 missing", err)
	}
	hops, err := Plan([]ServerRecord{part("a", 0, 2, low), rec("c", 0, 1, 10)}, PlanOptions{Span: span, Experts: 4})
	if !errors.As(err, &nr) || nr.Missing[0] != (Span{1, 2}) {
		t.Errorf("layer 1 with half its experts: %v %v, want layer 1 missing", hops, err)
	}
	if _, err := Plan([]ServerRecord{part("a", 0, 2, low), part("b", 0, 2, high)}, PlanOptions{Span: span}); err == nil {
		t.Error("a planner not told the experts routed through servers of some")
	}
}

// A new server of some experts takes those whose holders announce the
// least throughput at its layers.
func TestChooseExperts(t *testing.T) {
	part := func(p string, tps float64, set model.ExpertSet) ServerRecord {
		r := rec(p, 0, 2, tps)
		r.Experts = set
		return r
	}
	// Experts 0-1 at 10 tok/s, 2-3 at 30, 4-5 at 5+20, 6-7 at 20.
	recs := []ServerRecord{part("a", 10, model.NewExpertSet(0, 1)), part("b", 30, model.NewExpertSet(2, 3)),
		part("c", 5, model.NewExpertSet(4, 5)), part("d", 20, model.NewExpertSet(4, 5, 6, 7))}
	if got := ChooseExperts(recs, Span{0, 2}, 8, 4, ""); got.String() != "0-1,6-7" {
		t.Errorf("chose %v, want 0-1,6-7 (10 and 20 tok/s, the others 25 and 30)", got)
	}
	// Without d, 6-7 have no holder at all.
	if got := ChooseExperts(recs, Span{0, 2}, 8, 2, "d"); got.String() != "6-7" {
		t.Errorf("without d chose %v, want 6-7", got)
	}
	if got := ChooseExperts(nil, Span{0, 2}, 8, 8, ""); got != nil {
		t.Errorf("all 8 experts chose %v, want every one (nil)", got)
	}
}

// A new server of some experts weighs the router's picks the servers
// announce: an expert no one holds comes first, the most picked of
// those first; then the most picked for its holders' throughput; with
// no load announced, the least held.
func TestChooseExpertsByLoad(t *testing.T) {
	part := func(p string, tps float64, set model.ExpertSet, load []byte) ServerRecord {
		r := rec(p, 0, 2, tps)
		r.Experts, r.ExpertLoad = set, load
		return r
	}
	// The routers of a (and c) pick 2, 5 and 6 a hundred times as often
	// as the others; 6 and 7 have no holder; 2 is held at 20 tok/s, 5 at
	// 40.
	load := make([]byte, 8)
	for e := range load {
		load[e] = LoadByte(10)
	}
	load[2], load[5], load[6] = LoadByte(1000), LoadByte(1000), LoadByte(1000)
	recs := []ServerRecord{part("a", 10, model.NewExpertSet(0, 1, 2, 3), load), part("b", 30, model.NewExpertSet(4, 5), nil),
		part("c", 10, model.NewExpertSet(0, 1, 2, 3, 4, 5), load)}
	for _, c := range []struct {
		n    int
		want string
	}{{1, "6"}, {2, "6-7"}, {3, "2,6-7"}, {4, "2,5-7"}} {
		if got := ChooseExperts(recs, Span{0, 2}, 8, c.n, ""); got.String() != c.want {
			t.Errorf("%d experts: chose %v, want %s", c.n, got, c.want)
		}
	}
	for i := range recs {
		recs[i].ExpertLoad = nil
	}
	if got := ChooseExperts(recs, Span{0, 2}, 8, 3, ""); got.String() != "0,6-7" {
		t.Errorf("with no load announced chose %v, want 0,6-7 (no holder, then the least held)", got)
	}
	// Loads announced for other layers do not count.
	recs[0].ExpertLoad, recs[0].Span = load, Span{2, 4}
	if d := ExpertDemand(recs, Span{0, 2}, 8, ""); d[2] != 0 {
		t.Errorf("demand of expert 2 at layers [0,2) counts a record of [2,4): %v", d)
	}
}

// LoadByte keeps a load within a sixteenth of a doubling, and 0 as 0.
func TestLoadByte(t *testing.T) {
	if LoadByte(0) != 0 || LoadByte(math.NaN()) != 0 || LoadOf(0) != 0 || LoadByte(1e30) != 255 {
		t.Fatal("LoadByte's ends")
	}
	for _, v := range []float64{1, 2, 3, 10, 1000, 123456, 1e9} {
		if got := LoadOf(LoadByte(v)); math.Abs(math.Log2(got/v)) > 1.0/16+1e-9 {
			t.Errorf("%v comes back as %v", v, got)
		}
	}
}
