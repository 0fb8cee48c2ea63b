package blocks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mycel-net/mycel/p2p"
)

// fakeServer answers BlocksProtocol from a map, which may hold wrong bytes
// under a CID, and can misbehave on purpose.
type fakeServer struct {
	blocks map[cid.Cid][]byte
	// cutAfter > 0: after this many blocks, send half of the next one and
	// reset the stream.
	cutAfter int
	// stall: answer HAVE, then never answer a GET.
	stall bool
	// trickle: send the blocks a few bytes at a time, never pausing long
	// enough to count as a stall.
	trickle bool

	sent  atomic.Int64 // blocks sent whole
	haves atomic.Int64 // HAVE requests answered
}

// fakeProvider starts a node that serves bitswap from an empty store and
// BlocksProtocol from fs.
func fakeProvider(t *testing.T, fs *fakeServer) *node {
	t.Helper()
	n := newNode(t, nodeConfig{noBulk: true})
	n.host.Libp2p().SetStreamHandler(p2p.BlocksProtocol, fs.handle)
	return n
}

func (fs *fakeServer) handle(s network.Stream) {
	defer s.Close()
	br := bufio.NewReader(s)
	for {
		req, err := readRequest(br)
		if err != nil {
			return
		}
		var out []byte
		if req.op == opHave {
			fs.haves.Add(1)
			has := make([]bool, len(req.cids))
			for i, c := range req.cids {
				_, has[i] = fs.blocks[c]
			}
			if _, err := s.Write(appendHave(nil, has)); err != nil {
				return
			}
			continue
		}
		if fs.stall {
			// Read on without answering, until the client gives up on
			// the stream.
			io.Copy(io.Discard, br)
			return
		}
		out = append(out, statusOK)
		for _, c := range req.cids {
			data, ok := fs.blocks[c]
			out = appendEntryHeader(out, ok, len(data))
			if !ok {
				continue
			}
			if fs.cutAfter > 0 && int(fs.sent.Load()) >= fs.cutAfter {
				s.Write(append(out, data[:len(data)/2]...))
				s.Reset()
				return
			}
			out = append(out, data...)
			fs.sent.Add(1)
		}
		if fs.trickle {
			for len(out) > 0 {
				n := min(len(out), 1024)
				if _, err := s.Write(out[:n]); err != nil {
					return
				}
				out = out[n:]
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		if _, err := s.Write(out); err != nil {
			return
		}
	}
}

// bitswapReceived is how many blocks n got over bitswap.
func bitswapReceived(t *testing.T, n *node) uint64 {
	t.Helper()
	st, err := n.ex.bs.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.BlocksReceived
}

func fetchAll(t *testing.T, ctx context.Context, n *node, cids []cid.Cid) []Block {
	t.Helper()
	got, err := n.ex.GetBlocks(ctx, cids)
	if err != nil {
		t.Fatalf("GetBlocks: %v", err)
	}
	return got
}

// TestBulkFromTwoProviders: C fetches blocks that A and B both hold; both
// send some over BlocksProtocol, bitswap carries none, and every block is
// stored. A second fetch of other blocks reuses the streams.
func TestBulkFromTwoProviders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, c := newNode(t, nodeConfig{}), newNode(t, nodeConfig{}), newNode(t, nodeConfig{})
	data := randBytes(400, 40*ChunkSize+321)
	cids := importData(t, a, data)
	importData(t, b, data)
	connect(t, ctx, c, a)
	connect(t, ctx, c, b)

	got := fetchAll(t, ctx, c, cids)
	if !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}
	for _, x := range cids {
		if ok, _ := c.store.Has(ctx, x); !ok {
			t.Fatalf("%s fetched but not stored", x)
		}
	}
	fromA, fromB := a.ex.server.blocksSent.Load(), b.ex.server.blocksSent.Load()
	t.Logf("A sent %d blocks, B %d", fromA, fromB)
	if fromA == 0 || fromB == 0 {
		t.Errorf("A sent %d blocks and B %d; want both to share the fetch", fromA, fromB)
	}
	if fromA+fromB != uint64(len(cids)) {
		t.Errorf("%d blocks sent for %d CIDs", fromA+fromB, len(cids))
	}
	if n := bitswapReceived(t, c); n != 0 {
		t.Errorf("%d blocks came over bitswap", n)
	}
	if st, _ := c.ex.Stats(); st.BlocksReceived != uint64(len(cids)) {
		t.Errorf("Stats: %d blocks received, want %d", st.BlocksReceived, len(cids))
	}

	// More blocks, with repeats and one already here: one result per CID
	// asked, over the same streams.
	more := importData(t, a, randBytes(401, 3*ChunkSize))
	importData(t, b, randBytes(401, 3*ChunkSize))
	ask := append(append([]cid.Cid{cids[0]}, more...), more[1])
	n := 0
	for r := range c.ex.Fetch(ctx, ask) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.CID, r.Err)
		}
		if err := r.Block.Verify(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(ask) {
		t.Fatalf("%d results for %d CIDs", n, len(ask))
	}
	for _, p := range []*node{a, b} {
		streams := 0
		for _, conn := range c.host.Libp2p().Network().ConnsToPeer(p.host.ID()) {
			for _, s := range conn.GetStreams() {
				if s.Protocol() == p2p.BlocksProtocol {
					streams++
				}
			}
		}
		if streams > 1 {
			t.Errorf("%d blocks streams open to one peer after two fetches, want 1", streams)
		}
	}
}

// TestBulkRejectsWrongBytes: a peer that serves wrong bytes over
// BlocksProtocol is dropped from the fetch; the blocks come from the
// honest peer and nothing wrong is stored.
func TestBulkRejectsWrongBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := randBytes(410, 12*ChunkSize)
	honest := newNode(t, nodeConfig{})
	cids := importData(t, honest, data)
	lies := map[cid.Cid][]byte{}
	for i, x := range cids {
		lies[x] = randBytes(uint64(420+i), ChunkSize)
	}
	fs := &fakeServer{blocks: lies}
	liar := fakeProvider(t, fs)
	c := newNode(t, nodeConfig{})
	connect(t, ctx, c, liar)
	connect(t, ctx, c, honest)

	got := fetchAll(t, ctx, c, cids)
	if !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}
	if fs.sent.Load() == 0 {
		t.Fatal("the liar sent nothing; nothing was tested")
	}
	t.Logf("the liar sent %d blocks before it was dropped", fs.sent.Load())
	keys, err := c.store.AllKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(cids) {
		t.Fatalf("C stored %d blocks for %d CIDs", len(keys), len(cids))
	}
	for _, x := range cids {
		b, err := c.store.Get(ctx, x)
		if err != nil || b.Verify() != nil {
			t.Fatalf("stored %s: %v %v", x, err, b.Verify())
		}
	}
}

// TestBulkLeavesLiarsOut: a peer that sent wrong bytes is not asked by
// the next fetches until its ban ends.
func TestBulkLeavesLiarsOut(t *testing.T) {
	defer func(d time.Duration) { bulkLiarBan = d }(bulkLiarBan)
	bulkLiarBan = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	honest := newNode(t, nodeConfig{})
	lies := map[cid.Cid][]byte{}
	var sets [3][]cid.Cid
	var want [3][]byte
	for k := range sets {
		want[k] = randBytes(uint64(430+k), 4*ChunkSize)
		sets[k] = importData(t, honest, want[k])
		for i, x := range sets[k] {
			lies[x] = randBytes(uint64(440+10*k+i), ChunkSize)
		}
	}
	fs := &fakeServer{blocks: lies}
	liar := fakeProvider(t, fs)
	c := newNode(t, nodeConfig{})
	connect(t, ctx, c, liar)
	connect(t, ctx, c, honest)

	fetch := func(k int) {
		t.Helper()
		if got := fetchAll(t, ctx, c, sets[k]); !bytes.Equal(assemble(t, got), want[k]) {
			t.Fatalf("fetch %d: content differs", k)
		}
	}
	fetch(0)
	if fs.sent.Load() == 0 {
		t.Fatal("the liar sent nothing; nothing was tested")
	}
	haves := fs.haves.Load()
	fetch(1)
	if n := fs.haves.Load(); n != haves {
		t.Errorf("the liar was asked HAVE %d more times during its ban", n-haves)
	}
	time.Sleep(bulkLiarBan)
	fetch(2)
	if fs.haves.Load() == haves {
		t.Error("the liar was never asked again after its ban ended")
	}
}

// TestBulkPeerCutsMidTransfer: a peer resets its stream in the middle of
// a block, another stalls after answering HAVE; the fetch completes from
// the honest peer, in about the stall timeout (2 s: long enough that a busy
// machine does not make the honest peer look stalled too).
func TestBulkPeerCutsMidTransfer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := randBytes(430, 16*ChunkSize)
	honest := newNode(t, nodeConfig{})
	cids := importData(t, honest, data)
	all := map[cid.Cid][]byte{}
	for i, x := range cids {
		all[x] = data[i*ChunkSize : (i+1)*ChunkSize]
	}
	cutter := &fakeServer{blocks: all, cutAfter: 2}
	staller := &fakeServer{blocks: all, stall: true}
	c := newNode(t, nodeConfig{stall: 2 * time.Second})
	for _, p := range []*node{fakeProvider(t, cutter), fakeProvider(t, staller), honest} {
		connect(t, ctx, c, p)
	}

	start := time.Now()
	got := fetchAll(t, ctx, c, cids)
	took := time.Since(start)
	if !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}
	t.Logf("fetched in %s; the cutter sent %d blocks", took.Round(time.Millisecond), cutter.sent.Load())
	if cutter.sent.Load() == 0 {
		t.Error("the cutter sent nothing; the cut was not tested")
	}
	if took > 8*time.Second {
		t.Errorf("the fetch took %s with a 2s stall timeout", took)
	}
	if n := bitswapReceived(t, c); n != 0 {
		t.Errorf("%d blocks came over bitswap; the honest peer should have sent all the rest", n)
	}
}

// TestBulkSlowPeer: a peer that sends a block too slowly (but never stops
// long enough to stall) loses it to another peer.
func TestBulkSlowPeer(t *testing.T) {
	defer func(r int) { bulkMinRate = r }(bulkMinRate)
	bulkMinRate = 4 << 20 // a 1 MiB block may take the stall timeout + 250 ms
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := randBytes(470, 6*ChunkSize)
	honest := newNode(t, nodeConfig{})
	cids := importData(t, honest, data)
	all := map[cid.Cid][]byte{}
	for i, x := range cids {
		all[x] = data[i*ChunkSize : (i+1)*ChunkSize]
	}
	slow := &fakeServer{blocks: all, trickle: true}
	c := newNode(t, nodeConfig{stall: 2 * time.Second})
	connect(t, ctx, c, fakeProvider(t, slow))
	connect(t, ctx, c, honest)
	start := time.Now()
	got := fetchAll(t, ctx, c, cids)
	took := time.Since(start)
	if !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}
	t.Logf("fetched in %s", took.Round(time.Millisecond))
	if took > 8*time.Second {
		t.Errorf("the fetch took %s; the slow peer held it", took)
	}
	if n := honest.ex.server.blocksSent.Load(); n != uint64(len(cids)) {
		t.Errorf("the honest peer sent %d blocks of %d", n, len(cids))
	}
}

// TestBulkServerAnswersMissing: asked for a CID it lacks, a server says so
// (HAVE and GET), and serves the ones it has on the same stream.
func TestBulkServerAnswersMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, c := newNode(t, nodeConfig{}), newNode(t, nodeConfig{})
	have := NewBlock(randBytes(440, 5000))
	if err := a.store.Put(ctx, have); err != nil {
		t.Fatal(err)
	}
	lacks := NewBlock([]byte("not on A")).CID
	connect(t, ctx, c, a)
	s, err := c.host.Libp2p().NewStream(ctx, a.host.ID(), p2p.BlocksProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	ask := []cid.Cid{lacks, have.CID, lacks}
	req := appendRequest(appendRequest(nil, opHave, ask), opGet, ask)
	if _, err := s.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(s)
	has := make([]bool, len(ask))
	if err := readHave(br, has); err != nil {
		t.Fatal(err)
	}
	if has[0] || !has[1] || has[2] {
		t.Fatalf("HAVE answered %v, want [false true false]", has)
	}
	if err := readStatus(br); err != nil {
		t.Fatal(err)
	}
	for i := range ask {
		present, size, err := readEntryHeader(br)
		if err != nil {
			t.Fatal(err)
		}
		if present != (i == 1) {
			t.Fatalf("entry %d: present %v", i, present)
		}
		if present {
			data := make([]byte, size)
			if _, err := io.ReadFull(br, data); err != nil || !bytes.Equal(data, have.Data) {
				t.Fatalf("block data: %v", err)
			}
		}
	}

	// A request that breaks the rules ends the stream.
	if _, err := s.Write([]byte{opGet, 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the server answered a request for zero CIDs")
	}
}

// TestBulkFallsBackToBitswap: CIDs that the bulk peers lack (here held by
// a bitswap-only peer) still arrive, and one nobody has fails with a
// NotFoundError after the stall timeout while the rest arrive.
func TestBulkFallsBackToBitswap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := newNode(t, nodeConfig{})
	old := newNode(t, nodeConfig{noBulk: true})
	c := newNode(t, nodeConfig{stall: 2 * time.Second})
	bulkCIDs := importData(t, a, randBytes(450, 3*ChunkSize))
	oldCIDs := importData(t, old, randBytes(451, 2*ChunkSize))
	connect(t, ctx, c, a)
	connect(t, ctx, c, old)
	nobody := NewBlock([]byte("nobody has this")).CID

	ask := append(append(append([]cid.Cid{}, bulkCIDs...), oldCIDs...), nobody)
	start := time.Now()
	ok, notFound := 0, 0
	for r := range c.ex.Fetch(ctx, ask) {
		var nf *NotFoundError
		switch {
		case r.Err == nil:
			if err := r.Block.Verify(); err != nil {
				t.Fatal(err)
			}
			ok++
		case errors.As(r.Err, &nf) && r.CID.Equals(nobody):
			notFound++
		default:
			t.Fatalf("%s: %v", r.CID, r.Err)
		}
	}
	if ok != len(ask)-1 || notFound != 1 {
		t.Fatalf("%d delivered, %d not found, of %d", ok, notFound, len(ask))
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("took %s with a 2s stall timeout", took)
	}
	if n := bitswapReceived(t, c); n != uint64(len(oldCIDs)) {
		t.Errorf("%d blocks over bitswap, want the %d only the old peer has", n, len(oldCIDs))
	}
}

// TestBulkCancelAndClose: cancelling a fetch in the middle of a stream
// ends it with the context's error, and the next fetch from the same peer
// works (the broken stream is not reused); Close ends a running fetch.
func TestBulkCancelAndClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := newNode(t, nodeConfig{})
	staller := &fakeServer{blocks: map[cid.Cid][]byte{}, stall: true}
	s := fakeProvider(t, staller)
	c := newNode(t, nodeConfig{stall: time.Hour})
	data := randBytes(460, 4*ChunkSize)
	cids := importData(t, a, data)
	for _, x := range cids {
		staller.blocks[x] = nil
	}
	connect(t, ctx, c, s)

	fctx, fcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer fcancel()
	_, err := c.ex.GetBlocks(fctx, cids)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch past its deadline: %v, want ErrNotFound and DeadlineExceeded", err)
	}

	connect(t, ctx, c, a)
	s.close(t)
	if got := fetchAll(t, ctx, c, cids); !bytes.Equal(assemble(t, got), data) {
		t.Fatal("fetched content differs")
	}

	c2 := newNode(t, nodeConfig{stall: time.Hour})
	s2 := fakeProvider(t, staller)
	connect(t, ctx, c2, s2)
	results := c2.ex.Fetch(ctx, cids)
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { c2.ex.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a running bulk fetch")
	}
	for r := range results {
		if !errors.Is(r.Err, ErrClosed) {
			t.Fatalf("fetch ended with %v, want ErrClosed", r.Err)
		}
	}
}

// TestBulkServerLimitsStreams: a peer gets at most bulkStreamsPerPeer
// streams at once; the next one is reset, and a slot freed is usable.
func TestBulkServerLimitsStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, c := newNode(t, nodeConfig{}), newNode(t, nodeConfig{})
	connect(t, ctx, c, a)
	ask := []cid.Cid{NewBlock([]byte("x")).CID}
	try := func() (network.Stream, error) {
		s, err := c.host.Libp2p().NewStream(ctx, a.host.ID(), p2p.BlocksProtocol)
		if err != nil {
			return nil, err
		}
		s.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.Write(appendRequest(nil, opHave, ask)); err != nil {
			s.Reset()
			return nil, err
		}
		if err := readHave(bufio.NewReader(s), make([]bool, 1)); err != nil {
			s.Reset()
			return nil, err
		}
		return s, nil
	}
	var open []network.Stream
	for i := range bulkStreamsPerPeer {
		s, err := try()
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		open = append(open, s)
	}
	if s, err := try(); err == nil {
		s.Reset()
		t.Fatalf("stream %d was served", bulkStreamsPerPeer+1)
	}
	open[0].Close()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var s network.Stream
		if s, err = try(); err == nil {
			s.Close()
			break
		}
	}
	if err != nil {
		t.Fatalf("no stream after one closed: %v", err)
	}
	for _, s := range open[1:] {
		s.Close()
	}
}

// TestBulkStaleStream: a stream the client kept for later but the server
// has since closed is replaced by a new one, and the fetch still goes over
// BlocksProtocol.
func TestBulkStaleStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, c := newNode(t, nodeConfig{}), newNode(t, nodeConfig{})
	first := importData(t, a, randBytes(480, 2*ChunkSize))
	second := importData(t, a, randBytes(481, 2*ChunkSize))
	connect(t, ctx, c, a)
	fetchAll(t, ctx, c, first)
	c.ex.bulk.mu.Lock()
	pooled := len(c.ex.bulk.idle[a.host.ID()])
	c.ex.bulk.mu.Unlock()
	if pooled != 1 {
		t.Fatalf("%d streams kept after a fetch, want 1", pooled)
	}
	// The server drops its end of every blocks stream.
	closed := 0
	for _, conn := range a.host.Libp2p().Network().ConnsToPeer(c.host.ID()) {
		for _, s := range conn.GetStreams() {
			if s.Protocol() == p2p.BlocksProtocol {
				s.Reset()
				closed++
			}
		}
	}
	if closed == 0 {
		t.Fatal("no blocks stream on the server's side")
	}
	got := fetchAll(t, ctx, c, second)
	if err := got[0].Verify(); err != nil {
		t.Fatal(err)
	}
	if n := bitswapReceived(t, c); n != 0 {
		t.Errorf("%d blocks came over bitswap after the stale stream", n)
	}
}

// TestBulkPrefersProviders: with more connected peers than a fetch asks,
// the peers a session prefers are asked first, and then the peers that
// sent blocks lately, so the blocks come over BlocksProtocol.
func TestBulkPrefersProviders(t *testing.T) {
	defer func(n int) { bulkMaxPeers = n }(bulkMaxPeers)
	bulkMaxPeers = 2
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newNode(t, nodeConfig{})
	for range 4 {
		connect(t, ctx, c, newNode(t, nodeConfig{}))
	}
	a := newNode(t, nodeConfig{})
	connect(t, ctx, c, a)
	first := importData(t, a, randBytes(490, 3*ChunkSize))
	second := importData(t, a, randBytes(491, 3*ChunkSize))

	sess := c.ex.NewSession(ctx)
	sess.Prefer(a.host.ID())
	if got, err := sess.GetBlocks(ctx, first); err != nil || assemble(t, got) == nil {
		t.Fatalf("session fetch: %v", err)
	}
	if n := bitswapReceived(t, c); n != 0 {
		t.Fatalf("%d blocks came over bitswap; the preferred provider was not asked", n)
	}
	// A fetch outside the session asks the peer that sent blocks lately.
	if _, err := c.ex.GetBlocks(ctx, second); err != nil {
		t.Fatal(err)
	}
	if n := bitswapReceived(t, c); n != 0 {
		t.Fatalf("%d blocks came over bitswap; the recent sender was not asked", n)
	}
	if sent := a.ex.server.blocksSent.Load(); sent != uint64(len(first)+len(second)) {
		t.Fatalf("the provider sent %d blocks of %d", sent, len(first)+len(second))
	}
}
