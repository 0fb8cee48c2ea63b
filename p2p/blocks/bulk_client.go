package blocks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	blockfmt "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p"
)

// Limits of the BlocksProtocol client.
const (
	// bulkBatch is how many CIDs one GET request asks for, and
	// bulkPipeline how many GET requests a fetch keeps outstanding with
	// one peer: while the peer sends the answer to one, the next is
	// already waiting at its end, so its sending never pauses.
	bulkBatch    = 16
	bulkPipeline = 2
	// bulkMaxStall bounds how long a fetch waits for the next bytes from
	// a peer before it gives the peer's blocks to others (the exchange's
	// stall timeout, if shorter, is used instead).
	bulkMaxStall = 10 * time.Second
	// bulkHaveTimeout bounds the wait for a HAVE answer (one round trip),
	// so that a peer that does not answer holds back the CIDs nobody else
	// has, on their way to bitswap, for no longer than this.
	bulkHaveTimeout = 5 * time.Second
	// bulkPoolIdle is how long an unused stream is kept for the next
	// fetch from the same peer (the server closes idle streams after
	// bulkServerIdle), and bulkPoolPerPeer how many are kept per peer.
	bulkPoolIdle    = time.Minute
	bulkPoolPerPeer = 4
	// bulkReadBuffer is the read buffer of a stream. Blocks larger than
	// it are read straight into their own buffer.
	bulkReadBuffer = 32 << 10
)

// bulkMaxPeers is how many connected peers one fetch asks which blocks
// they have: first those the caller prefers (Session.Prefer), then those
// that sent blocks lately, then the others. It is a var for tests.
var bulkMaxPeers = 16

// bulkLiarBan is how long a peer that sent a block whose bytes do not
// match its CID is left out of block streams: such a peer is broken or
// lying, and asking it again would only cost the next fetches a round
// trip and its wasted blocks. It is a var for tests.
var bulkLiarBan = 30 * time.Minute

// bulkMinRate is the slowest a peer may send a block, in bytes per
// second, on top of the stall timeout: a peer that trickles a byte now and
// then cannot hold a fetch for longer than that. It is a var for tests.
var bulkMinRate = 64 << 10

// bulkConn is a client's stream of BlocksProtocol with a peer.
type bulkConn struct {
	p      peer.ID
	s      network.Stream
	sr     stallReader
	br     *bufio.Reader
	req    []byte    // the encoding of the last requests sent
	idleAt time.Time // when it went back to the pool
	reused bool      // it came from the pool
}

// stallReader renews the stream's read deadline before every read, so
// that a peer fails when it sends nothing for stall, or when it has not
// finished by limit (if set).
type stallReader struct {
	s     network.Stream
	stall time.Duration
	limit time.Time
}

func (r *stallReader) Read(b []byte) (int, error) {
	d := time.Now().Add(r.stall)
	if !r.limit.IsZero() && r.limit.Before(d) {
		d = r.limit
	}
	r.s.SetReadDeadline(d)
	return r.s.Read(b)
}

// send writes requests for op over cids, maxRequestCIDs at a time, in one
// write.
func (c *bulkConn) send(op byte, cids []cid.Cid) error {
	c.req = c.req[:0]
	for len(cids) > 0 {
		n := min(len(cids), maxRequestCIDs)
		c.req = appendRequest(c.req, op, cids[:n])
		cids = cids[n:]
	}
	c.s.SetWriteDeadline(time.Now().Add(c.sr.stall))
	if _, err := c.s.Write(c.req); err != nil {
		return fmt.Errorf("blocks: send request to %s: %w", c.p, err)
	}
	return nil
}

// bulkClient opens, pools and closes the streams of BlocksProtocol that
// fetches use: one per peer and fetch at a time, kept for the next fetch.
type bulkClient struct {
	h host.Host

	mu     sync.Mutex
	idle   map[peer.ID][]*bulkConn
	closed bool
	recent []peer.ID             // peers that sent blocks lately, the latest first
	liars  map[peer.ID]time.Time // peers left out until the time given

	blocksReceived, dataReceived atomic.Uint64
}

func newBulkClient(h host.Host) *bulkClient {
	return &bulkClient{h: h, idle: map[peer.ID][]*bulkConn{}, liars: map[peer.ID]time.Time{}}
}

// candidates lists connected peers that speak BlocksProtocol, or whose
// protocols are not known yet (identify still running), at most
// bulkMaxPeers: those in prefer first, then those that sent blocks lately,
// then the others. Peers caught sending wrong bytes (banLiar) are left out.
func (bc *bulkClient) candidates(prefer []peer.ID) []peer.ID {
	now := time.Now()
	seen := map[peer.ID]bool{}
	bc.mu.Lock()
	recent := slices.Clone(bc.recent)
	for p, until := range bc.liars {
		if now.Before(until) {
			seen[p] = true // never a candidate
		} else {
			delete(bc.liars, p)
		}
	}
	bc.mu.Unlock()
	var out []peer.ID
	add := func(ps []peer.ID, connectedOnly bool) {
		for _, p := range ps {
			if len(out) == bulkMaxPeers || seen[p] {
				continue
			}
			seen[p] = true
			if connectedOnly && bc.h.Network().Connectedness(p) != network.Connected {
				continue
			}
			protos, err := bc.h.Peerstore().GetProtocols(p)
			if err == nil && len(protos) > 0 && !slices.Contains(protos, p2p.BlocksProtocol) {
				continue
			}
			out = append(out, p)
		}
	}
	add(prefer, true)
	add(recent, true)
	add(bc.h.Network().Peers(), false)
	return out
}

// banLiar leaves p out of block streams for bulkLiarBan.
func (bc *bulkClient) banLiar(p peer.ID) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.liars[p] = time.Now().Add(bulkLiarBan)
	if i := slices.Index(bc.recent, p); i >= 0 {
		bc.recent = slices.Delete(bc.recent, i, i+1)
	}
}

// delivered records that p sent blocks.
func (bc *bulkClient) delivered(p peer.ID) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.recent = toFront(bc.recent, p)
}

// toFront moves ps to the front of list (the last of ps first), adding
// those not in it, and keeps at most bulkMaxPeers.
func toFront(list []peer.ID, ps ...peer.ID) []peer.ID {
	for _, p := range ps {
		if i := slices.Index(list, p); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		list = slices.Insert(list, 0, p)
	}
	return list[:min(len(list), bulkMaxPeers)]
}

// open gives a stream to p: a pooled one if there is one still fresh,
// else a new one (never dialling: only connected peers are asked).
func (bc *bulkClient) open(ctx context.Context, p peer.ID, stall time.Duration) (*bulkConn, error) {
	var stale []*bulkConn
	defer func() {
		for _, c := range stale {
			c.s.Close()
		}
	}()
	bc.mu.Lock()
	if bc.closed {
		bc.mu.Unlock()
		return nil, ErrClosed
	}
	now := time.Now()
	for list := bc.idle[p]; len(list) > 0; {
		c := list[len(list)-1]
		list = list[:len(list)-1]
		if len(list) == 0 {
			delete(bc.idle, p)
		} else {
			bc.idle[p] = list
		}
		if now.Sub(c.idleAt) < bulkPoolIdle {
			bc.mu.Unlock()
			c.reused, c.sr.stall = true, stall
			return c, nil
		}
		stale = append(stale, c)
	}
	bc.mu.Unlock()

	s, err := bc.h.NewStream(network.WithNoDial(ctx, "blocks: ask connected peers only"), p, p2p.BlocksProtocol)
	if err != nil {
		return nil, fmt.Errorf("blocks: open a blocks stream to %s: %w", p, err)
	}
	c := &bulkConn{p: p, s: s, sr: stallReader{s: s, stall: stall}}
	c.br = bufio.NewReaderSize(&c.sr, bulkReadBuffer)
	return c, nil
}

// give puts c, whose answers have all been read, back in the pool, and
// closes pooled streams that have idled too long.
func (bc *bulkClient) give(c *bulkConn) {
	now := time.Now()
	var closing []*bulkConn
	bc.mu.Lock()
	if bc.closed || len(bc.idle[c.p]) >= bulkPoolPerPeer {
		closing = append(closing, c)
	} else {
		c.idleAt = now
		bc.idle[c.p] = append(bc.idle[c.p], c)
	}
	for p, list := range bc.idle {
		fresh := list[:0]
		for _, x := range list {
			if now.Sub(x.idleAt) < bulkPoolIdle {
				fresh = append(fresh, x)
			} else {
				closing = append(closing, x)
			}
		}
		if len(fresh) == 0 {
			delete(bc.idle, p)
		} else {
			bc.idle[p] = fresh
		}
	}
	bc.mu.Unlock()
	for _, x := range closing {
		x.s.Close()
	}
}

// discard resets c: it broke, or its state on the wire is unknown.
func (bc *bulkClient) discard(c *bulkConn) { c.s.Reset() }

// close closes the pooled streams and keeps the pool empty from then on.
func (bc *bulkClient) close() {
	bc.mu.Lock()
	bc.closed = true
	idle := bc.idle
	bc.idle = nil
	bc.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.s.Close()
		}
	}
}

// CID states within a bulk fetch.
const (
	stQueued uint8 = iota // wanted, asked of no peer
	stTaken               // asked of a peer, or received and being checked
	stDone                // delivered (stored, or failed for good)
)

// bulkFetch is one fetch's use of BlocksProtocol: the CIDs, who has which,
// and what has been asked of whom. Each peer's worker takes batches of
// the CIDs it has from the front of the queue, so faster peers take more;
// a CID a peer fails to deliver goes back to the queue for the others.
type bulkFetch struct {
	e     *Exchange
	cids  []cid.Cid
	emit  func(Result)
	keep  bool // deliver the data (Fetch), or only store it (Download)
	stall time.Duration
	batch int // CIDs per GET

	mu      sync.Mutex
	state   []uint8
	peers   []*bulkPeer   // the peers that answered HAVE
	changed chan struct{} // closed and replaced when a CID changes state
}

// bulkPeer is one peer's part in a bulk fetch.
type bulkPeer struct {
	id      peer.ID
	has     []bool // by index into cids
	cursor  int    // no CID before it is queued and had by this peer
	open    int    // CIDs it has that are not done
	dropped bool
	cancel  context.CancelFunc // ends its worker
	sent    atomic.Int64       // blocks from it that matched their CIDs
}

// arrival is a block read from a peer, not yet checked against its CID.
type arrival struct {
	b Block
	i int
	p *bulkPeer
}

// bulkFetch fetches cids (no repeats, none in the store) from connected
// peers over BlocksProtocol, asking those in prefer first, emitting a
// Result for each block it stores (or fails to store), and returns the
// CIDs no peer delivered and the peers that sent blocks. Without keep, the
// Results carry no data and the block buffers are reused.
func (e *Exchange) bulkFetch(ctx context.Context, cids []cid.Cid, prefer []peer.ID, keep bool, emit func(Result)) (rest []cid.Cid, senders []peer.ID) {
	peers := e.bulk.candidates(prefer)
	if len(peers) == 0 {
		return cids, nil
	}
	f := &bulkFetch{
		e: e, cids: cids, emit: emit, keep: keep,
		stall: min(e.cfg.stall, bulkMaxStall),
		// Small fetches are cut finer, so that every peer gets a share.
		batch:   max(1, min(bulkBatch, len(cids)/(bulkPipeline*len(peers)))),
		state:   make([]uint8, len(cids)),
		changed: make(chan struct{}),
	}
	// Blocks are checked, stored and delivered by writers beside the
	// readers, so that reading a peer's stream never waits on hashing or
	// on the disk.
	arrivals := make(chan arrival, 2*storeWriters)
	var writers sync.WaitGroup
	for range storeWriters {
		writers.Go(func() {
			for a := range arrivals {
				f.deliver(ctx, a)
			}
		})
	}
	var workers sync.WaitGroup
	for _, p := range peers {
		workers.Go(func() { f.runPeer(ctx, p, arrivals) })
	}
	workers.Wait()
	close(arrivals)
	writers.Wait()

	for i, st := range f.state {
		if st != stDone {
			rest = append(rest, cids[i])
		}
	}
	for _, p := range f.peers {
		if p.sent.Load() > 0 && !p.dropped {
			senders = append(senders, p.id)
			e.bulk.delivered(p.id)
		}
	}
	return rest, senders
}

// runPeer asks p which CIDs it has and then fetches from it until no CID
// it has is left, or it fails.
func (f *bulkFetch) runPeer(ctx context.Context, id peer.ID, arrivals chan<- arrival) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, has, err := f.have(ctx, id)
	if err != nil {
		log.Debug("blocks peer did not answer HAVE", "peer", id, "err", err)
		return
	}
	p := &bulkPeer{id: id, has: has, cancel: cancel}
	f.mu.Lock()
	for i, h := range has {
		if h && f.state[i] != stDone {
			p.open++
		}
	}
	f.peers = append(f.peers, p)
	f.mu.Unlock()
	f.work(ctx, p, conn, arrivals)
}

// have asks id which of the fetch's CIDs it has. A pooled stream
// that fails (the server closed it meanwhile) is replaced by another; a
// new one that fails ends the attempt.
func (f *bulkFetch) have(ctx context.Context, id peer.ID) (*bulkConn, []bool, error) {
	bc := f.e.bulk
	for {
		conn, err := bc.open(ctx, id, min(f.stall, bulkHaveTimeout))
		if err != nil {
			return nil, nil, err
		}
		has, err := f.askHave(ctx, conn)
		if err == nil {
			conn.sr.stall = f.stall
			return conn, has, nil
		}
		bc.discard(conn)
		if !conn.reused || ctx.Err() != nil {
			return nil, nil, err
		}
	}
}

func (f *bulkFetch) askHave(ctx context.Context, conn *bulkConn) ([]bool, error) {
	stop := context.AfterFunc(ctx, func() { conn.s.Reset() })
	defer stop()
	if err := conn.send(opHave, f.cids); err != nil {
		return nil, err
	}
	has := make([]bool, len(f.cids))
	for off := 0; off < len(has); off += maxRequestCIDs {
		if err := readHave(conn.br, has[off:min(off+maxRequestCIDs, len(has))]); err != nil {
			return nil, fmt.Errorf("blocks: HAVE from %s: %w", conn.p, err)
		}
	}
	return has, nil
}

// work streams GET requests to p for the CIDs it has until none is left
// for it. When the peer fails, what it still owed goes back to the queue.
func (f *bulkFetch) work(ctx context.Context, p *bulkPeer, conn *bulkConn, arrivals chan<- arrival) {
	bc := f.e.bulk
	stop := context.AfterFunc(ctx, func() { conn.s.Reset() })
	clean := false
	defer func() {
		if stop() && clean {
			bc.give(conn)
		} else {
			bc.discard(conn)
		}
	}()
	var outstanding [][]int
	for {
		for len(outstanding) < bulkPipeline {
			batch := f.next(ctx, p, len(outstanding) == 0)
			if len(batch) == 0 {
				break
			}
			outstanding = append(outstanding, batch)
			if err := conn.send(opGet, f.cidsOf(batch)); err != nil {
				f.fail(p, outstanding, err)
				return
			}
		}
		if len(outstanding) == 0 {
			clean = true
			return
		}
		n, err := f.readGet(ctx, p, conn, outstanding[0], arrivals)
		if err != nil {
			outstanding[0] = outstanding[0][n:]
			f.fail(p, outstanding, err)
			return
		}
		outstanding = outstanding[1:]
	}
}

func (f *bulkFetch) cidsOf(batch []int) []cid.Cid {
	out := make([]cid.Cid, len(batch))
	for k, i := range batch {
		out[k] = f.cids[i]
	}
	return out
}

// readGet reads the answer to a GET for batch and hands each block to the
// writers. It returns how many of batch it dealt with.
func (f *bulkFetch) readGet(ctx context.Context, p *bulkPeer, conn *bulkConn, batch []int, arrivals chan<- arrival) (int, error) {
	if err := readStatus(conn.br); err != nil {
		return 0, fmt.Errorf("blocks: GET from %s: %w", p.id, err)
	}
	bc := f.e.bulk
	for k, i := range batch {
		present, size, err := readEntryHeader(conn.br)
		if err != nil {
			return k, fmt.Errorf("blocks: GET from %s: %w", p.id, err)
		}
		if !present {
			f.mu.Lock()
			f.lacks(p, i)
			f.mu.Unlock()
			continue
		}
		// The block is read straight into the buffer it is delivered in
		// (or, for a Download, into one that is reused once it is stored).
		var data []byte
		if f.keep {
			data = make([]byte, size)
		} else {
			data = getBlockBuf(size)
		}
		conn.sr.limit = time.Now().Add(f.stall + time.Duration(size)*time.Second/time.Duration(bulkMinRate))
		_, err = io.ReadFull(conn.br, data)
		conn.sr.limit = time.Time{}
		if err != nil {
			if !f.keep {
				putBlockBuf(data)
			}
			return k, fmt.Errorf("blocks: GET %s from %s: %w", f.cids[i], p.id, noEOF(err))
		}
		bc.blocksReceived.Add(1)
		bc.dataReceived.Add(uint64(size))
		select {
		case arrivals <- arrival{b: Block{CID: f.cids[i], Data: data}, i: i, p: p}:
		case <-ctx.Done():
			if !f.keep {
				putBlockBuf(data)
			}
			return k, ctx.Err()
		}
	}
	return len(batch), nil
}

// deliver checks a block against its CID, stores it and emits it. A block
// that does not match drops its peer from the fetch.
func (f *bulkFetch) deliver(ctx context.Context, a arrival) {
	if !f.keep {
		// The store and bitswap's server keep no reference to the data
		// once their calls return.
		defer putBlockBuf(a.b.Data)
	}
	if err := a.b.Verify(); err != nil {
		log.Warn("peer sent a block that does not match its CID; asking others", "peer", a.p.id, "cid", a.b.CID, "err", err, "left out for", bulkLiarBan)
		f.e.bulk.banLiar(a.p.id)
		f.mu.Lock()
		f.lacks(a.p, a.i)
		f.drop(a.p)
		f.mu.Unlock()
		return
	}
	a.p.sent.Add(1)
	var perr error
	if err := f.e.store.putVerified(ctx, []Block{a.b}); err != nil {
		perr = fmt.Errorf("blocks: store fetched %s: %w", a.b.CID, err)
	} else if blk, err := blockfmt.NewBlockWithCid(a.b.Data, a.b.CID); err == nil {
		// Peers that want this block from us over bitswap can have it now.
		if err := f.e.bs.Server.NotifyNewBlocks(ctx, blk); err != nil {
			log.Debug("announce fetched block", "cid", a.b.CID, "err", err)
		}
	}
	f.emit(result(a.b, f.keep, perr))
	f.mu.Lock()
	f.done(a.i)
	f.mu.Unlock()
}

// next takes the next batch of queued CIDs that p has. With wait, when
// there is none but CIDs p has are still with other peers (which may
// fail and give them back), it waits for a change; it returns nil when
// nothing is left for p, p was dropped or ctx ended.
func (f *bulkFetch) next(ctx context.Context, p *bulkPeer, wait bool) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if p.dropped || ctx.Err() != nil {
			return nil
		}
		var batch []int
		i := p.cursor
		for ; i < len(f.cids) && len(batch) < f.batch; i++ {
			if p.has[i] && f.state[i] == stQueued {
				f.state[i] = stTaken
				batch = append(batch, i)
			}
		}
		p.cursor = i
		if len(batch) > 0 || !wait || p.open == 0 {
			return batch
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		f.mu.Lock()
	}
}

// The methods below run under f.mu.

func (f *bulkFetch) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// requeue makes CID i wanted again, for every peer that has it.
func (f *bulkFetch) requeue(i int) {
	f.state[i] = stQueued
	for _, q := range f.peers {
		if q.has[i] && q.cursor > i {
			q.cursor = i
		}
	}
	f.notify()
}

// lacks records that p does not have CID i (it said so, or sent wrong
// bytes) and gives i to the others.
func (f *bulkFetch) lacks(p *bulkPeer, i int) {
	if p.has[i] {
		p.has[i] = false
		p.open--
	}
	f.requeue(i)
}

// done records that CID i is delivered.
func (f *bulkFetch) done(i int) {
	f.state[i] = stDone
	for _, q := range f.peers {
		if q.has[i] {
			q.open--
		}
	}
	f.notify()
}

// drop ends p's part in the fetch.
func (f *bulkFetch) drop(p *bulkPeer) {
	if !p.dropped {
		p.dropped = true
		p.cancel()
		f.notify()
	}
}

// fail drops p after an error and gives back the CIDs of its batches.
func (f *bulkFetch) fail(p *bulkPeer, batches [][]int, err error) {
	log.Debug("blocks peer failed; asking others", "peer", p.id, "err", err)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range batches {
		for _, i := range b {
			f.requeue(i)
		}
	}
	f.drop(p)
}
