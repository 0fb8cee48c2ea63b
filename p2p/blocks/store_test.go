package blocks

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// randBytes is n deterministic pseudo-random bytes for seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func openTestStore(t testing.TB, dir string, opts ...StoreOption) *Store {
	t.Helper()
	s, err := OpenStore(dir, opts...)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// flipBlockBit flips one bit in the middle of b's data where the store
// keeps it on disk, as bit rot would.
func flipBlockBit(t *testing.T, dir string, b Block) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(dir, packsDir, "*"+packSuffix))
	for _, path := range packs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, b.Data)
		if i < 0 {
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		at := int64(i + len(b.Data)/2)
		if _, err := f.WriteAt([]byte{data[at] ^ 0x01}, at); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no pack holds %s", b.CID)
}

func TestNewBlockAddressing(t *testing.T) {
	b := NewBlock([]byte("hello"))
	p := b.CID.Prefix()
	if p.Version != 1 || p.Codec != cid.Raw || p.MhType != mh.SHA2_256 {
		t.Fatalf("CID prefix %+v, want CIDv1 raw sha2-256", p)
	}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	bad := Block{CID: b.CID, Data: []byte("hellO")}
	if err := bad.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify of wrong bytes: %v, want ErrCorrupt", err)
	}
}

func TestStorePutGetDelete(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	a, b := NewBlock(randBytes(1, 1000)), NewBlock(randBytes(2, 3000))
	if err := s.PutMany(ctx, []Block{a, b, a}); err != nil {
		t.Fatal(err)
	}
	if got := s.Size(); got != 4000 {
		t.Fatalf("Size %d, want 4000", got)
	}
	if err := s.Put(ctx, a); err != nil { // already there: no double count
		t.Fatal(err)
	}
	if got := s.Size(); got != 4000 {
		t.Fatalf("Size after re-put %d, want 4000", got)
	}
	got, err := s.Get(ctx, b.CID)
	if err != nil || !bytes.Equal(got.Data, b.Data) {
		t.Fatalf("Get: %v", err)
	}
	if ok, _ := s.Has(ctx, a.CID); !ok {
		t.Fatal("Has(a) = false")
	}
	keys, err := s.AllKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !slices.ContainsFunc(keys, a.CID.Equals) || !slices.ContainsFunc(keys, b.CID.Equals) {
		t.Fatalf("AllKeys %v, want %s and %s", keys, a.CID, b.CID)
	}
	if err := s.Delete(ctx, a.CID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a.CID); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := s.Get(ctx, a.CID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if got := s.Size(); got != 3000 {
		t.Fatalf("Size after Delete %d, want 3000", got)
	}
	wrong := Block{CID: a.CID, Data: b.Data}
	if err := s.Put(ctx, wrong); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Put of mismatched block: %v, want ErrCorrupt", err)
	}
}

func TestStoreCapIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir, Cap(10_000))
	first := NewBlock(randBytes(1, 6000))
	if err := s.Put(ctx, first); err != nil {
		t.Fatal(err)
	}
	batch := []Block{NewBlock(randBytes(2, 2000)), NewBlock(randBytes(3, 2500))}
	err := s.PutMany(ctx, batch)
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("PutMany over the cap: %v, want ErrStoreFull", err)
	}
	for _, b := range batch {
		if ok, _ := s.Has(ctx, b.CID); ok {
			t.Errorf("block %s of a refused batch was written", b.CID)
		}
	}
	if got := s.Size(); got != 6000 {
		t.Errorf("Size %d after a refused write, want 6000", got)
	}
	keys, _ := s.AllKeys(ctx)
	if len(keys) != 1 {
		t.Errorf("%d blocks stored, want 1", len(keys))
	}
	// Exactly up to the cap is fine.
	if err := s.Put(ctx, NewBlock(randBytes(4, 4000))); err != nil {
		t.Fatalf("Put up to the cap: %v", err)
	}
	if err := s.Put(ctx, NewBlock(randBytes(5, 1))); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Put past a full store: %v, want ErrStoreFull", err)
	}
	// Freeing space makes room again.
	if err := s.Delete(ctx, first.CID); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMany(ctx, batch); err != nil {
		t.Fatalf("PutMany after Delete: %v", err)
	}
}

func TestStoreDetectsAndDeletesCorruptFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	good := NewBlock(randBytes(7, 5000))
	other := NewBlock(randBytes(8, 100))
	if err := s.PutMany(ctx, []Block{good, other}); err != nil {
		t.Fatal(err)
	}
	flipBlockBit(t, dir, good)
	_, err := s.Get(ctx, good.CID)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a corrupt block: %v, want ErrCorrupt", err)
	}
	if ok, _ := s.Has(ctx, good.CID); ok {
		t.Error("store still has the corrupt block")
	}
	if got := s.Size(); got != 100 {
		t.Errorf("Size %d after dropping the corrupt block, want 100", got)
	}
	// The block can be stored again.
	if err := s.Put(ctx, good); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, good.CID); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReopenKeepsBlocksAndSize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cids, err := Import(ctx, s, bytes.NewReader(randBytes(9, 2*ChunkSize+123)))
	if err != nil {
		t.Fatal(err)
	}
	size := s.Size()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(ctx, cids[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
	s2 := openTestStore(t, dir)
	if s2.Size() != size {
		t.Fatalf("Size after reopen %d, want %d", s2.Size(), size)
	}
	for _, c := range cids {
		if _, err := s2.Get(ctx, c); err != nil {
			t.Fatalf("Get %s after reopen: %v", c, err)
		}
	}
}

func TestImportSplitsInOrder(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, t.TempDir())
	data := randBytes(10, 2*ChunkSize+ChunkSize/2)
	cids, err := Import(ctx, s, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(cids) != 3 {
		t.Fatalf("%d blocks, want 3", len(cids))
	}
	var back []byte
	for i, c := range cids {
		b, err := s.Get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		want := min(ChunkSize, len(data)-i*ChunkSize)
		if len(b.Data) != want {
			t.Errorf("block %d has %d bytes, want %d", i, len(b.Data), want)
		}
		back = append(back, b.Data...)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("blocks do not reassemble the input")
	}
	if cids, err := Import(ctx, s, bytes.NewReader(nil)); err != nil || len(cids) != 0 {
		t.Fatalf("Import of nothing: %v, %v", cids, err)
	}
	if err := Split(bytes.NewReader(data), MaxBlockSize+1, func(Block) error { return nil }); err == nil {
		t.Fatal("Split accepted a chunk size over the block limit")
	}
}

// TestStoreConcurrentPutsKeepExactAccounting: parallel writers of
// overlapping blocks against a cap never pass it, and Size always equals
// the bytes really stored.
func TestStoreConcurrentPutsKeepExactAccounting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const capBytes = 40_000
	s := openTestStore(t, dir, Cap(capBytes))
	var all []Block
	for i := range 30 {
		all = append(all, NewBlock(randBytes(uint64(100+i), 1000+100*i)))
	}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range all {
				b := all[(i+w*5)%len(all)]
				err := s.Put(ctx, b)
				if err != nil && !errors.Is(err, ErrStoreFull) {
					t.Errorf("Put: %v", err)
				}
				if s.Size() > capBytes {
					t.Errorf("Size %d over the cap", s.Size())
				}
				if i%7 == w {
					if err := s.Delete(ctx, b.CID); err != nil {
						t.Errorf("Delete: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	var sum int64
	keys, err := s.AllKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range keys {
		n, err := s.GetSize(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		sum += int64(n)
	}
	if sum != s.Size() {
		t.Fatalf("Size %d, but the stored blocks add up to %d", s.Size(), sum)
	}
	s.Close()
	s2 := openTestStore(t, dir)
	if s2.Size() != sum {
		t.Fatalf("Size after reopen %d, want %d", s2.Size(), sum)
	}
}
