package blocks

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStoreReleasesReservedSpace: the space the active pack reserves ahead
// of its writes is given back when the store closes, and when a pack is
// retired for a new one.
func TestStoreReleasesReservedSpace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if err := s.Put(ctx, NewBlock(randBytes(400, 100_000))); err != nil {
		t.Fatal(err)
	}
	pack := onlyPack(t, dir)
	var st syscall.Stat_t
	// A new pack: the first one gives back its reservation.
	func() {
		defer func(n int64) { packLimit = n }(packLimit)
		packLimit = 10_000
		if err := s.Put(ctx, NewBlock(randBytes(401, 100_000))); err != nil {
			t.Fatal(err)
		}
	}()
	if err := syscall.Stat(pack, &st); err != nil {
		t.Fatal(err)
	}
	if alloc := st.Blocks * 512; alloc > st.Size+1<<20 {
		t.Fatalf("a retired pack has %d bytes allocated for %d bytes of records", alloc, st.Size)
	}
	pack = filepath.Join(dir, packsDir, packName(2))
	if err := syscall.Stat(pack, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("while open: %d bytes, %d bytes allocated", st.Size, st.Blocks*512)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(pack, &st); err != nil {
		t.Fatal(err)
	}
	if alloc := st.Blocks * 512; alloc > st.Size+1<<20 {
		t.Fatalf("after Close the pack has %d bytes allocated for %d bytes of records", alloc, st.Size)
	}
}
