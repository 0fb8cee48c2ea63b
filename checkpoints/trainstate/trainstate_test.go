package trainstate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/checkpoints/shards/block"
	"github.com/mycel-net/mycel/checkpoints/trainstate"
)

// memStore is a block store in memory that records the order of writes.
type memStore struct {
	mu    sync.Mutex
	m     map[cid.Cid][]byte
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

func manifest() trainstate.Manifest {
	base := shards.Link{CID: block.New([]byte("a base model")).CID}
	return trainstate.Manifest{Job: "model = \"tales\"\n", Method: "lora", Step: 20, Steps: 40, Base: &base}
}

// A state of a few chunks goes in and comes back byte for byte, the
// manifest last; the same state and job give the same CID, another step
// another.
func TestImportRead(t *testing.T) {
	ctx := context.Background()
	state := bytes.Repeat([]byte("MYCELCKP state "), 2*block.ChunkSize/15+7)
	st := newMem()
	im, err := trainstate.Import(ctx, st, manifest(), state)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3; len(im.Manifest.State.Chunks) != want || im.Blocks != want+1 || im.Bytes <= int64(len(state)) {
		t.Fatalf("%d chunks, %d blocks, %d bytes; want %d chunks and the manifest", len(im.Manifest.State.Chunks), im.Blocks, im.Bytes, want)
	}
	if st.order[len(st.order)-1] != im.Root {
		t.Error("the manifest was not stored last")
	}
	m, err := trainstate.GetManifest(ctx, st, im.Root)
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != trainstate.ManifestFormat || m.Step != 20 || m.Steps != 40 || m.Method != "lora" || m.Base == nil || m.Data != nil {
		t.Errorf("manifest %+v", m)
	}
	got, err := trainstate.ReadState(ctx, st, m)
	if err != nil || !bytes.Equal(got, state) {
		t.Fatalf("state read back: %d bytes, %v", len(got), err)
	}
	again, err := trainstate.Import(ctx, newMem(), manifest(), state)
	if err != nil || again.Root != im.Root {
		t.Errorf("the same state again: %v, %v; want %s", again.Root, err, im.Root)
	}
	later := manifest()
	later.Step = 21
	if other, err := trainstate.Import(ctx, newMem(), later, state); err != nil || other.Root == im.Root {
		t.Errorf("another step: %v, %v; want another CID", other.Root, err)
	}
}

// Manifests that break a bound are refused, naming what is wrong; a block
// that is not a checkpoint manifest is ErrNotCheckpoint.
func TestDecodeRefuses(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := trainstate.Import(ctx, st, manifest(), []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	good := *im.Manifest
	for _, tc := range []struct {
		name, want string
		edit       func(m *trainstate.Manifest)
	}{
		{"no job", "job file", func(m *trainstate.Manifest) { m.Job = "" }},
		{"huge job", "job file", func(m *trainstate.Manifest) { m.Job = strings.Repeat("x", trainstate.MaxJobBytes+1) }},
		{"no method", "method", func(m *trainstate.Manifest) { m.Method = "" }},
		{"step past steps", "step 41 of 40", func(m *trainstate.Manifest) { m.Step = 41 }},
		{"negative step", "step -1", func(m *trainstate.Manifest) { m.Step = -1 }},
		{"empty state", "state of 0 bytes", func(m *trainstate.Manifest) { m.State = shards.Blob{} }},
		{"chunks do not fit", "chunks", func(m *trainstate.Manifest) { m.State.Size = 2 * block.ChunkSize }},
		{"other format", "format", func(m *trainstate.Manifest) { m.Format = "mycel-data/1" }},
	} {
		m := good
		tc.edit(&m)
		b, err := shards.EncodeNode(&m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := trainstate.DecodeManifest(b.Data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if _, err := trainstate.DecodeManifest([]byte(`{"format":"mycel-data/1"}`)); !errors.Is(err, trainstate.ErrNotCheckpoint) {
		t.Errorf("a data set manifest: %v", err)
	}
	// The state's chunk is not a manifest.
	if _, err := trainstate.GetManifest(ctx, st, im.Manifest.State.Chunks[0].CID); !errors.Is(err, trainstate.ErrNotCheckpoint) {
		t.Errorf("a raw chunk as a manifest: %v", err)
	}
}

// DecodeManifest never panics, and whatever it accepts encodes again to a
// manifest it accepts.
func FuzzManifest(f *testing.F) {
	im, err := trainstate.Import(context.Background(), newMem(), manifest(), []byte("state"))
	if err != nil {
		f.Fatal(err)
	}
	root, _ := im.Manifest.Encode()
	f.Add(root.Data)
	f.Add([]byte(`{"format":"mycel-checkpoint/1","job":"x","method":"full","step":0,"steps":1,"state":{"size":1,"chunks":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := trainstate.DecodeManifest(b)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := trainstate.DecodeManifest(again.Data); err != nil {
			t.Fatalf("accepted %q, refused its encoding: %v", b, err)
		}
	})
}
