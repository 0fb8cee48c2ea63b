package node

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/work"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// The block store's cap (the built-in model: about 866 kB of weights a
// layer). A cap that holds no layer is refused before anything is pulled;
// a span of more layers than the cap holds is refused; a volunteer that
// chooses takes the layers the cap holds; a pull that does not fit what
// the cap leaves is refused before it fetches, saying how much it needs
// and how much is left.
func TestStoreCapRefusesWhatDoesNotFit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)

	tiny := testConfig(t, addr)
	tiny.StoreCap = 500_000
	v := startNode(t, tiny)
	_, err := v.Serve(ctx, ServeRequest{Model: res.CID, Threads: 1})
	if !errors.Is(err, blocks.ErrStoreFull) || !strings.Contains(err.Error(), "holds no layer") ||
		!strings.Contains(err.Error(), "(500000 bytes; --store-cap)") || !regexp.MustCompile(`weights take [0-9.]+ kB \(8\d{5} bytes\)`).MatchString(err.Error()) {
		t.Fatalf("a 500 kB store cap: %v; want a refusal giving the cap and a layer's size", err)
	}
	if st := v.Status(); st.StoreBytes > 10_000 {
		t.Errorf("the refused volunteer stored %d bytes", st.StoreBytes)
	}
	t.Logf("refused: %v", err)

	two := testConfig(t, addr)
	two.StoreCap = 2_300_000 // two layers, not three
	w := startNode(t, two)
	_, err = w.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:6", Threads: 1})
	if err == nil || !strings.Contains(err.Error(), "6 layers, and the caps hold 2") {
		t.Fatalf("six layers under a cap of two: %v", err)
	}
	sv, err := w.Serve(ctx, ServeRequest{Model: res.CID, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := sv.Span().Len(); n != 2 {
		t.Fatalf("under a 2.3 MB store cap the volunteer took %s, want 2 layers", sv.Span())
	}
	used := w.Store().Size()
	err = w.Pull(ctx, api.PullRequest{CID: res.CID}, func(api.PullProgress) {})
	if !errors.Is(err, blocks.ErrStoreFull) || !strings.Contains(err.Error(), "--store-cap") || !strings.Contains(err.Error(), "needs") {
		t.Fatalf("a pull of the whole model into what is left of 2.3 MB: %v", err)
	}
	if got := w.Store().Size(); got-used > 64<<10 {
		t.Errorf("the refused pull stored %d bytes: more than the manifest's parts", got-used)
	}
	t.Logf("refused: %v", err)
}

// A memory cap (the node's ServeMemory, or the request's) that holds no
// layer is refused with both numbers: the cap, and what one layer takes.
func TestServeMemoryBelowALayerRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	cfg := testConfig(t, addr)
	cfg.ServeMemory = 1_000_000
	v := startNode(t, cfg)
	_, err := v.Serve(ctx, ServeRequest{Model: res.CID, Threads: 1})
	if err == nil {
		t.Fatal("a 1 MB memory cap served a layer of 1.2 MB")
	}
	m := regexp.MustCompile(`a memory cap of 1\.0 MB \(1000000 bytes; --serve-memory\) holds no layer of .*: one layer takes [0-9.]+ MB \((\d+) bytes`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("err = %v; want the cap and a layer's size", err)
	}
	if layer, _ := strconv.ParseInt(m[1], 10, 64); layer <= 1_000_000 {
		t.Errorf("a layer takes %d bytes by the message, which fits the cap", layer)
	}
	if v.Store().Size() > 10_000 {
		t.Errorf("the refused volunteer pulled %d bytes", v.Store().Size())
	}
	// The request's cap goes before the node's.
	sv, err := v.Serve(ctx, ServeRequest{Model: res.CID, MemoryCap: 3_000_000, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := sv.Span().Len(); n != 2 {
		t.Errorf("a 3 MB cap took %s, want two layers of 1.2 MB", sv.Span())
	}
	if got := v.Status().Caps.ServeMemory; got != 1_000_000 {
		t.Errorf("status shows a serve memory cap of %d", got)
	}
}

// The node's thread cap bounds the compute pool of everything it runs:
// the span it serves, the model it completes with, the job it trains,
// whatever each asks for.
func TestThreadsCapBoundsEveryBackend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	cfg := testConfig(t, addr)
	cfg.Threads, cfg.TrainThreads = 1, 2
	cfg.MaxUpload, cfg.MaxDownload = 50e6, 40e6 // far above what the test moves
	v := startNode(t, cfg)
	if _, err := v.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:2"}); err != nil { // Threads 0: every core
		t.Fatal(err)
	}
	v.swarmMu.Lock()
	got := v.servings[0].be.Threads()
	v.swarmMu.Unlock()
	if got != 1 {
		t.Errorf("the served span computes on %d threads under a cap of 1", got)
	}
	sm, err := v.SwarmModel(ctx, res.CID)
	if err != nil {
		t.Fatal(err)
	}
	if got := sm.be.Threads(); got != 1 {
		t.Errorf("a completion through the swarm computes on %d threads under a cap of 1", got)
	}
	for _, want := range []int{0, 1, 2, 64} {
		be, err := v.openBackend(want)
		if err != nil {
			t.Fatal(err)
		}
		if be.Threads() != 1 {
			t.Errorf("a backend asking for %d threads got %d under a cap of 1", want, be.Threads())
		}
		be.Close()
	}
	if got := v.Status().Caps.Threads; got != 1 {
		t.Errorf("status shows a thread cap of %d", got)
	}
	mt := scrape(t, v)
	if mt["mycel_threads_cap"] != 1 || mt[`mycel_bandwidth_cap_bytes_per_second{direction="upload"}`] != 50e6 || mt[`mycel_bandwidth_cap_bytes_per_second{direction="download"}`] != 40e6 {
		t.Errorf("metrics: threads cap %v, upload %v, download %v", mt["mycel_threads_cap"], mt[`mycel_bandwidth_cap_bytes_per_second{direction="upload"}`], mt[`mycel_bandwidth_cap_bytes_per_second{direction="download"}`])
	}
	// Without a cap a backend gets what it asks for.
	u := startNode(t, testConfig(t))
	be, err := u.openBackend(2)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if be.Threads() != 2 {
		t.Errorf("an uncapped node gave %d threads for 2", be.Threads())
	}
}

// A node whose day's transfer limit is spent (a tiny one: joining a peer
// takes more) suspends its work, "over-limit", saying when it resumes.
func TestDailyTransferLimitSuspends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := startNode(t, testConfig(t))
	cfg := testConfig(t, b.Status().Addrs[0])
	cfg.DailyTransfer = 2000
	a := startNode(t, cfg)
	if err := a.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	var st api.Status
	for {
		st = a.Status()
		if st.State == work.OverLimit || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.State != work.OverLimit || !strings.Contains(st.Reason, "daily transfer limit is spent") || !strings.Contains(st.Reason, "resumes at midnight") {
		t.Fatalf("state %q, reason %q; want over-limit until midnight", st.State, st.Reason)
	}
	c := st.Caps
	if c.DailyTransfer != 2000 || c.TransferToday < 2000 || !c.TransferResets.Equal(nextMidnight(time.Now())) {
		t.Errorf("caps %+v: want 2000 a day, at least that today, resetting at midnight", c)
	}
	if len(st.Suspensions) == 0 || st.Suspensions[0].Until == nil || !st.Suspensions[0].Until.Equal(c.TransferResets) {
		t.Errorf("suspensions %+v: want one that ends at midnight", st.Suspensions)
	}
	if mt := scrape(t, a); mt["mycel_daily_transfer_cap_bytes"] != 2000 || mt["mycel_transfer_today_bytes"] < 2000 {
		t.Errorf("metrics: daily cap %v, today %v; want 2000 and at least that", mt["mycel_daily_transfer_cap_bytes"], mt["mycel_transfer_today_bytes"])
	}
	// The other node, with no limit, works on.
	if sb := b.Status(); sb.State != work.Working || sb.Caps.TransferToday == 0 {
		t.Errorf("the node with no limit: state %q, %d bytes today", sb.State, sb.Caps.TransferToday)
	}
	t.Logf("%s: %s", st.State, st.Reason)
}

// The meter's day: a new day clears the suspension and counts from zero,
// and a restart on the same day goes on from what was kept, but not on
// the next.
func TestTransferMeterDays(t *testing.T) {
	var total atomic.Int64
	// 23:00 on a day ten days ahead: the meter runs on this clock, but
	// the work state ends a suspension by the real one, so its midnight
	// must not have passed already.
	y, mo, d := time.Now().Date()
	now := time.Date(y, mo, d+10, 23, 0, 0, 0, time.Local)
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), TransferFile)
	ws := work.NewState()
	defer ws.Close()
	m := newTransferMeter(1000, total.Load, ws, path, clock)
	total.Store(999)
	m.check()
	if !ws.Working() {
		t.Fatal("suspended below the limit")
	}
	total.Store(1000)
	m.check()
	if !ws.Has(work.OverLimit) {
		t.Fatal("not suspended at the limit")
	}
	if err := m.save(); err != nil {
		t.Fatal(err)
	}
	// A restart the same day (the host counts from zero again) is still
	// over the limit.
	total.Store(0)
	ws2 := work.NewState()
	defer ws2.Close()
	m2 := newTransferMeter(1000, total.Load, ws2, path, clock)
	m2.check()
	if got, _ := m2.today(); got != 1000 || !ws2.Has(work.OverLimit) {
		t.Fatalf("after a restart: %d bytes today, over-limit %v; want 1000 and suspended", got, ws2.Has(work.OverLimit))
	}
	// Midnight passes: the day starts from zero and the node works.
	now = now.Add(2 * time.Hour)
	total.Store(50)
	m2.check()
	if got, resets := m2.today(); got != 0 || ws2.Has(work.OverLimit) || !resets.Equal(time.Date(y, mo, d+12, 0, 0, 0, 0, time.Local)) {
		t.Fatalf("the next day: %d bytes, over-limit %v, resets %v", got, ws2.Has(work.OverLimit), resets)
	}
	// A restart the next day does not take yesterday's count.
	if err := m2.save(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(24 * time.Hour)
	m3 := newTransferMeter(1000, total.Load, nil, path, clock)
	if got, _ := m3.today(); got != 0 {
		t.Errorf("a restart a day later counts %d bytes of the day before", got)
	}
}

// A node's download cap paces what bitswap and the block streams bring
// it: a pull of the built-in model (several MB) keeps under the cap, and
// not far below it.
func TestDownloadCapPacesPulls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	const rateCap = 2e6
	cfg := testConfig(t, addr)
	cfg.MaxDownload = rateCap
	c := startNode(t, cfg)
	if err := c.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	var last api.PullProgress
	start := time.Now()
	if err := c.Pull(ctx, api.PullRequest{CID: res.CID}, func(p api.PullProgress) { last = p }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	got := float64(last.TotalBytes) / took.Seconds()
	t.Logf("pulled %d bytes in %v: %.2f MB/s under a cap of %.2f MB/s", last.TotalBytes, took.Round(time.Millisecond), got/1e6, rateCap/1e6)
	if last.TotalBytes < 4e6 {
		t.Fatalf("the pull moved %d bytes: too few to measure a rate", last.TotalBytes)
	}
	if got > 1.2*rateCap || got < 0.5*rateCap {
		t.Errorf("a pull at %.0f bytes/s under a cap of %.0f", got, float64(rateCap))
	}
}
