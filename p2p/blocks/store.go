package blocks

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/ipfs/boxo/blockstore"
	blockfmt "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/mycel-net/mycel/checkpoints/shards/block"
)

// ErrStoreFull means a write would take the store past its byte cap. Nothing
// of that write was stored.
var ErrStoreFull = errors.New("blocks: store full")

// ErrNotFound means a block is not available: not in the local store, or no
// peer delivered it in time (block.ErrNotFound).
var ErrNotFound = block.ErrNotFound

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

// SyncWrites makes every write reach the disk (fsync) before it returns.
// Without it, writes are made durable by Sync and Close; a crash can lose
// the blocks written since, and the next OpenStore re-checks those and
// drops any that came out damaged.
func SyncWrites() StoreOption {
	return func(c *storeConfig) error {
		c.sync = true
		return nil
	}
}

// Store keeps blocks on disk in pack files: each block is a record
// appended to the current pack (see pack.go for the format), and an index
// in memory, built by reading the record headers at open, says where each
// block is. The store accounts for the bytes of its blocks.
//
// Blocks are keyed by multihash, so a block stored under one CID is found
// under any CID with the same hash, and AllKeys reports raw-codec CIDs.
// Every block is checked against its CID before it is written (PutMany
// hashes it; the exchange stores only blocks whose CID bitswap derived from
// the bytes), and every read checks what it read from disk against the
// checksum written with it: a block the disk damaged is deleted and
// reported as ErrCorrupt. Store is safe for concurrent use. Writes reserve their place and their bytes against the
// cap under a lock and then write in parallel, so the size accounting stays
// exact.
type Store struct {
	dir, packDir string
	cap          int64
	syncWrites   bool

	// files guards the pack files' lifetime: readers and syncs hold it
	// shared while they use a file; closing a file takes it exclusively.
	files sync.RWMutex

	mu       sync.RWMutex // guards the fields below and closing
	index    map[string]loc
	writing  map[string]struct{} // multihashes being written
	packs    map[uint64]*pack
	active   *pack // the pack new blocks go to; nil until the first write
	nextID   uint64
	newFiles bool // pack files were created or removed since the last directory sync

	syncMu      sync.Mutex     // one Sync at a time
	filesClosed bool           // guarded by syncMu
	writes      sync.WaitGroup // writes in progress, for Close
	used        atomic.Int64   // bytes held, including writes in progress
	closed      atomic.Bool
}

// loc is where a block's record is.
type loc struct {
	p    *pack
	off  int64 // of the record header
	data int64 // of the data
	size int
	sum  uint32 // CRC-32C of the data
}

// pack is one pack file.
type pack struct {
	id       uint64
	path     string
	f        *os.File
	end      int64              // where the next record goes (active pack) or the file size
	live     int                // indexed records
	inflight map[int64]struct{} // offsets of records being written
	synced   int64              // records that end before this are on disk (fsync)
	dirty    bool               // written since the last Sync
	holes    [][2]int64         // data of deleted records, to free at the next Sync
	reserved int64              // disk space is reserved up to here (active pack)
}

// syncedState is the content of syncedFile: for each pack, how many of
// its bytes are known to be on disk, and the next pack number. Pack numbers
// are not reused across a Sync, so an entry never describes a newer pack
// that took the number of a removed one.
type syncedState struct {
	Synced map[string]int64 `json:"synced"`
	Next   uint64           `json:"next"`
}

// OpenStore opens the block store in dir, creating it if needed. It reads
// the record headers of every pack once to build the index, and re-checks
// the blocks written since the last Sync (after a crash: those that may be
// incomplete). A store in the older one-file-per-block layout is moved into
// packs.
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
	s := &Store{
		dir: dir, packDir: filepath.Join(dir, packsDir),
		cap: cfg.cap, syncWrites: cfg.sync,
		index: map[string]loc{}, writing: map[string]struct{}{}, packs: map[uint64]*pack{},
		nextID: 1,
	}
	if err := os.MkdirAll(s.packDir, 0o755); err != nil {
		return nil, fmt.Errorf("blocks: open store %s: %w", dir, err)
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("blocks: open store %s: %w", dir, err)
	}
	if err := s.migrateFlatfs(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("blocks: open store %s: %w", dir, err)
	}
	return s, nil
}

// load opens the packs and builds the index.
func (s *Store) load() error {
	var st syncedState
	if b, err := os.ReadFile(filepath.Join(s.packDir, syncedFile)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			log.Warn("unreadable sync state; re-checking every block", "dir", s.dir, "err", err)
			st = syncedState{}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ents, err := os.ReadDir(s.packDir)
	if err != nil {
		return err
	}
	s.nextID = max(s.nextID, st.Next)
	var ids []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), packSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 64)
		if err != nil || packName(id) != e.Name() {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		path := filepath.Join(s.packDir, packName(id))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		p := &pack{id: id, path: path, f: f, inflight: map[int64]struct{}{}}
		s.packs[id] = p
		s.nextID = max(s.nextID, id+1)
		synced := st.Synced[packName(id)]
		if p.end, err = scanPack(f, func(r record) { s.loadRecord(p, r, synced) }); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		p.synced = min(synced, p.end)
		p.dirty = p.synced < p.end
		// Drop space reserved past the end by a run that crashed.
		p.reserved = 1
		s.release(p)
	}
	var gone []*pack
	for _, p := range s.packs {
		if p.live == 0 {
			delete(s.packs, p.id)
			gone = append(gone, p)
		}
	}
	s.removePacks(gone)
	return nil
}

// loadRecord indexes a record found at open. A record past the synced mark
// may be incomplete, so its data is checked first.
func (s *Store) loadRecord(p *pack, r record, synced int64) {
	if !r.live {
		return
	}
	l := loc{p: p, off: r.off, data: r.dataOff(), size: r.size, sum: r.sum}
	if r.end() > synced {
		if err := checkRecord(p.f, r); err != nil {
			log.Warn("dropping a damaged block found at open", "pack", p.path, "offset", r.off, "err", err)
			s.markDead(l)
			return
		}
	}
	if old, dup := s.index[r.key]; dup {
		s.used.Add(-int64(old.size))
		old.p.live--
		s.markDead(old)
	}
	s.index[r.key] = l
	p.live++
	s.used.Add(int64(r.size))
}

// checkRecord reads a record's data and checks it against its checksum.
func checkRecord(f *os.File, r record) error {
	data := make([]byte, r.size)
	if _, err := f.ReadAt(data, r.dataOff()); err != nil {
		return err
	}
	if dataSum(data) != r.sum {
		return ErrCorrupt
	}
	return nil
}

// markDead flags a record as deleted in its pack (best effort: if the flag
// is lost, the record is found again at the next open, and checked on
// read) and schedules its data to be freed. The caller holds mu or is
// opening the store.
func (s *Store) markDead(l loc) {
	if _, err := l.p.f.WriteAt([]byte{stateDead}, l.off+4); err != nil {
		log.Warn("mark a deleted block in its pack", "pack", l.p.path, "offset", l.off, "err", err)
	}
	l.p.dirty = true
	l.p.holes = append(l.p.holes, [2]int64{l.data, int64(l.size)})
}

// Dir is the directory the store lives in.
func (s *Store) Dir() string { return s.dir }

// Size is the number of bytes of block data held.
func (s *Store) Size() int64 { return s.used.Load() }

// Cap is the byte cap (0: none).
func (s *Store) Cap() int64 { return s.cap }

func (s *Store) lookup(c cid.Cid) (loc, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return loc{}, false, ErrClosed
	}
	l, ok := s.index[string(c.Hash())]
	return l, ok, nil
}

// Has reports whether the store holds a block for c. It does not verify it.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) {
	_, ok, err := s.lookup(c)
	return ok, err
}

// GetSize is the size of the stored block for c, without reading it.
func (s *Store) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	l, ok, err := s.lookup(c)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s not in store", ErrNotFound, c)
	}
	return l.size, nil
}

// Get reads the block for c and checks it against the checksum written
// with it (the block was checked against c before it was written). A
// missing block is ErrNotFound; a block whose bytes changed on disk is
// deleted and reported as ErrCorrupt.
func (s *Store) Get(ctx context.Context, c cid.Cid) (Block, error) {
	data, err := s.getInto(c, nil)
	if err != nil {
		return Block{}, err
	}
	return Block{CID: c, Data: data}, nil
}

// getInto is Get reading into buf, which it uses when it is large enough
// and grows otherwise; it returns the block's bytes. A server that sends
// one block after another reuses one buffer this way.
func (s *Store) getInto(c cid.Cid, buf []byte) ([]byte, error) {
	s.files.RLock()
	l, ok, err := s.lookup(c)
	if err != nil || !ok {
		s.files.RUnlock()
		if err == nil {
			err = fmt.Errorf("%w: %s not in store", ErrNotFound, c)
		}
		return nil, err
	}
	var data []byte
	if cap(buf) >= l.size {
		data = buf[:l.size]
	} else {
		data = make([]byte, l.size)
	}
	_, err = l.p.f.ReadAt(data, l.data)
	s.files.RUnlock()
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %s: the pack ends inside the block", ErrCorrupt, c)
	} else if err != nil {
		return nil, fmt.Errorf("blocks: read %s: %w", c, err)
	}
	if err == nil && dataSum(data) != l.sum {
		err = fmt.Errorf("%w: %s: its data changed on disk", ErrCorrupt, c)
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			log.Warn("deleting corrupt block", "cid", c, "dir", s.dir)
			if derr := s.deleteAt(string(c.Hash()), l); derr != nil {
				err = errors.Join(err, derr)
			}
		}
		return nil, err
	}
	return data, nil
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

// putJob is one block of a write: where its record goes.
type putJob struct {
	b   Block
	key string
	p   *pack
	off int64
}

// putVerified stores blocks already known to match their CIDs (bitswap
// derives a received block's CID from its bytes). It keeps no reference to
// their data once it returns.
//
// The records' places and bytes are reserved under the lock and written
// outside it, so that writes of different blocks run in parallel. A block
// another call is writing right now counts as present.
func (s *Store) putVerified(ctx context.Context, bs []Block) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	jobs := make([]putJob, 0, len(bs))
	var add int64
	undo := func(err error) error {
		for _, j := range jobs {
			delete(s.writing, j.key)
			if j.p != nil {
				delete(j.p.inflight, j.off)
			}
		}
		s.mu.Unlock()
		return err
	}
	for _, b := range bs {
		if len(b.Data) > MaxBlockSize {
			return undo(fmt.Errorf("blocks: put %s: %d bytes is over the %d byte block limit", b.CID, len(b.Data), MaxBlockSize))
		}
		key := string(b.CID.Hash())
		if len(key) == 0 || len(key) > maxKeyLen {
			return undo(fmt.Errorf("blocks: put %s: multihash of %d bytes", b.CID, len(key)))
		}
		if _, busy := s.writing[key]; busy {
			continue // being written, by this call (a repeat) or another
		}
		if _, has := s.index[key]; has {
			continue
		}
		s.writing[key] = struct{}{}
		jobs = append(jobs, putJob{b: b, key: key})
		add += int64(len(b.Data))
	}
	if len(jobs) == 0 {
		s.mu.Unlock()
		return nil
	}
	if used := s.used.Load(); s.cap > 0 && used+add > s.cap {
		return undo(fmt.Errorf("%w: %d bytes held + %d new > cap %d", ErrStoreFull, used, add, s.cap))
	}
	var gone []*pack
	for i := range jobs {
		n := int64(recHeader + len(jobs[i].key) + len(jobs[i].b.Data))
		if s.active == nil || (s.active.end > 0 && s.active.end+n > packLimit) {
			old, err := s.newPack()
			if err != nil {
				err = undo(fmt.Errorf("blocks: put: %w", err))
				s.removePacks(gone)
				return err
			}
			if old != nil {
				s.release(old)
				if s.removable(old) {
					gone = append(gone, old)
				}
			}
		}
		p := s.active
		jobs[i].p, jobs[i].off = p, p.end
		p.inflight[p.end] = struct{}{}
		p.end += n
	}
	if p := s.active; p.end > p.reserved {
		s.reserve(p)
	}
	s.used.Add(add)
	s.writes.Add(1)
	s.mu.Unlock()
	defer s.writes.Done()
	s.removePacks(gone)

	errs := make([]error, len(jobs))
	sums := make([]uint32, len(jobs))
	for i, j := range jobs {
		sums[i], errs[i] = writeRecord(j.p.f, j.off, j.key, j.b.Data)
	}
	if s.syncWrites {
		if err := s.syncFiles(jobs); err != nil {
			for i := range errs {
				errs[i] = err
			}
		}
	}

	s.mu.Lock()
	var failed []error
	for i, j := range jobs {
		delete(s.writing, j.key)
		delete(j.p.inflight, j.off)
		l := loc{p: j.p, off: j.off, data: j.off + recHeader + int64(len(j.key)), size: len(j.b.Data), sum: sums[i]}
		j.p.dirty = true
		if errs[i] != nil {
			s.used.Add(-int64(l.size))
			s.markDead(l)
			failed = append(failed, errs[i])
			continue
		}
		s.index[j.key] = l
		j.p.live++
	}
	gone = gone[:0]
	for _, j := range jobs {
		if j.p != s.active {
			s.release(j.p) // a retired pack whose last writes just ended
		}
		if s.removable(j.p) && !slices.Contains(gone, j.p) {
			delete(s.packs, j.p.id)
			gone = append(gone, j.p)
		}
	}
	s.mu.Unlock()
	s.removePacks(gone)
	if len(failed) > 0 {
		return fmt.Errorf("blocks: write %d of %d blocks: %w", len(failed), len(jobs), failed[0])
	}
	return nil
}

// writeRecord writes a record at off and returns its data checksum.
func writeRecord(f *os.File, off int64, key string, data []byte) (uint32, error) {
	h := encodeHeader(key, data)
	sum := binary.LittleEndian.Uint32(h[12:])
	if len(data) <= 64<<10 {
		_, err := f.WriteAt(append(h, data...), off)
		return sum, err
	}
	if _, err := f.WriteAt(data, off+int64(len(h))); err != nil {
		return sum, err
	}
	_, err := f.WriteAt(h, off)
	return sum, err
}

// syncFiles makes the packs of jobs durable, for SyncWrites.
func (s *Store) syncFiles(jobs []putJob) error {
	var done []*pack
	for _, j := range jobs {
		if slices.Contains(done, j.p) {
			continue
		}
		done = append(done, j.p)
		if err := j.p.f.Sync(); err != nil {
			return err
		}
	}
	return syncDir(s.packDir)
}

// reserveStep is how much disk space the active pack reserves ahead of
// its writes at a time.
const reserveStep = 64 << 20

// reserve reserves disk space ahead of the active pack's end. The caller
// holds mu.
func (s *Store) reserve(p *pack) {
	want := min((p.end+reserveStep-1)/reserveStep*reserveStep, max(packLimit, p.end)+maxRecordLen)
	if err := preallocate(p.f, p.reserved, want-p.reserved); err != nil {
		log.Debug("reserve space for a pack", "pack", p.path, "err", err)
	}
	p.reserved = want
}

// release frees the space a pack reserved past its last record once it is
// no longer the active pack and its writes are done (cutting the file at
// its own size drops the reservation; with a write in flight it could cut
// that write). The caller holds mu, or is closing.
func (s *Store) release(p *pack) {
	if p.reserved == 0 || len(p.inflight) > 0 {
		return
	}
	fi, err := p.f.Stat()
	if err == nil {
		err = p.f.Truncate(fi.Size())
	}
	if err != nil {
		log.Debug("release a pack's reserved space", "pack", p.path, "err", err)
	}
	p.reserved = 0
}

// newPack starts a new active pack and returns the one it replaces. The
// caller holds mu.
func (s *Store) newPack() (*pack, error) {
	id := s.nextID
	path := filepath.Join(s.packDir, packName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	s.nextID++
	p := &pack{id: id, path: path, f: f, inflight: map[int64]struct{}{}, dirty: true}
	s.packs[id] = p
	s.newFiles = true
	old := s.active
	s.active = p
	return old, nil
}

// removable reports whether p holds nothing and can go; if so it is taken
// out of the pack table. The caller holds mu and then passes p to
// removePacks once it has let go of mu.
func (s *Store) removable(p *pack) bool {
	if p == s.active || p.live > 0 || len(p.inflight) > 0 || s.packs[p.id] != p {
		return false
	}
	delete(s.packs, p.id)
	s.newFiles = true
	return true
}

// removePacks closes and deletes packs taken out of the table.
func (s *Store) removePacks(ps []*pack) {
	if len(ps) == 0 {
		return
	}
	s.files.Lock()
	for _, p := range ps {
		p.f.Close()
	}
	s.files.Unlock()
	for _, p := range ps {
		if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("remove an empty pack", "pack", p.path, "err", err)
		}
	}
}

// Delete removes the block for c. Deleting a missing block is not an error.
func (s *Store) Delete(ctx context.Context, c cid.Cid) error {
	return s.deleteAt(string(c.Hash()), loc{})
}

// deleteAt deletes the block with multihash key; if at is set, only while
// the block is still the record at that place (a reader that found it
// damaged must not delete a good copy written since).
func (s *Store) deleteAt(key string, at loc) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	l, ok := s.index[key]
	if !ok || (at.p != nil && (l.p != at.p || l.off != at.off)) {
		s.mu.Unlock()
		return nil
	}
	delete(s.index, key)
	s.used.Add(-int64(l.size))
	l.p.live--
	s.markDead(l)
	var gone []*pack
	if s.removable(l.p) {
		gone = append(gone, l.p)
	}
	s.mu.Unlock()
	s.removePacks(gone)
	return nil
}

// AllKeys lists the CIDs (raw codec) of every stored block, in no order.
func (s *Store) AllKeys(ctx context.Context) ([]cid.Cid, error) {
	s.mu.RLock()
	if s.closed.Load() {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	keys := make([]string, 0, len(s.index))
	for k := range s.index {
		keys = append(keys, k)
	}
	s.mu.RUnlock()
	out := make([]cid.Cid, 0, len(keys))
	for _, k := range keys {
		h, err := mh.Cast([]byte(k))
		if err != nil {
			continue
		}
		out = append(out, cid.NewCidV1(cid.Raw, h))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blocks: list store %s: %w", s.dir, err)
	}
	return out, nil
}

// Sync makes every block stored so far durable: it flushes the packs to
// disk and records how far they are safe, so that the next OpenStore need
// not re-check them. It also frees the disk space of deleted blocks.
func (s *Store) Sync() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.sync()
}

type syncJob struct {
	p     *pack
	mark  int64
	holes [][2]int64
}

func (s *Store) sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.filesClosed {
		return ErrClosed // a Sync that waited for Close's
	}

	s.mu.Lock()
	var jobs []syncJob
	for _, p := range s.packs {
		if !p.dirty {
			continue
		}
		// Records below the first one still being written are whole.
		mark := p.end
		for off := range p.inflight {
			mark = min(mark, off)
		}
		jobs = append(jobs, syncJob{p: p, mark: mark, holes: p.holes})
		p.holes, p.dirty = nil, len(p.inflight) > 0
	}
	newFiles := s.newFiles
	s.newFiles = false
	s.mu.Unlock()

	var errs []error
	synced := make([]bool, len(jobs))
	s.files.RLock()
	for i, j := range jobs {
		if s.isRemoved(j.p) {
			continue
		}
		if err := j.p.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("blocks: sync %s: %w", j.p.path, err))
			continue
		}
		synced[i] = true
		// The deletes are on disk now; their data can go.
		for _, h := range j.holes {
			if err := punchHole(j.p.f, h[0], h[1]); err != nil {
				log.Debug("free a deleted block's space", "pack", j.p.path, "err", err)
				break
			}
		}
	}
	s.files.RUnlock()
	if newFiles {
		if err := syncDir(s.packDir); err != nil {
			errs = append(errs, fmt.Errorf("blocks: sync %s: %w", s.packDir, err))
		}
	}

	s.mu.Lock()
	st := syncedState{Synced: map[string]int64{}, Next: s.nextID}
	for i, j := range jobs {
		if synced[i] {
			j.p.synced = max(j.p.synced, j.mark)
		} else {
			j.p.dirty = true
			j.p.holes = append(j.p.holes, j.holes...)
		}
	}
	for _, p := range s.packs {
		st.Synced[packName(p.id)] = p.synced
	}
	s.mu.Unlock()
	if err := writeState(s.packDir, st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Store) isRemoved(p *pack) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.packs[p.id] != p
}

// writeState replaces the sync state file atomically.
func writeState(dir string, st syncedState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, syncedFile)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("blocks: save sync state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blocks: save sync state: %w", err)
	}
	return nil
}

// syncDir makes the creations, renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || runtime.GOOS == "windows" {
		return nil // not supported for directories here
	}
	return err
}

// Close waits for writes in progress, makes the store durable (Sync) and
// closes it. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.writes.Wait()
	s.mu.Lock()
	if p := s.active; p != nil && s.packs[p.id] == p {
		s.release(p)
	}
	s.mu.Unlock()
	err := s.sync()
	s.syncMu.Lock()
	s.filesClosed = true
	if cerr := s.closeFiles(); err == nil {
		err = cerr
	}
	s.syncMu.Unlock()
	if err != nil {
		return fmt.Errorf("blocks: close store %s: %w", s.dir, err)
	}
	return nil
}

func (s *Store) closeFiles() error {
	s.files.Lock()
	defer s.files.Unlock()
	var errs []error
	for _, p := range s.packs {
		if err := p.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
	keys, err := b.s.AllKeys(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan cid.Cid, len(keys))
	for _, c := range keys {
		ch <- c
	}
	close(ch)
	return ch, nil
}
