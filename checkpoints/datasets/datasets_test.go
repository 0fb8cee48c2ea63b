package datasets_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/datasets"
	"github.com/mycel-net/mycel/checkpoints/shards/block"
)

// memStore is a block store in memory.
type memStore struct {
	mu sync.Mutex
	m  map[cid.Cid][]byte
	// order records the CIDs in the order they were stored.
	order []cid.Cid
}

func newMem() *memStore { return &memStore{m: map[cid.Cid][]byte{}} }

func (s *memStore) PutMany(_ context.Context, bs []block.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bs {
		s.m[b.CID] = b.Data
		s.order = append(s.order, b.CID)
	}
	return nil
}

func (s *memStore) Get(_ context.Context, c cid.Cid) (block.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[c]
	if !ok {
		return block.Block{}, fmt.Errorf("%w: %s", block.ErrNotFound, c)
	}
	return block.Block{CID: c, Data: d}, nil
}

// A file of a few chunks goes in and comes back byte for byte; the
// manifest is stored last and says what the file holds; the same input
// gives the same CID, another name another.
func TestImportRead(t *testing.T) {
	ctx := context.Background()
	file := bytes.Repeat([]byte("Once upon a time there was a data set.\n"), 3*block.ChunkSize/39+1)
	st := newMem()
	im, err := datasets.Import(ctx, st, file, "tales", "text", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4; len(im.Manifest.File.Chunks) != want || im.Blocks != want+1 {
		t.Fatalf("%d chunks, %d blocks; want %d chunks and the manifest", len(im.Manifest.File.Chunks), im.Blocks, want)
	}
	if last := st.order[len(st.order)-1]; !last.Equals(im.Root) {
		t.Errorf("the manifest was not stored last")
	}
	m, err := datasets.GetManifest(ctx, st, im.Root)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, im.Manifest) || m.Name != "tales" || m.DataFormat != "text" || m.Examples != 1 || m.File.Size != int64(len(file)) {
		t.Errorf("manifest read back: %+v", m)
	}
	got, err := datasets.ReadFile(ctx, st, m)
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("file read back: %d bytes, %v; want %d", len(got), err, len(file))
	}
	again, _ := datasets.Import(ctx, newMem(), file, "tales", "text", 1)
	other, _ := datasets.Import(ctx, newMem(), file, "stories", "text", 1)
	if !again.Root.Equals(im.Root) || other.Root.Equals(im.Root) {
		t.Errorf("CIDs: %s, again %s, another name %s", im.Root, again.Root, other.Root)
	}

	// A damaged chunk is caught on read.
	st.m[m.File.Chunks[1].CID] = []byte("not the chunk")
	if _, err := datasets.ReadFile(ctx, st, m); err == nil || !strings.Contains(err.Error(), "chunk 1") {
		t.Errorf("read with a damaged chunk: %v", err)
	}
}

func TestDecodeManifestRefuses(t *testing.T) {
	chunk := block.New([]byte("hello")).CID.String()
	for _, tc := range []struct{ json, want string }{
		{`{"format":"mycel-model/1","data_format":"text","examples":1,"file":{"size":5,"chunks":[{"/":"` + chunk + `"}]}}`, "not a data set manifest"},
		{`{"format":"mycel-data/1","data_format":"text","examples":1,"file":{"size":5,"chunks":[]}}`, "chunks"},
		{`{"format":"mycel-data/1","data_format":"Text!","examples":1,"file":{"size":5,"chunks":[{"/":"` + chunk + `"}]}}`, "data format"},
		{`{"format":"mycel-data/1","data_format":"text","examples":6,"file":{"size":5,"chunks":[{"/":"` + chunk + `"}]}}`, "6 examples in 5 bytes"},
		{`{"format":"mycel-data/1","data_format":"text","examples":1,"file":{"size":0,"chunks":[]}}`, "file of 0 bytes"},
		{`{"format":"mycel-data/1","data_format":"text","examples":1,"file":{"size":5,"chunks":[{"/":"` + chunk + `"}]},"extra":1}`, "unknown field"},
	} {
		if _, err := datasets.DecodeManifest([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.json, err, tc.want)
		}
	}
}

// FuzzManifest: DecodeManifest never panics, and what it accepts encodes
// and decodes back to the same value.
func FuzzManifest(f *testing.F) {
	im, err := datasets.Import(context.Background(), newMem(), []byte(`{"prompt":"a","completion":"b"}`+"\n"), "pairs", "jsonl-pair", 1)
	if err != nil {
		f.Fatal(err)
	}
	root, _ := im.Manifest.Encode()
	f.Add(root.Data)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := datasets.DecodeManifest(b)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("an accepted manifest does not encode: %v", err)
		}
		m2, err := datasets.DecodeManifest(enc.Data)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v, %v; want %+v", m2, err, m)
		}
	})
}
