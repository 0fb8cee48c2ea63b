package shards_test

import (
	"context"
	"reflect"
	"strings"
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
	// A layer part linking two experts.
	f.Add([]byte(`{"experts":[{"/":"bafkqaaa"},{"/":"bafkqaaa"}],"format":"mycel-part/1","tensors":[{"name":"blk.0.ffn_gate_inp.weight","dtype":"f32","shape":[2,4],"size":32,"chunks":[{"/":"bafkqaaa"}]}]}`))
	refs := m.PartRefs(shards.Whole(m.Config.Layers))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := shards.DecodePart(b)
		if err != nil {
			return
		}
		for _, r := range refs {
			m.CheckPart(r, p)
			for _, er := range p.ExpertRefs(r) {
				if er.Kind != shards.ExpertPart || er.Layer != r.Layer || er.String() == "" {
					t.Fatalf("expert ref %+v of %s", er, r)
				}
				m.CheckPart(er, p)
			}
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

// FuzzManifestV2: DecodeManifest never panics on mycel-model/2 manifests
// (layer tensors, rotary frequency factors, the config's switches, the
// expert layout), what
// it accepts round-trips, and checking the built-in model's parts against
// an accepted manifest never panics either.
func FuzzManifestV2(f *testing.F) {
	root, parts, _ := seedBlocks(f)
	v2 := strings.Replace(string(root), `"format":"mycel-model/1"`, `"format":"mycel-model/2"`, 1)
	for _, seed := range []string{
		v2,
		strings.Replace(v2, `"layers":[`, `"layer_tensors":["attn_q.bias","attn_k.bias","attn_v.bias"],"layers":[`, 1),
		strings.Replace(v2, `"layers":[`, `"layer_tensors":["attn_q_norm.weight","attn_k_norm.weight"],"layers":[`, 1),
		strings.Replace(v2, `"layers":[`, `"rope_freqs":{"name":"rope_freqs.weight","dtype":"f32","shape":[16],"size":64,"chunks":[{"/":"bafkqaaa"}]},"layers":[`, 1),
		strings.Replace(v2, `"config":{`, `"config":{"act":1,"embed_scale":8,"attn_softcap":50,"final_softcap":30,"sliding_window":4096,"sliding_every":2,`, 1),
		strings.Replace(v2, `"layers":[`, `"layer_tensors":["post_attention_norm.weight","post_ffw_norm.weight"],"layers":[`, 1),
		// A mixture of experts: every layer routed, then the first dense
		// with shared experts and a router bias.
		strings.Replace(strings.Replace(v2, `"config":{`, `"config":{"experts":4,"experts_used":2,"expert_hidden":96,"expert_norm":true,`, 1), `"layers":[`, `"experts":{},"layers":[`, 1),
		// Latent attention.
		strings.Replace(v2, `"config":{`, `"config":{"q_lora":32,"kv_lora":48,"head_size":24,"value_size":16,"rope_dim":8,`, 1),
		strings.Replace(strings.Replace(v2, `"config":{`, `"config":{"experts":8,"experts_used":3,"expert_hidden":64,"expert_gating":1,"expert_scale":2.5,`, 1), `"layers":[`, `"experts":{"dense_first":1,"shared":128,"bias":true},"layers":[`, 1),
	} {
		if _, err := shards.DecodeManifest([]byte(seed)); err != nil {
			f.Fatalf("seed refused: %v\n%s", err, seed)
		}
		f.Add([]byte(seed))
	}
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
		refs := m.PartRefs(shards.Whole(m.Config.Layers))
		for _, pb := range parts {
			p, err := shards.DecodePart(pb)
			if err != nil {
				t.Fatalf("seed part refused: %v", err)
			}
			for _, r := range refs[:min(len(refs), 4)] {
				m.CheckPart(r, p)
				if m.Config.Experts > 0 && r.Kind == shards.LayerPart {
					m.CheckPart(shards.PartRef{Kind: shards.ExpertPart, Layer: r.Layer, Expert: m.Config.Experts - 1, CID: r.CID}, p)
				}
			}
		}
	})
}
