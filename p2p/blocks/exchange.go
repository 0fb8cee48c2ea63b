package blocks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/exchange"
	blockfmt "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/mycel-net/mycel/p2p"
)

// Defaults for the exchange options.
const (
	DefaultStallTimeout   = 30 * time.Second
	DefaultProvideTimeout = 2 * time.Minute
	DefaultFindTimeout    = 30 * time.Second
	DefaultProviderDelay  = time.Second
)

// windowSize is how many CIDs a window of a fetch asks for, and
// parallelWindows how many windows run at once. Bitswap servers keep at
// most 1024 wants per peer; asking for more would drop wants. windowSize
// is a var for tests.
var windowSize = 256

const parallelWindows = 2

// rebroadcastDelay is how long a stuck session waits before it asks all
// connected peers and the DHT again.
const rebroadcastDelay = 5 * time.Second

// messageTarget is the size at which a serving bitswap stops adding blocks
// to a message (its default is 16 KiB: one 1 MiB block per message). Just
// over one chunk puts two chunks in a message, so half as many streams are
// opened, each carrying twice as much. Bitswap overshoots the target by at
// most one block, so a message stays under ChunkSize + MaxBlockSize plus
// framing, below libp2p's 4 MiB message limit.
const messageTarget = ChunkSize + 1

// smallBlock is the size up to which a serving bitswap answers "do you
// have it?" with the block itself (bitswap's default: 1 KiB). A fetch of a
// model's manifest or parts, a few KiB each, then takes one round trip
// instead of two; bitswap spaces its messages to a peer 20 ms apart, so
// each round trip saved is worth 20 ms.
const smallBlock = 32 << 10

// storeWriters is how many fetched blocks a fetch writes to disk at once.
const storeWriters = 3

// ErrNoProviders means the DHT knows no peer that provides a CID.
var ErrNoProviders = errors.New("blocks: no providers found")

// NotFoundError is the error for a CID that no peer delivered: no block came
// in for After while it was wanted. It matches ErrNotFound with errors.Is.
type NotFoundError struct {
	CID   cid.Cid
	After time.Duration
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("blocks: %s not found in %s", e.CID, e.After)
}

func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// Result is the outcome for one CID of a Fetch: the block, or Err (with
// Block.CID still set to the CID it is about).
type Result struct {
	Block
	// Size is the length of the block's data; a Download sets it and
	// leaves Data nil.
	Size int
	Err  error
}

// ExchangeOption configures NewExchange.
type ExchangeOption func(*exchangeConfig) error

type exchangeConfig struct {
	stall, provide, find, provDelay time.Duration
	maxOutstanding                  int // bytes we queue for one peer at a time
	noBulk                          bool
}

// NoBulk turns BlocksProtocol off: the exchange neither serves nor fetches
// blocks over it and speaks bitswap only.
func NoBulk() ExchangeOption {
	return func(c *exchangeConfig) error {
		c.noBulk = true
		return nil
	}
}

// StallTimeout is how long a fetch waits without receiving any block before
// it gives up on the CIDs still missing (NotFoundError). It is a stall
// timeout, not a total one, so that large fetches over slow links succeed;
// a context deadline bounds the total.
func StallTimeout(d time.Duration) ExchangeOption {
	return func(c *exchangeConfig) error {
		if d <= 0 {
			return fmt.Errorf("blocks: StallTimeout %s: must be positive", d)
		}
		c.stall = d
		return nil
	}
}

// ProvideTimeout bounds Provide when its context has no deadline.
func ProvideTimeout(d time.Duration) ExchangeOption {
	return func(c *exchangeConfig) error {
		if d <= 0 {
			return fmt.Errorf("blocks: ProvideTimeout %s: must be positive", d)
		}
		c.provide = d
		return nil
	}
}

// FindTimeout bounds FindProviders when its context has no deadline.
func FindTimeout(d time.Duration) ExchangeOption {
	return func(c *exchangeConfig) error {
		if d <= 0 {
			return fmt.Errorf("blocks: FindTimeout %s: must be positive", d)
		}
		c.find = d
		return nil
	}
}

// ProviderSearchDelay is how long a fetch asks only the connected peers
// before it also looks for providers in the DHT.
func ProviderSearchDelay(d time.Duration) ExchangeOption {
	return func(c *exchangeConfig) error {
		if d <= 0 {
			return fmt.Errorf("blocks: ProviderSearchDelay %s: must be positive", d)
		}
		c.provDelay = d
		return nil
	}
}

// Exchange fetches blocks from peers into a Store and serves the Store's
// blocks to peers, over BlocksProtocol (many blocks on one stream, from
// connected peers) and bitswap (BitswapProtocol). It finds providers
// through content routing (the DHT) and announces blocks there.
//
// The Exchange does not own the host, the routing or the store: close it
// before them.
type Exchange struct {
	h     host.Host
	r     routing.ContentRouting
	store *Store
	bs    *bitswap.Bitswap
	cfg   exchangeConfig

	bulk   *bulkClient // nil with NoBulk
	server *bulkServer // nil with NoBulk

	ctx    context.Context // cancelled by Close; ends every fetch
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add against Close
	closed bool
	wg     sync.WaitGroup // one per running Fetch

	closeOnce sync.Once
	closeErr  error
}

// NewExchange starts bitswap and BlocksProtocol on h, serving and filling
// store. r finds and announces providers; it may be nil, and then only
// connected peers are asked and Provide and FindProviders fail.
func NewExchange(h host.Host, r routing.ContentRouting, store *Store, opts ...ExchangeOption) (*Exchange, error) {
	if h == nil || store == nil {
		return nil, errors.New("blocks: NewExchange needs a host and a store")
	}
	cfg := exchangeConfig{}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.stall == 0 {
		cfg.stall = DefaultStallTimeout
	}
	if cfg.provide == 0 {
		cfg.provide = DefaultProvideTimeout
	}
	if cfg.find == 0 {
		cfg.find = DefaultFindTimeout
	}
	if cfg.provDelay == 0 {
		cfg.provDelay = DefaultProviderDelay
	}
	if cfg.maxOutstanding == 0 {
		// Serving: queue several 1 MiB blocks for a peer at once, not one
		// (bitswap's default), so that several messages are on their way
		// while the peer reads: bitswap sends each message on a new stream,
		// which starts with a small flow-control window.
		cfg.maxOutstanding = 16 * ChunkSize
	}

	e := &Exchange{h: h, r: r, store: store, cfg: cfg}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	net := bsnet.NewFromIpfsHost(h,
		bsnet.Prefix(p2p.ProtocolPrefix),
		bsnet.SupportedProtocols([]protocol.ID{p2p.BitswapProtocolSuffix}),
	)
	var finder routing.ContentDiscovery
	if r != nil {
		finder = r
	}
	e.bs = bitswap.New(e.ctx, net, finder, bstore{store},
		bitswap.ProviderSearchDelay(cfg.provDelay),
		// An idle session re-asks every connected peer and searches the DHT
		// again after this long (bitswap's default is a minute). It is what
		// gets a fetch going again when the only peers asked so far lied or
		// left and the peer that has the block came later.
		bitswap.RebroadcastDelay(rebroadcastDelay),
		bitswap.MaxOutstandingBytesPerPeer(cfg.maxOutstanding),
		bitswap.WithTargetMessageSize(messageTarget),
		bitswap.WithWantHaveReplaceSize(smallBlock),
	)
	if !cfg.noBulk {
		e.bulk = newBulkClient(h)
		e.server = newBulkServer(e.ctx, store)
		h.SetStreamHandler(p2p.BlocksProtocol, e.server.handle)
	}
	return e, nil
}

// track registers a running fetch, unless the exchange is closed.
func (e *Exchange) track() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// Fetch gets the blocks for cids: from the store when it has them (verified),
// else from peers: first from the connected peers that speak
// BlocksProtocol and have them, streamed, then whatever they did not
// deliver over one bitswap session, which also looks for providers on the
// DHT and asks all peers that have the blocks in parallel. Every fetched
// block is checked against its CID and stored before it is delivered.
//
// The channel gets exactly one Result per CID in cids, in the order the
// blocks arrive, and is then closed. It is buffered for all of them, so the
// fetch never waits for the reader. A CID no peer delivers fails with a
// NotFoundError after the stall timeout; when ctx ends or the exchange
// closes, the CIDs still missing fail with an error wrapping ErrNotFound and
// ctx.Err() (or ErrClosed).
func (e *Exchange) Fetch(ctx context.Context, cids []cid.Cid) <-chan Result {
	return e.fetchIn(ctx, nil, cids, true)
}

// Session is a series of fetches that share one bitswap session: the
// peers that had the blocks of one fetch are asked for the next ones
// straight away, where a new session would first ask every connected peer
// whether it has them, a round trip of at least 20 ms (bitswap spaces its
// messages to a peer that far apart). Use one for fetches that follow from
// each other, like a model's manifest, then its parts, then their chunks.
//
// A Session is safe for concurrent use and lasts as long as the context
// given to NewSession; its methods behave like the Exchange's.
type Session struct {
	e    *Exchange
	sess exchange.Fetcher

	mu     sync.Mutex
	prefer []peer.ID // asked first over BlocksProtocol, the latest first
}

// Prefer asks the session to turn to these peers first (when they are
// connected) in its next fetches: the providers of what it fetches, found
// on the DHT, say. The peers that sent blocks in the session's fetches are
// preferred the same way.
func (s *Session) Prefer(peers ...peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prefer = toFront(s.prefer, peers...)
}

// preferred lists the peers to ask first; s may be nil.
func (s *Session) preferred() []peer.ID {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.prefer)
}

// fetcher is the session's bitswap session; s may be nil.
func (s *Session) fetcher() exchange.Fetcher {
	if s == nil {
		return nil
	}
	return s.sess
}

// NewSession starts a Session that ends with ctx.
func (e *Exchange) NewSession(ctx context.Context) *Session {
	return &Session{e: e, sess: e.bs.NewSession(ctx)}
}

// Fetch is Exchange.Fetch within the session.
func (s *Session) Fetch(ctx context.Context, cids []cid.Cid) <-chan Result {
	return s.e.fetchIn(ctx, s, cids, true)
}

// Download is Fetch for blocks that the caller wants in the store rather
// than in hand: each Result has the CID and the Size of the block but no
// Data. The exchange then reuses its buffers from one block to the next
// instead of allocating one per block, and a block already in the store is
// checked (against the checksum written with it) but not kept.
func (s *Session) Download(ctx context.Context, cids []cid.Cid) <-chan Result {
	return s.e.fetchIn(ctx, s, cids, false)
}

// GetBlocks is Exchange.GetBlocks within the session.
func (s *Session) GetBlocks(ctx context.Context, cids []cid.Cid) ([]Block, error) {
	return collect(s.Fetch(ctx, cids), cids)
}

// Get is Exchange.Get within the session.
func (s *Session) Get(ctx context.Context, c cid.Cid) (Block, error) {
	r := <-s.Fetch(ctx, []cid.Cid{c})
	return r.Block, r.Err
}

// fetchIn runs a Fetch in sess, or in a session of its own if sess is nil.
// Without keep, it is a Download.
func (e *Exchange) fetchIn(ctx context.Context, sess *Session, cids []cid.Cid, keep bool) <-chan Result {
	out := make(chan Result, len(cids))
	if !e.track() {
		for _, c := range cids {
			out <- Result{Block: Block{CID: c}, Err: fmt.Errorf("blocks: fetch %s: %w", c, ErrClosed)}
		}
		close(out)
		return out
	}
	go func() {
		defer e.wg.Done()
		defer close(out)
		e.fetch(ctx, sess, cids, keep, out)
	}()
	return out
}

func (e *Exchange) fetch(ctx context.Context, s *Session, cids []cid.Cid, keep bool, out chan<- Result) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()

	// count[c] is how many results c is owed (cids may repeat).
	count := make(map[cid.Cid]int, len(cids))
	var missing []cid.Cid
	isMissing := make(map[cid.Cid]bool)
	emit := func(r Result) {
		for range count[r.CID] {
			out <- r
		}
		delete(count, r.CID)
	}
	for _, c := range cids {
		count[c]++
	}
	for _, c := range cids {
		if _, owed := count[c]; !owed {
			continue // a repeat already answered
		}
		var (
			b   Block
			err error
			buf []byte
		)
		if keep {
			b, err = e.store.Get(ctx, c)
		} else {
			buf = getBlockBuf(ChunkSize)
			b.CID = c
			b.Data, err = e.store.getInto(c, buf)
		}
		switch {
		case err == nil:
			emit(result(b, keep, nil))
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
			if !isMissing[c] {
				isMissing[c] = true
				missing = append(missing, c)
			}
		default:
			emit(Result{Block: Block{CID: c}, Err: err})
		}
		if buf != nil {
			putBlockBuf(buf)
		}
	}
	if len(missing) == 0 {
		return
	}
	var (
		mu      sync.Mutex // guards emit (and count) and failure
		failure func(cid.Cid) error
	)
	sharedEmit := func(r Result) {
		mu.Lock()
		emit(r)
		mu.Unlock()
	}
	if e.bulk != nil {
		var senders []peer.ID
		missing, senders = e.bulkFetch(ctx, missing, s.preferred(), keep, sharedEmit)
		if s != nil && len(senders) > 0 {
			s.Prefer(senders...)
		}
		if len(missing) == 0 {
			return
		}
		if ctx.Err() != nil {
			fail := e.stopReason(ctx)
			for _, c := range missing {
				emit(Result{Block: Block{CID: c}, Err: fail(c)})
			}
			return
		}
	}

	sess := s.fetcher()
	if sess == nil {
		sess = e.bs.NewSession(ctx)
	}
	// Windows run two at a time, so that while one drains its last blocks
	// the other keeps the peers busy. The first window to fail stops the
	// rest: every CID still owed then fails the way it did.
	wctx, stopWindows := context.WithCancel(ctx)
	defer stopWindows()
	var (
		running sync.WaitGroup
		slots   = make(chan struct{}, parallelWindows)
	)
	for len(missing) > 0 {
		n := min(windowSize, len(missing))
		window := missing[:n]
		missing = missing[n:]
		slots <- struct{}{}
		mu.Lock()
		failed := failure != nil
		mu.Unlock()
		if failed {
			break
		}
		running.Go(func() {
			defer func() { <-slots }()
			if err := e.fetchWindow(wctx, sess, window, keep, sharedEmit); err != nil {
				mu.Lock()
				if failure == nil {
					failure = err
					stopWindows()
				}
				mu.Unlock()
			}
		})
	}
	running.Wait()
	if failure == nil {
		return
	}
	for _, c := range cids {
		if _, owed := count[c]; owed {
			emit(Result{Block: Block{CID: c}, Err: failure(c)})
		}
	}
}

// fetchWindow asks the session for window and emits a Result for each block
// received. If it stops early it returns how to describe the failure of each
// CID still owed.
func (e *Exchange) fetchWindow(ctx context.Context, sess exchange.Fetcher, window []cid.Cid, keep bool, emit func(Result)) func(cid.Cid) error {
	wctx, cancel := context.WithCancel(ctx)
	defer func() { cancel() }()
	ch, err := sess.GetBlocks(wctx, window)
	if err != nil {
		return func(c cid.Cid) error { return fmt.Errorf("blocks: fetch %s: %w", c, err) }
	}

	// Writers store and deliver the blocks while this loop keeps taking them
	// from bitswap, so that the network does not wait on the disk, and
	// several files are written at once. They alone call emit until they
	// are done.
	received := make(chan Block, 16)
	var (
		writers sync.WaitGroup
		emitMu  sync.Mutex
	)
	for range storeWriters {
		writers.Go(func() {
			for b := range received {
				var perr error
				if err := e.store.putVerified(ctx, []Block{b}); err != nil {
					perr = fmt.Errorf("blocks: store fetched %s: %w", b.CID, err)
				} else if blk, err := blockfmt.NewBlockWithCid(b.Data, b.CID); err == nil {
					// Peers that want this block from us can have it now.
					// (Only the server needs telling: the client has it
					// from the network, and its sessions would count it
					// again as a duplicate.)
					if err := e.bs.Server.NotifyNewBlocks(ctx, blk); err != nil {
						log.Debug("announce fetched block", "cid", b.CID, "err", err)
					}
				}
				emitMu.Lock()
				emit(result(b, keep, perr))
				emitMu.Unlock()
			}
		})
	}
	defer writers.Wait()
	defer close(received)

	pending := make(map[cid.Cid]struct{}, len(window))
	for _, c := range window {
		pending[c] = struct{}{}
	}
	timer := time.NewTimer(e.cfg.stall)
	defer timer.Stop()
	// A session that received nothing for a quarter of the stall timeout
	// is replaced by a fresh one for the CIDs still pending: a session can
	// stay fixed on a peer that answered HAVE and then sent bytes that fail
	// verification (bitswap drops them and keeps waiting on that peer),
	// while a new session asks every connected peer again.
	retry := time.NewTicker(max(e.cfg.stall/4, 100*time.Millisecond))
	defer retry.Stop()
	progressed := false
	for len(pending) > 0 {
		select {
		case blk, ok := <-ch:
			if !ok {
				if ctx.Err() == nil && wctx.Err() != nil {
					continue // an abandoned session's channel; the new one is read below
				}
				return e.stopReason(ctx)
			}
			c := blk.Cid()
			if _, want := pending[c]; !want {
				continue
			}
			delete(pending, c)
			received <- Block{CID: c, Data: blk.RawData()}
			timer.Reset(e.cfg.stall)
			progressed = true
		case <-retry.C:
			if progressed {
				progressed = false
				continue
			}
			rest := make([]cid.Cid, 0, len(pending))
			for c := range pending {
				rest = append(rest, c)
			}
			cancel() // ends the old session and its channel
			wctx, cancel = sessionContext(ctx)
			if ch, err = e.bs.NewSession(wctx).GetBlocks(wctx, rest); err != nil {
				return func(c cid.Cid) error { return fmt.Errorf("blocks: fetch %s: %w", c, err) }
			}
		case <-timer.C:
			stall := e.cfg.stall
			return func(c cid.Cid) error { return &NotFoundError{CID: c, After: stall} }
		case <-ctx.Done():
			return e.stopReason(ctx)
		}
	}
	return nil
}

// result is the Result for a block a fetch got: without keep (a
// Download), its size but not its data.
func result(b Block, keep bool, err error) Result {
	r := Result{Block: b, Size: len(b.Data), Err: err}
	if !keep {
		r.Data = nil
	}
	return r
}

// blockBufs holds ChunkSize buffers for blocks that a Download reads,
// checks and stores, and then no longer needs.
var blockBufs = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// getBlockBuf gives a buffer of n bytes: from blockBufs when n fits in
// ChunkSize.
func getBlockBuf(n int) []byte {
	if n > ChunkSize {
		return make([]byte, n)
	}
	return (*blockBufs.Get().(*[]byte))[:n]
}

// putBlockBuf gives back a buffer from getBlockBuf that nobody uses any
// more.
func putBlockBuf(b []byte) {
	if cap(b) == ChunkSize {
		b = b[:ChunkSize]
		blockBufs.Put(&b)
	}
}

// stopReason describes why a fetch under ctx ended before its blocks came.
func (e *Exchange) stopReason(ctx context.Context) func(cid.Cid) error {
	cause := ctx.Err()
	if e.ctx.Err() != nil {
		cause = ErrClosed
	}
	if cause == nil {
		cause = errors.New("bitswap session ended")
	}
	return func(c cid.Cid) error { return fmt.Errorf("%w: %s: %w", ErrNotFound, c, cause) }
}

// GetBlocks fetches cids like Fetch and returns the blocks in the order of
// cids. If any CID fails it returns the first failure (in cids order) and
// how many failed.
func (e *Exchange) GetBlocks(ctx context.Context, cids []cid.Cid) ([]Block, error) {
	return collect(e.Fetch(ctx, cids), cids)
}

// collect gathers the results of a fetch of cids in their order.
func collect(results <-chan Result, cids []cid.Cid) ([]Block, error) {
	got := make(map[cid.Cid]Result, len(cids))
	for r := range results {
		got[r.CID] = r
	}
	out := make([]Block, len(cids))
	var (
		first  error
		failed int
	)
	for i, c := range cids {
		r := got[c]
		if r.Err != nil {
			failed++
			if first == nil {
				first = r.Err
			}
			continue
		}
		out[i] = r.Block
	}
	if first != nil {
		return nil, fmt.Errorf("blocks: %d of %d blocks failed: %w", failed, len(cids), first)
	}
	return out, nil
}

// Get fetches one block.
func (e *Exchange) Get(ctx context.Context, c cid.Cid) (Block, error) {
	r := <-e.Fetch(ctx, []cid.Cid{c})
	return r.Block, r.Err
}

// Provide announces on the DHT that this node has the blocks for cids. It
// retries while the routing table is still empty (a node that has just
// started) or the network fails, with backoff, until ctx ends; without a
// deadline on ctx it gives up after the provide timeout.
func (e *Exchange) Provide(ctx context.Context, cids ...cid.Cid) error {
	if e.r == nil {
		return errors.New("blocks: provide: no content routing")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.provide)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()

	for _, c := range cids {
		backoff := 50 * time.Millisecond
		for {
			err := e.r.Provide(ctx, c, true)
			if err == nil {
				break
			}
			log.Debug("provide failed, retrying", "cid", c, "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				cause := ctx.Err()
				if e.ctx.Err() != nil {
					cause = ErrClosed
				}
				return fmt.Errorf("blocks: provide %s: %w (last error: %w)", c, cause, err)
			case <-t.C:
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
	return nil
}

// FindProviders asks the DHT for up to max peers (max <= 0: as many as it
// finds) that provide c, other than this node. No provider at all is
// ErrNoProviders. Without a deadline on ctx the search stops after the find
// timeout.
func (e *Exchange) FindProviders(ctx context.Context, c cid.Cid, max int) ([]peer.AddrInfo, error) {
	if e.r == nil {
		return nil, errors.New("blocks: find providers: no content routing")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.find)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()

	var out []peer.AddrInfo
	for ai := range e.r.FindProvidersAsync(ctx, c, max) {
		if ai.ID == e.h.ID() {
			continue
		}
		out = append(out, ai)
	}
	if len(out) == 0 {
		switch err := ctx.Err(); {
		case e.ctx.Err() != nil:
			return nil, fmt.Errorf("blocks: find providers of %s: %w", c, ErrClosed)
		case errors.Is(err, context.Canceled):
			return nil, fmt.Errorf("blocks: find providers of %s: %w", c, err)
		}
		return nil, fmt.Errorf("%w: %s", ErrNoProviders, c)
	}
	return out, nil
}

// Stats are counters of the block exchange since it started, bitswap and
// BlocksProtocol together.
type Stats struct {
	BlocksReceived, BlocksSent uint64
	DataReceived, DataSent     uint64
	DupBlocksReceived          uint64
	Peers                      int
}

// Stats reports the exchange's counters.
func (e *Exchange) Stats() (Stats, error) {
	st, err := e.bs.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("blocks: bitswap stats: %w", err)
	}
	out := Stats{
		BlocksReceived:    st.BlocksReceived,
		BlocksSent:        st.BlocksSent,
		DataReceived:      st.DataReceived,
		DataSent:          st.DataSent,
		DupBlocksReceived: st.DupBlksReceived,
		Peers:             len(st.Peers),
	}
	if e.bulk != nil {
		out.BlocksReceived += e.bulk.blocksReceived.Load()
		out.DataReceived += e.bulk.dataReceived.Load()
		out.BlocksSent += e.server.blocksSent.Load()
		out.DataSent += e.server.dataSent.Load()
	}
	return out, nil
}

// Close ends every running fetch (their remaining CIDs fail with ErrClosed),
// waits for them and stops bitswap. It is safe to call more than once.
func (e *Exchange) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		// The host outlives the exchange: stop it handing streams to a
		// closed bitswap.
		e.h.RemoveStreamHandler(p2p.BitswapProtocol)
		if e.server != nil {
			e.h.RemoveStreamHandler(p2p.BlocksProtocol)
		}
		e.cancel()
		e.wg.Wait()
		if e.server != nil {
			e.server.close()
			e.bulk.close()
		}
		if err := e.bs.Close(); err != nil {
			e.closeErr = fmt.Errorf("blocks: close bitswap: %w", err)
		}
	})
	return e.closeErr
}

// sessionContext gives a replacement session its own context; the caller's
// deferred cancel of the current one covers it.
func sessionContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
