package shards_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
)

// seedBlocks imports the built-in model and returns its manifest block, its part
// blocks, and the manifest.
func seedBlocks(f *testing.F) ([]byte, [][]byte, *shards.Manifest) {
	f.Helper()
	src, err := checkpoints.Load(testmodels.Builtin(f))
	if err != nil {
		f.Fatal(err)
	}
	defer src.Close()
	st := newMem()
	im, err := shards.Import(context.Background(), src, st)
	if err != nil {
		f.Fatal(err)
	}
	var parts [][]byte
	for _, c := range im.Announce[1:] {
		parts = append(parts, st.m[c])
	}
	return st.m[im.Root], parts, im.Manifest
}

// FuzzManifest: DecodeManifest never panics, and what it accepts encodes
// and decodes back to the same value.
func FuzzManifest(f *testing.F) {
	root, _, _ := seedBlocks(f)
	f.Add(root)
	f.Add([]byte(`{"format":"mycel-model/1","config":{"arch":"llama","dim":64,"hidden":172,"layers":1,"heads":8,"kv_heads":4,"vocab":512,"context":512,"rope_theta":10000,"norm_eps":1e-5},"embedding":{"/":"bafkqaaa"},"layers":[{"/":"bafkqaaa"}],"head":{"/":"bafkqaaa"},"tokenizer":{"size":1,"chunks":[{"/":"bafkqaaa"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := shards.DecodeManifest(b)
		if err != nil {
			return
		}
		blk, err := m.Encode()
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		m2, err := shards.DecodeManifest(blk.Data)
		if err != nil {
			t.Fatalf("re-encoded manifest refused: %v\n%s", err, blk.Data)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
		}
		for _, r := range m.PartRefs(shards.Whole(m.Config.Layers)) {
			_ = r.String()
		}
	})
}

// FuzzPart: DecodePart and CheckPart never panic, and an accepted part
// round-trips.
func FuzzPart(f *testing.F) {
	_, parts, m := seedBlocks(f)
	for _, p := range parts {
		f.Add(p)
	}
	f.Add([]byte(`{"format":"mycel-part/1","tensors":[{"name":"x","dtype":"f32","shape":[4],"size":16,"chunks":[{"/":"bafkqaaa"}]}]}`))
	refs := m.PartRefs(shards.Whole(m.Config.Layers))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := shards.DecodePart(b)
		if err != nil {
			return
		}
		for _, r := range refs {
			m.CheckPart(r, p)
		}
		blk, err := p.Encode()
		if err != nil {
			t.Fatalf("accepted part does not encode: %v", err)
		}
		p2, err := shards.DecodePart(blk.Data)
		if err != nil {
			t.Fatalf("re-encoded part refused: %v", err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the part")
		}
	})
}
