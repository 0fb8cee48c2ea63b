package blocks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ipfs/boxo/blockstore"
	blockfmt "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore/query"
	flatfs "github.com/ipfs/go-ds-flatfs"
	ipld "github.com/ipfs/go-ipld-format"
)

// ErrStoreFull means a write would take the store past its byte cap. Nothing
// of that write was stored.
var ErrStoreFull = errors.New("blocks: store full")

// ErrNotFound means a block is not available: not in the local store, or no
// peer delivered it in time.
var ErrNotFound = errors.New("blocks: block not found")

// ErrClosed means the store or exchange was used after Close.
var ErrClosed = errors.New("blocks: closed")

// StoreOption configures OpenStore.
type StoreOption func(*storeConfig) error

type storeConfig struct {
	cap    int64
	capSet bool
	sync   bool
}

// Cap limits the bytes of block data the store holds; 0 means no limit.
// Opening a store that already holds more than the cap works, but every new
// block is then refused with ErrStoreFull.
func Cap(bytes int64) StoreOption {
	return func(c *storeConfig) error {
		if bytes < 0 {
			return fmt.Errorf("blocks: negative cap %d", bytes)
		}
		if c.capSet {
			return errors.New("blocks: Cap given twice")
		}
		c.cap, c.capSet = bytes, true
		return nil
	}
}

// SyncWrites makes every write fsync its file and directory before it
// returns. Without it a crash can lose recent blocks or leave them truncated;
// reads verify every block, so a damaged one is found, dropped and fetched
// again rather than served.
func SyncWrites() StoreOption {
	return func(c *storeConfig) error {
		c.sync = true
		return nil
	}
}

// Store keeps blocks on disk, one file per block (flatfs, sharded by the
// next-to-last two characters of the key), and accounts for their size.
//
// Blocks are keyed by multihash, so a block stored under one CID is found
// under any CID with the same hash, and AllKeys reports raw-codec CIDs.
// Every read re-hashes the block: one that no longer matches its CID is
// deleted and reported as ErrCorrupt. Store is safe for concurrent use.
// Writes reserve their bytes against the cap under a lock and then write
// in parallel, so the size accounting stays exact.
type Store struct {
	dir string
	fs  *flatfs.Datastore
	bs  blockstore.Blockstore
	cap int64

	mu      sync.Mutex          // guards writing, the cap check, deletes and closing
	writing map[string]struct{} // multihashes being written
	writes  sync.WaitGroup      // writes in progress, for Close
	used    atomic.Int64        // bytes held, including writes in progress
	closed  atomic.Bool
}

// OpenStore opens the block store in dir, creating it if needed. It walks the
// store once to learn how many bytes it holds.
func OpenStore(dir string, opts ...StoreOption) (*Store, error) {
	var cfg storeConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	fs, err := flatfs.CreateOrOpen(dir, flatfs.NextToLast(2), cfg.sync)
	if err != nil {
		return nil, fmt.Errorf("blocks: open store %s: %w", dir, err)
	}
	s := &Store{dir: dir, fs: fs, bs: blockstore.NewBlockstore(fs, blockstore.NoPrefix()), cap: cfg.cap, writing: map[string]struct{}{}}
	used, err := s.scanSize()
	if err != nil {
		fs.Close()
		return nil, err
	}
	s.used.Store(used)
	return s, nil
}

func (s *Store) scanSize() (int64, error) {
	res, err := s.fs.Query(context.Background(), query.Query{KeysOnly: true, ReturnsSizes: true})
	if err != nil {
		return 0, fmt.Errorf("blocks: scan store %s: %w", s.dir, err)
	}
	defer res.Close()
	var used int64
	for r := range res.Next() {
		if r.Error != nil {
			return 0, fmt.Errorf("blocks: scan store %s: %w", s.dir, r.Error)
		}
		if r.Size < 0 {
			return 0, fmt.Errorf("blocks: scan store %s: no size for %s", s.dir, r.Key)
		}
		used += int64(r.Size)
	}
	return used, nil
}

// Dir is the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// Size is the number of bytes of block data held.
func (s *Store) Size() int64 { return s.used.Load() }

// Cap is the byte cap (0: none).
func (s *Store) Cap() int64 { return s.cap }

// Has reports whether the store holds a block for c. It does not verify it.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	ok, err := s.bs.Has(ctx, c)
	if err != nil {
		return false, fmt.Errorf("blocks: has %s: %w", c, err)
	}
	return ok, nil
}

// GetSize is the size of the stored block for c, without reading it.
func (s *Store) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	n, err := s.bs.GetSize(ctx, c)
	if err != nil {
		if ipld.IsNotFound(err) {
			return 0, fmt.Errorf("%w: %s not in store", ErrNotFound, c)
		}
		return 0, fmt.Errorf("blocks: size of %s: %w", c, err)
	}
	return n, nil
}

// Get reads and verifies the block for c. A missing block is ErrNotFound; a
// block whose bytes no longer match c is deleted and reported as ErrCorrupt.
func (s *Store) Get(ctx context.Context, c cid.Cid) (Block, error) {
	if s.closed.Load() {
		return Block{}, ErrClosed
	}
	raw, err := s.bs.Get(ctx, c)
	if err != nil {
		if ipld.IsNotFound(err) {
			return Block{}, fmt.Errorf("%w: %s not in store", ErrNotFound, c)
		}
		return Block{}, fmt.Errorf("blocks: read %s: %w", c, err)
	}
	b := Block{CID: c, Data: raw.RawData()}
	if err := b.Verify(); err != nil {
		if errors.Is(err, ErrCorrupt) {
			log.Warn("deleting corrupt block", "cid", c, "dir", s.dir)
			if derr := s.Delete(ctx, c); derr != nil {
				err = errors.Join(err, derr)
			}
		}
		return Block{}, err
	}
	return b, nil
}

// Put verifies b and stores it. A block already present is not written
// again. A block that would exceed the cap fails with ErrStoreFull.
func (s *Store) Put(ctx context.Context, b Block) error {
	return s.PutMany(ctx, []Block{b})
}

// PutMany verifies and stores blocks as one write: if they would take the
// store past its cap, none is written and the error is ErrStoreFull.
func (s *Store) PutMany(ctx context.Context, bs []Block) error {
	for _, b := range bs {
		if err := b.Verify(); err != nil {
			return fmt.Errorf("blocks: put: %w", err)
		}
	}
	return s.putVerified(ctx, bs)
}

// putVerified stores blocks already known to match their CIDs (bitswap
// derives a received block's CID from its bytes).
//
// The bytes are reserved against the cap under the lock and written outside
// it, so that writes of different blocks run in parallel. A block another
// call is writing right now counts as present.
func (s *Store) putVerified(ctx context.Context, bs []Block) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	fresh := make([]blockfmt.Block, 0, len(bs))
	keys := make([]string, 0, len(bs))
	var add int64
	fail := func(err error) error {
		for _, k := range keys {
			delete(s.writing, k)
		}
		s.mu.Unlock()
		return err
	}
	for _, b := range bs {
		if len(b.Data) > MaxBlockSize {
			return fail(fmt.Errorf("blocks: put %s: %d bytes is over the %d byte block limit", b.CID, len(b.Data), MaxBlockSize))
		}
		key := string(b.CID.Hash())
		if _, busy := s.writing[key]; busy {
			continue // being written, by this call (a repeat) or another
		}
		has, err := s.bs.Has(ctx, b.CID)
		if err != nil {
			return fail(fmt.Errorf("blocks: put %s: %w", b.CID, err))
		}
		if has {
			continue
		}
		blk, err := blockfmt.NewBlockWithCid(b.Data, b.CID)
		if err != nil {
			return fail(fmt.Errorf("blocks: put %s: %w", b.CID, err))
		}
		s.writing[key] = struct{}{}
		keys = append(keys, key)
		fresh = append(fresh, blk)
		add += int64(len(b.Data))
	}
	if len(fresh) == 0 {
		s.mu.Unlock()
		return nil
	}
	if used := s.used.Load(); s.cap > 0 && used+add > s.cap {
		return fail(fmt.Errorf("%w: %d bytes held + %d new > cap %d", ErrStoreFull, used, add, s.cap))
	}
	s.used.Add(add)
	s.writes.Add(1)
	s.mu.Unlock()
	defer s.writes.Done()

	err := s.bs.PutMany(ctx, fresh)

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.writing, k)
	}
	if err != nil {
		// Some files may have landed; count only what is really there.
		for _, b := range fresh {
			if _, serr := s.bs.GetSize(ctx, b.Cid()); serr != nil {
				s.used.Add(-int64(len(b.RawData())))
			}
		}
		return fmt.Errorf("blocks: write %d blocks: %w", len(fresh), err)
	}
	return nil
}

// Delete removes the block for c. Deleting a missing block is not an error.
func (s *Store) Delete(ctx context.Context, c cid.Cid) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	n, err := s.bs.GetSize(ctx, c)
	if ipld.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blocks: delete %s: %w", c, err)
	}
	// flatfs coalesces concurrent operations on one key: a delete that
	// meets a write of the same block still in flight waits for it and then
	// counts as done without removing anything. So delete until the block
	// is really gone (the second try meets no write: new writes of this
	// block wait for the lock held here).
	for try := 0; try < 3; try++ {
		if err := s.bs.DeleteBlock(ctx, c); err != nil && !ipld.IsNotFound(err) {
			return fmt.Errorf("blocks: delete %s: %w", c, err)
		}
		has, err := s.bs.Has(ctx, c)
		if err != nil {
			return fmt.Errorf("blocks: delete %s: %w", c, err)
		}
		if !has {
			s.used.Add(-int64(n))
			return nil
		}
	}
	return fmt.Errorf("blocks: delete %s: the block is still there after three tries", c)
}

// AllKeys lists the CIDs (raw codec) of every stored block, in no order.
func (s *Store) AllKeys(ctx context.Context) ([]cid.Cid, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var (
		ch   <-chan cid.Cid
		errf = func() error { return nil }
		err  error
	)
	if e, ok := s.bs.(blockstore.AllKeysChanWithErrer); ok {
		ch, errf, err = e.AllKeysChanWithErr(ctx)
	} else {
		ch, err = s.bs.AllKeysChan(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("blocks: list store %s: %w", s.dir, err)
	}
	var out []cid.Cid
	for c := range ch {
		out = append(out, c)
	}
	if err := errf(); err != nil {
		return nil, fmt.Errorf("blocks: list store %s: %w", s.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blocks: list store %s: %w", s.dir, err)
	}
	return out, nil
}

// Close waits for writes in progress and closes the store. It is safe to
// call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.writes.Wait()
	if err := s.fs.Close(); err != nil {
		return fmt.Errorf("blocks: close store %s: %w", s.dir, err)
	}
	return nil
}

// Import cuts r into ChunkSize blocks, stores them and returns their CIDs in
// stream order. Blocks stored before an error stay in the store.
func Import(ctx context.Context, s *Store, r io.Reader) ([]cid.Cid, error) {
	const batch = 16
	var (
		cids    []cid.Cid
		pending []Block
	)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := s.putVerified(ctx, pending); err != nil {
			return fmt.Errorf("blocks: import: %w", err)
		}
		pending = pending[:0]
		return ctx.Err()
	}
	err := Split(r, ChunkSize, func(b Block) error {
		cids = append(cids, b.CID)
		pending = append(pending, b)
		if len(pending) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return cids, nil
}

// bstore presents a Store as boxo's Blockstore, for bitswap. Reads go
// through Store.Get, so bitswap never serves a corrupt block.
type bstore struct{ s *Store }

var _ blockstore.Blockstore = bstore{}

func (b bstore) DeleteBlock(ctx context.Context, c cid.Cid) error { return b.s.Delete(ctx, c) }

func (b bstore) Has(ctx context.Context, c cid.Cid) (bool, error) { return b.s.Has(ctx, c) }

func (b bstore) Get(ctx context.Context, c cid.Cid) (blockfmt.Block, error) {
	blk, err := b.s.Get(ctx, c)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			return nil, ipld.ErrNotFound{Cid: c}
		}
		return nil, err
	}
	return blockfmt.NewBlockWithCid(blk.Data, blk.CID)
}

func (b bstore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	n, err := b.s.GetSize(ctx, c)
	if errors.Is(err, ErrNotFound) {
		return 0, ipld.ErrNotFound{Cid: c}
	}
	return n, err
}

func (b bstore) Put(ctx context.Context, blk blockfmt.Block) error {
	return b.s.Put(ctx, Block{CID: blk.Cid(), Data: blk.RawData()})
}

func (b bstore) PutMany(ctx context.Context, blks []blockfmt.Block) error {
	bs := make([]Block, len(blks))
	for i, blk := range blks {
		bs[i] = Block{CID: blk.Cid(), Data: blk.RawData()}
	}
	return b.s.PutMany(ctx, bs)
}

func (b bstore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	return b.s.bs.AllKeysChan(ctx)
}
