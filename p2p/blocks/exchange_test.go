package blocks

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockstore"
	blockfmt "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mycel-net/mycel/p2p"
)

// node is one peer of a test: host with DHT, block store and exchange.
type node struct {
	host  *p2p.Host
	store *Store
	ex    *Exchange
	lh    host.Host // a mocknet host the node does not own, or nil

	once sync.Once
}

// nodeConfig says how to build a test node.
type nodeConfig struct {
	dataDir string    // persistent identity, DHT and blocks; "" for a temp store and memory DHT
	mock    host.Host // run on this mocknet host instead of loopback TCP
	stall   time.Duration
	noBulk  bool // bitswap only
}

func newNode(t testing.TB, cfg nodeConfig) *node {
	t.Helper()
	opts := []p2p.Option{p2p.NoMDNS()}
	if cfg.mock != nil {
		opts = append(opts, p2p.WithHost(cfg.mock))
	} else {
		opts = append(opts, p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay())
	}
	storeDir := t.TempDir()
	if cfg.dataDir != "" {
		opts = append(opts, p2p.DataDir(cfg.dataDir))
		storeDir = filepath.Join(cfg.dataDir, "blocks")
	}
	h, err := p2p.New(opts...)
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	s, err := OpenStore(storeDir)
	if err != nil {
		h.Close()
		t.Fatalf("OpenStore: %v", err)
	}
	if cfg.stall == 0 {
		cfg.stall = 10 * time.Second
	}
	xopts := []ExchangeOption{StallTimeout(cfg.stall), ProviderSearchDelay(50 * time.Millisecond)}
	if cfg.noBulk {
		xopts = append(xopts, NoBulk())
	}
	ex, err := NewExchange(h.Libp2p(), h.Routing(), s, xopts...)
	if err != nil {
		t.Fatalf("NewExchange: %v", err)
	}
	n := &node{host: h, store: s, ex: ex, lh: cfg.mock}
	t.Cleanup(func() { n.close(t) })
	return n
}

// close stops the node, the mocknet host included: the peer is gone.
func (n *node) close(t testing.TB) {
	n.once.Do(func() {
		if err := n.ex.Close(); err != nil {
			t.Errorf("close exchange: %v", err)
		}
		if err := n.host.Close(); err != nil {
			t.Errorf("close host: %v", err)
		}
		if n.lh != nil {
			n.lh.Close()
		}
		if err := n.store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
}

func connect(t testing.TB, ctx context.Context, from, to *node) {
	t.Helper()
	if err := from.host.Connect(ctx, to.host.AddrInfo()); err != nil {
		t.Fatal(err)
	}
}

func importData(t testing.TB, n *node, data []byte) []cid.Cid {
	t.Helper()
	cids, err := Import(context.Background(), n.store, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return cids
}

func assemble(t testing.TB, bs []Block) []byte {
	t.Helper()
	var out []byte
	for _, b := range bs {
		if err := b.Verify(); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Data...)
	}
	return out
}

// TestFindThroughDHTAndFetch: A and C know only B. A stores and provides
// blocks; C finds A through the DHT and fetches everything from it.
func TestFindThroughDHTAndFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, c := newNode(t, nodeConfig{}), newNode(t, nodeConfig{}), newNode(t, nodeConfig{})
	connect(t, ctx, a, b)
	connect(t, ctx, c, b)
	for _, n := range []*node{a, b, c} {
		if err := n.host.WaitRoutable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	data := randBytes(20, 5*ChunkSize+777)
	cids := importData(t, a, data)
	start := time.Now()
	if err := a.ex.Provide(ctx, cids...); err != nil {
		t.Fatalf("Provide: %v", err)
	}
	t.Logf("provided %d CIDs in %s", len(cids), time.Since(start).Round(time.Millisecond))

	provs, err := c.ex.FindProviders(ctx, cids[0], 1)
	if err != nil {
		t.Fatalf("FindProviders: %v", err)
	}
	if len(provs) != 1 || provs[0].ID != a.host.ID() {
		t.Fatalf("providers %v, want only A (%s)", provs, a.host.ID())
	}

	// The DHT lookups may have connected C to A; cut that, so the fetch
	// has to find A itself: B says it has nothing, then the session asks the
	// DHT for providers and dials A.
	if err := c.host.Libp2p().Network().ClosePeer(a.host.ID()); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	got, err := c.ex.GetBlocks(ctx, cids)
	if err != nil {
		t.Fatalf("GetBlocks: %v", err)
	}
	t.Logf("fetched %d blocks in %s", len(cids), time.Since(start).Round(time.Millisecond))
	if !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}
	for _, id := range cids {
		if ok, _ := c.store.Has(ctx, id); !ok {
			t.Errorf("C did not store %s", id)
		}
	}
	st, _ := c.ex.Stats()
	if st.BlocksReceived < uint64(len(cids)) {
		t.Errorf("C received %d blocks, want %d", st.BlocksReceived, len(cids))
	}
	// A second fetch is served from C's own store.
	again, err := c.ex.GetBlocks(ctx, cids)
	if err != nil || !bytes.Equal(assemble(t, again), data) {
		t.Fatalf("second fetch: %v", err)
	}
	if st2, _ := c.ex.Stats(); st2.BlocksReceived != st.BlocksReceived {
		t.Error("second fetch went to the network")
	}
}

// exchangeModes are the two ways a fetch can go: over BlocksProtocol
// first, or over bitswap alone.
var exchangeModes = []struct {
	name   string
	noBulk bool
}{{"bulk", false}, {"bitswap", true}}

// TestProviderLeavesMidFetch: C fetches from A and B, which hold the same
// blocks; A vanishes after the first block; the fetch completes from B.
func TestProviderLeavesMidFetch(t *testing.T) {
	for _, mode := range exchangeModes {
		t.Run(mode.name, func(t *testing.T) { testProviderLeavesMidFetch(t, mode.noBulk) })
	}
}

func testProviderLeavesMidFetch(t *testing.T, noBulk bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	// Slow links, so that the fetch is still running when A goes, even
	// on a machine busy enough to let the watching loop below sleep long
	// (12 blocks over two 4 MiB/s links: about 1.5 s).
	mn.SetLinkDefaults(mocknet.LinkOptions{Bandwidth: 4 << 20, Latency: 2 * time.Millisecond})
	var nodes []*node
	for range 3 {
		mh, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, newNode(t, nodeConfig{mock: mh, noBulk: noBulk}))
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	connect(t, ctx, c, a)
	connect(t, ctx, c, b)

	data := randBytes(21, 12*ChunkSize)
	cids := importData(t, a, data)
	importData(t, b, data)

	results := c.ex.Fetch(ctx, cids)
	got := map[cid.Cid][]byte{}
	first := <-results
	if first.Err != nil {
		t.Fatalf("first block: %v", first.Err)
	}
	got[first.CID] = first.Data
	// Wait until A has served part of the fetch, then pull it out.
	var aSent Stats
	for deadline := time.Now().Add(10 * time.Second); aSent.BlocksSent == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		aSent, _ = a.ex.Stats()
	}
	if aSent.BlocksSent == 0 {
		t.Fatal("A never served a block")
	}
	if cGot, _ := c.ex.Stats(); cGot.BlocksReceived >= uint64(len(cids)) {
		t.Fatal("the fetch was over before A left; nothing was tested")
	}
	a.close(t)
	t.Logf("A sent %d blocks before it left", aSent.BlocksSent)
	for r := range results {
		if r.Err != nil {
			t.Fatalf("block %s: %v", r.CID, r.Err)
		}
		got[r.CID] = r.Data
	}
	if len(got) != len(cids) {
		t.Fatalf("got %d blocks, want %d", len(got), len(cids))
	}
	var back []byte
	for _, id := range cids {
		back = append(back, got[id]...)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("fetched content differs")
	}
	bSent, _ := b.ex.Stats()
	if bSent.BlocksSent == 0 {
		t.Error("B sent nothing; the fetch cannot have completed from B")
	}
}

// liar runs plain bitswap over a blockstore that holds wrong bytes under a
// CID, as a malicious or broken peer would serve them.
func liar(t testing.TB, h host.Host, c cid.Cid, wrong []byte) *bitswap.Bitswap {
	t.Helper()
	bstore := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	blk, err := blockfmt.NewBlockWithCid(wrong, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := bstore.Put(context.Background(), blk); err != nil {
		t.Fatal(err)
	}
	net := bsnet.NewFromIpfsHost(h, bsnet.Prefix(p2p.ProtocolPrefix),
		bsnet.SupportedProtocols([]protocol.ID{p2p.BitswapProtocolSuffix}))
	bs := bitswap.New(context.Background(), net, nil, bstore)
	t.Cleanup(func() { bs.Close() })
	return bs
}

// TestWrongBytesAreRejected: a peer that answers a want with bytes that do
// not hash to the CID gets nothing stored; the honest peer's copy is used.
func TestWrongBytesAreRejected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	lh, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := mn.GenPeer()
	hh, _ := mn.GenPeer()
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	good := NewBlock(randBytes(30, 4096))
	wrong := randBytes(31, 4096)
	lb := liar(t, lh, good.CID, wrong)
	c := newNode(t, nodeConfig{mock: ch, stall: time.Second})
	honest := newNode(t, nodeConfig{mock: hh})
	if err := honest.store.Put(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := c.host.Connect(ctx, peer.AddrInfo{ID: lh.ID(), Addrs: lh.Addrs()}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err = c.ex.Get(ctx, good.CID)
	var nf *NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get from the liar: %v, want NotFoundError", err)
	}
	t.Logf("%v after %s", err, time.Since(start).Round(time.Millisecond))
	if st, _ := lb.Stat(); st.BlocksSent == 0 {
		t.Fatal("the liar never sent its block; nothing was tested")
	}
	if keys, _ := c.store.AllKeys(ctx); len(keys) != 0 {
		t.Fatalf("C stored %v from the liar", keys)
	}

	// A fetcher connected to the liar and to an honest provider gets the
	// right bytes. The liar's block never matches; when bitswap has waited
	// out its DONT_HAVE timeout on the liar, the session looks for
	// providers on the DHT and asks the honest peer.
	dh, _ := mn.GenPeer()
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	d := newNode(t, nodeConfig{mock: dh, stall: 20 * time.Second})
	connect(t, ctx, d, honest)
	for _, n := range []*node{d, honest} {
		if err := n.host.WaitRoutable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := honest.ex.Provide(ctx, good.CID); err != nil {
		t.Fatal(err)
	}
	if err := d.host.Connect(ctx, peer.AddrInfo{ID: lh.ID(), Addrs: lh.Addrs()}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	b, err := d.ex.Get(ctx, good.CID)
	if err != nil {
		ls, _ := lb.Stat()
		hs, _ := honest.ex.Stats()
		ds, _ := d.ex.Stats()
		t.Fatalf("Get with an honest peer: %v (liar sent %d, honest sent %d, d got %d, d peers %d)", err, ls.BlocksSent, hs.BlocksSent, ds.BlocksReceived, ds.Peers)
	}
	t.Logf("fetched beside the liar in %s", time.Since(start).Round(time.Millisecond))
	if !bytes.Equal(b.Data, good.Data) {
		t.Fatal("wrong content")
	}
}

// TestUnknownCIDFailsInTime: nobody has the block; the fetch fails with a
// clear error by its stall timeout, and by a shorter context deadline.
func TestUnknownCIDFailsInTime(t *testing.T) {
	a, b := newNode(t, nodeConfig{stall: time.Second}), newNode(t, nodeConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	connect(t, ctx, a, b)
	if err := a.host.WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	missing := NewBlock([]byte("no one has this")).CID

	start := time.Now()
	_, err := a.ex.Get(ctx, missing)
	took := time.Since(start)
	var nf *NotFoundError
	if !errors.As(err, &nf) || !nf.CID.Equals(missing) {
		t.Fatalf("Get: %v, want NotFoundError for %s", err, missing)
	}
	if took > 5*time.Second {
		t.Errorf("took %s for a 1s stall timeout", took)
	}
	t.Logf("%v (after %s)", err, took.Round(time.Millisecond))

	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer dcancel()
	_, err = a.ex.GetBlocks(dctx, []cid.Cid{missing, NewBlock([]byte("nor this")).CID})
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetBlocks past its deadline: %v, want ErrNotFound and DeadlineExceeded", err)
	}
	t.Log(err)

	if _, err := a.ex.FindProviders(dctx, missing, 0); !errors.Is(err, ErrNoProviders) {
		t.Fatalf("FindProviders: %v, want ErrNoProviders", err)
	}

	// A closed exchange fails fetches at once.
	a.ex.Close()
	if _, err := a.ex.Get(ctx, missing); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

// TestCloseEndsRunningFetch: Close does not wait for a fetch's stall timeout.
func TestCloseEndsRunningFetch(t *testing.T) {
	a := newNode(t, nodeConfig{stall: time.Hour})
	results := a.ex.Fetch(context.Background(), []cid.Cid{NewBlock([]byte("x")).CID})
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { a.ex.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a running fetch")
	}
	r := <-results
	if !errors.Is(r.Err, ErrClosed) {
		t.Fatalf("fetch ended with %v, want ErrClosed", r.Err)
	}
}

// TestRestartKeepsIdentityAndBlocks: a node closed and opened again on the
// same data dir has the same peer ID and still serves its blocks.
func TestRestartKeepsIdentityAndBlocks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	a := newNode(t, nodeConfig{dataDir: dir})
	id := a.host.ID()
	data := randBytes(40, 2*ChunkSize+5)
	cids := importData(t, a, data)
	a.close(t)

	a2 := newNode(t, nodeConfig{dataDir: dir})
	if a2.host.ID() != id {
		t.Fatalf("peer ID changed: %s -> %s", id, a2.host.ID())
	}
	keys, err := a2.store.AllKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cids {
		if !slices.ContainsFunc(keys, c.Equals) {
			t.Fatalf("block %s lost across restart", c)
		}
	}
	b := newNode(t, nodeConfig{})
	connect(t, ctx, b, a2)
	got, err := b.ex.GetBlocks(ctx, cids)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}
}

// TestFetchIntoFullStore: blocks that do not fit fail with ErrStoreFull.
func TestFetchIntoFullStore(t *testing.T) {
	for _, mode := range exchangeModes {
		t.Run(mode.name, func(t *testing.T) { testFetchIntoFullStore(t, mode.noBulk) })
	}
}

func testFetchIntoFullStore(t *testing.T, noBulk bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := newNode(t, nodeConfig{noBulk: noBulk})
	b := newNode(t, nodeConfig{noBulk: noBulk})
	// Swap in a small store for b (its exchange is rebuilt on it).
	b.ex.Close()
	small := openTestStore(t, t.TempDir(), Cap(ChunkSize+ChunkSize/2))
	opts := []ExchangeOption{StallTimeout(5 * time.Second)}
	if noBulk {
		opts = append(opts, NoBulk())
	}
	ex, err := NewExchange(b.host.Libp2p(), b.host.Routing(), small, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	cids := importData(t, a, randBytes(50, 3*ChunkSize))
	connect(t, ctx, b, a)
	var full, ok int
	for r := range ex.Fetch(ctx, cids) {
		switch {
		case r.Err == nil:
			ok++
		case errors.Is(r.Err, ErrStoreFull):
			full++
		default:
			t.Fatalf("block %s: %v", r.CID, r.Err)
		}
	}
	if ok != 1 || full != 2 {
		t.Fatalf("%d stored, %d refused; want 1 and 2", ok, full)
	}
	if small.Size() > small.Cap() {
		t.Fatalf("store holds %d bytes over its cap %d", small.Size(), small.Cap())
	}
}

// TestProvideWaitsForRoutingTable: a node that provides before it has any
// peer retries until it has one, and gives up at its deadline.
func TestProvideWaitsForRoutingTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := newNode(t, nodeConfig{}), newNode(t, nodeConfig{})
	c := NewBlock([]byte("provided early")).CID

	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if err := a.ex.Provide(sctx, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Provide with no peers: %v, want DeadlineExceeded", err)
	} else {
		t.Log(err)
	}

	done := make(chan error, 1)
	go func() { done <- a.ex.Provide(ctx, c) }()
	time.Sleep(200 * time.Millisecond)
	connect(t, ctx, a, b)
	if err := <-done; err != nil {
		t.Fatalf("Provide once a peer came: %v", err)
	}
	provs, err := b.ex.FindProviders(ctx, c, 0)
	if err != nil || len(provs) != 1 || provs[0].ID != a.host.ID() {
		t.Fatalf("FindProviders from B: %v, %v", provs, err)
	}
}

// TestSessionFetchesInSteps: fetches that follow one another in a Session
// get whole, verified, stored blocks, with odd sizes (two blocks share a
// bitswap message) and a CID already local among them.
func TestSessionFetchesInSteps(t *testing.T) {
	for _, mode := range exchangeModes {
		t.Run(mode.name, func(t *testing.T) { testSessionFetchesInSteps(t, mode.noBulk) })
	}
}

func testSessionFetchesInSteps(t *testing.T, noBulk bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, c := newNode(t, nodeConfig{noBulk: noBulk}), newNode(t, nodeConfig{noBulk: noBulk})
	data := randBytes(80, 5*ChunkSize+12345)
	cids := importData(t, a, data)
	small := NewBlock(randBytes(81, 777))
	if err := a.store.Put(ctx, small); err != nil {
		t.Fatal(err)
	}
	connect(t, ctx, c, a)
	sess := c.ex.NewSession(ctx)
	first, err := sess.Get(ctx, small.CID)
	if err != nil || !bytes.Equal(first.Data, small.Data) {
		t.Fatalf("Get in a session: %v", err)
	}
	if _, err := sess.GetBlocks(ctx, cids[:2]); err != nil {
		t.Fatal(err)
	}
	bs, err := sess.GetBlocks(ctx, append([]cid.Cid{cids[0]}, cids...))
	if err != nil {
		t.Fatal(err)
	}
	if got := assemble(t, bs[1:]); !bytes.Equal(got, data) {
		t.Fatal("the blocks fetched in a session do not reassemble the data")
	}
	for _, x := range append(cids, small.CID) {
		if ok, _ := c.store.Has(ctx, x); !ok {
			t.Errorf("%s was fetched but not stored", x)
		}
	}

	// A Download stores the blocks and reports their sizes, not their
	// data, for new blocks (one larger than a chunk), repeats and blocks
	// already here.
	more := randBytes(82, 3*ChunkSize+99)
	big := NewBlock(randBytes(83, ChunkSize+4096))
	if err := a.store.Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	newCIDs := append(importData(t, a, more), big.CID)
	ask := append(append([]cid.Cid{cids[1], small.CID}, newCIDs...), newCIDs[0])
	sizes := map[cid.Cid]int{}
	n := 0
	for r := range sess.Download(ctx, ask) {
		if r.Err != nil {
			t.Fatalf("download %s: %v", r.CID, r.Err)
		}
		if r.Data != nil {
			t.Fatalf("download %s: a Result with data", r.CID)
		}
		sizes[r.CID] = r.Size
		n++
	}
	if n != len(ask) {
		t.Fatalf("%d results for %d CIDs", n, len(ask))
	}
	for _, x := range ask {
		b, err := c.store.Get(ctx, x)
		if err != nil {
			t.Fatalf("%s downloaded but not stored: %v", x, err)
		}
		if err := b.Verify(); err != nil {
			t.Fatal(err)
		}
		if sizes[x] != len(b.Data) {
			t.Errorf("%s: size %d, stored %d bytes", x, sizes[x], len(b.Data))
		}
	}
}

// TestFetchInParallelWindows: a bitswap fetch of many more CIDs than a
// window, with repeats, gets each block once per time it was asked for; a
// CID nobody has fails the whole fetch's remainder in time, and every CID
// gets exactly one result.
func TestFetchInParallelWindows(t *testing.T) {
	defer func(n int) { windowSize = n }(windowSize)
	windowSize = 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := newNode(t, nodeConfig{})
	c := newNode(t, nodeConfig{stall: time.Second, noBulk: true})
	var want []Block
	for i := range 20 {
		b := NewBlock(randBytes(uint64(200+i), 1000+i))
		want = append(want, b)
	}
	if err := a.store.PutMany(ctx, want); err != nil {
		t.Fatal(err)
	}
	connect(t, ctx, c, a)
	var cids []cid.Cid
	for _, b := range want {
		cids = append(cids, b.CID)
	}
	cids = append(cids, cids[4], cids[17])
	got := map[cid.Cid]int{}
	for r := range c.ex.Fetch(ctx, cids) {
		if r.Err != nil {
			t.Fatalf("fetch %s: %v", r.CID, r.Err)
		}
		if err := r.Block.Verify(); err != nil {
			t.Fatal(err)
		}
		got[r.CID]++
	}
	for i, b := range want {
		n := 1
		if i == 4 || i == 17 {
			n = 2
		}
		if got[b.CID] != n {
			t.Errorf("%d results for block %d, want %d", got[b.CID], i, n)
		}
	}

	// A missing CID in the middle: the fetch ends after the stall timeout
	// and still answers every CID once.
	missing := NewBlock([]byte("nobody has this")).CID
	more := []cid.Cid{NewBlock(randBytes(300, 50)).CID}
	if err := a.store.Put(ctx, Block{CID: more[0], Data: randBytes(300, 50)}); err != nil {
		t.Fatal(err)
	}
	mixed := append(append(append([]cid.Cid{}, more...), missing), cids[:3]...)
	start := time.Now()
	n, notFound := 0, 0
	for r := range c.ex.Fetch(ctx, mixed) {
		n++
		if r.Err != nil {
			if !errors.Is(r.Err, ErrNotFound) {
				t.Errorf("fetch %s: %v, want ErrNotFound", r.CID, r.Err)
			}
			notFound++
		}
	}
	if n != len(mixed) || notFound == 0 {
		t.Fatalf("%d results (%d not found) for %d CIDs", n, notFound, len(mixed))
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("the fetch took %s", el)
	}
}
