package shards_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// archCases are the F32 fixtures of models/arch that run, and the Q4_K_M
// ones of llama3 (Q4_K and Q6_K weights) and of mixtral (its experts' down
// projections Q5_0 in one layer, Q8_0 in the other), with what their
// manifests must say beyond Llama 2's block; gemma3, which has no
// fixture, is a random-weight model of synth's config.
var archCases = []struct {
	name         string
	arch         string
	layerTensors []string
	ropeFreqs    bool
	synth        *model.Config
}{
	{"llama3.F32", "llama", nil, true, nil},
	{"qwen2.F32", "qwen2", []string{"attn_q.bias", "attn_k.bias", "attn_v.bias"}, false, nil},
	{"qwen3.F32", "qwen3", []string{"attn_q_norm.weight", "attn_k_norm.weight"}, false, nil},
	{"gemma2.F32", "gemma2", []string{"post_attention_norm.weight", "post_ffw_norm.weight"}, false, nil},
	{"phi3.F32", "phi3", nil, false, nil},
	{"mixtral.F32", "llama", nil, false, nil},
	{"qwen3moe.F32", "qwen3moe", []string{"attn_q_norm.weight", "attn_k_norm.weight"}, false, nil},
	{"deepseek2.F32", "deepseek2", nil, true, nil},
	{"llama3.Q4_K_M", "llama", nil, true, nil},
	{"mixtral.Q4_K_M", "llama", nil, false, nil},
	{"gemma3.synthetic", "gemma3", []string{"attn_q_norm.weight", "attn_k_norm.weight", "post_attention_norm.weight", "post_ffw_norm.weight"}, false, &model.Config{
		Arch: "gemma3", Dim: 48, Hidden: 64, Layers: 7, Heads: 3, KVHeads: 1, HeadSize: 24,
		Vocab: 320, Context: 64, RopeTheta: 1e6, RopeStyle: kernels.RopeNeoX, NormEps: 1e-6,
		SharedClassifier: true, Act: model.ActGELU, EmbedScale: float32(math.Sqrt(48)),
		SlidingWindow: 5, SlidingEvery: 6, RopeLocalTheta: 10000, RopeScale: 8,
	}},
}

// archCase loads the model of the case named name and its prompt.
func archCase(t *testing.T, name string, synth *model.Config) (*checkpoints.Model, []int) {
	t.Helper()
	if synth == nil {
		return load(t, "arch/"+name+".gguf"), testmodels.Arch(t, name).InputIDs
	}
	var buf bytes.Buffer
	if err := checkpoints.SynthArch(&buf, *synth, name, 1); err != nil {
		t.Fatal(err)
	}
	m, err := checkpoints.LoadBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, []int{1, 300, 17, 42, 259, 7, 99, 120, 3, 250, 64, 18, 201, 33, 5, 300}
}

// prefillLogits runs ids through w as one prefill and returns the logits
// of every position.
func prefillLogits(t *testing.T, w *model.Weights, ids []int) []float32 {
	t.Helper()
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	e := model.NewEngine(w, be, model.KVType(kernels.F32))
	c := &w.Config
	cache, err := e.NewCache(0, c.Layers, c.Context)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ids)
	x := make([]float32, n*c.Dim)
	if err := e.Embed(x, ids); err != nil {
		t.Fatal(err)
	}
	if err := e.Forward(cache, x, n); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, n*c.Vocab)
	if err := e.LogitsRows(out, x, n); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameBits reports the first index where a and b differ in their bits.
func sameBits(a, b []float32) (int, bool) {
	if len(a) != len(b) {
		return 0, false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, true
}

// Every F32 fixture of an architecture that runs, and a Q4_K_M one,
// imports as a
// mycel-model/2 manifest naming its block's extras; loaded from its
// blocks, it gives the file's logits bit for bit; exported (but
// deepseek2's, which export refuses), it is a GGUF that gives them too
// and imports to the same CID.
func TestArchFixturesImportExport(t *testing.T) {
	ctx := context.Background()
	for _, tc := range archCases {
		t.Run(tc.name, func(t *testing.T) {
			src, ids := archCase(t, tc.name, tc.synth)
			want := prefillLogits(t, src.Weights, ids)

			st := newMem()
			im, err := shards.Import(ctx, src, st)
			if err != nil {
				t.Fatal(err)
			}
			m := im.Manifest
			if m.Format != shards.ManifestFormat2 || m.Config.Arch != tc.arch || !slices.Equal(m.LayerTensors, tc.layerTensors) || (m.RopeFreqs != nil) != tc.ropeFreqs {
				t.Fatalf("manifest %s, arch %s, layer tensors %v, rope freqs %v; want %s, %s, %v, %v",
					m.Format, m.Config.Arch, m.LayerTensors, m.RopeFreqs != nil, shards.ManifestFormat2, tc.arch, tc.layerTensors, tc.ropeFreqs)
			}
			if moe := src.Weights.Config.Experts > 0; (m.Experts != nil) != moe {
				t.Errorf("manifest expert layout %+v for a model with %d experts", m.Experts, src.Weights.Config.Experts)
			}
			if m.Config != src.Weights.Config {
				t.Errorf("manifest config %+v, the file's %+v", m.Config, src.Weights.Config)
			}
			again, err := shards.Import(ctx, src, newMem())
			if err != nil || again.Root != im.Root {
				t.Fatalf("a second import: %v, CID %s, first %s", err, again.Root, im.Root)
			}

			l, err := shards.Load(ctx, st, im.Root, shards.Whole(m.Config.Layers))
			if err != nil {
				t.Fatal(err)
			}
			if got := prefillLogits(t, l.Weights, ids); !bitsEqual(t, "loaded from blocks", got, want) {
				return
			}

			var buf bytes.Buffer
			err = shards.Export(ctx, st, im.Root, &buf)
			if m.Config.KVLoRA > 0 {
				// YaRN's keys are not kept, only its factors.
				if err == nil || !strings.Contains(err.Error(), "latent attention and YaRN have no GGUF form") {
					t.Errorf("export of latent attention: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			back, err := checkpoints.LoadBytes(buf.Bytes())
			if err != nil {
				t.Fatalf("exported GGUF: %v", err)
			}
			if back.Weights.Config != src.Weights.Config {
				t.Errorf("exported config %+v, the file's %+v", back.Weights.Config, src.Weights.Config)
			}
			if arch, _ := back.GGUF.String("general.architecture"); arch != tc.arch {
				t.Errorf("exported architecture %q, want %q", arch, tc.arch)
			}
			bitsEqual(t, "exported GGUF", prefillLogits(t, back.Weights, ids), want)
			re, err := shards.Import(ctx, back, newMem())
			if err != nil {
				t.Fatal(err)
			}
			if re.Root != im.Root {
				t.Errorf("the exported GGUF imports as %s, the file as %s", re.Root, im.Root)
			}
			t.Logf("%s: %s, %d bytes exported, %d blocks", tc.name, im.Root, buf.Len(), im.Blocks)
		})
	}
}

func bitsEqual(t *testing.T, what string, got, want []float32) bool {
	t.Helper()
	if i, ok := sameBits(got, want); !ok {
		if len(got) != len(want) {
			t.Errorf("%s: %d logits, want %d", what, len(got), len(want))
		} else {
			t.Errorf("%s: logit %d is %g, the file's %g", what, i, got[i], want[i])
		}
		return false
	}
	return true
}

// A server's span loads the layers' optional tensors and the rotary
// frequency factors, and fetches only its own parts; a client's span
// (embedding and head) needs no layer and no rotary factors.
func TestArchSpanBlocks(t *testing.T) {
	ctx := context.Background()
	src, st, im := imported(ctx, t, "arch/llama3.F32.gguf")
	m := im.Manifest
	rope := m.RopeFreqs.Chunks[0].CID
	server, _, err := shards.BlocksFor(ctx, st, im.Root, shards.Span{First: 1, Last: 2})
	if err != nil {
		t.Fatal(err)
	}
	client, _, err := shards.BlocksFor(ctx, st, im.Root, shards.Span{Embedding: true, Head: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(server, rope) || slices.Contains(client, rope) || slices.Contains(server, m.Layers[0].CID) {
		t.Errorf("blocks of layer 1 hold rope_freqs: %v, layer 0: %v; the client's hold rope_freqs: %v",
			slices.Contains(server, rope), slices.Contains(server, m.Layers[0].CID), slices.Contains(client, rope))
	}
	l, err := shards.Load(ctx, st, im.Root, shards.Span{First: 1, Last: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Weights.RopeFreqs, src.Weights.RopeFreqs) || l.Weights.Layers[0] != nil || l.Weights.Layers[1] == nil {
		t.Errorf("span 1:2 loaded rope freqs %v, layers %v", l.Weights.RopeFreqs != nil, l.Weights.Layers)
	}

	q := load(t, "arch/qwen2.F32.gguf")
	st = newMem()
	im, err = shards.Import(ctx, q, st)
	if err != nil {
		t.Fatal(err)
	}
	l, err = shards.Load(ctx, st, im.Root, shards.Span{First: 0, Last: 1})
	if err != nil {
		t.Fatal(err)
	}
	got, want := l.Weights.Layers[0], q.Weights.Layers[0]
	if !slices.Equal(got.BQ, want.BQ) || !slices.Equal(got.BK, want.BK) || !slices.Equal(got.BV, want.BV) || got.BQ == nil {
		t.Errorf("layer 0's biases did not come back")
	}
}

// A Llama 2 model keeps the first format, and so the CID every earlier
// version gave it; a manifest of another version is refused naming it,
// and a mycel-model/1 manifest cannot carry what only the second holds.
func TestManifestVersions(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := shards.Import(ctx, builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	if im.Manifest.Format != shards.ManifestFormat || im.Manifest.LayerTensors != nil || im.Manifest.RopeFreqs != nil {
		t.Fatalf("the built-in model imports as %s with layer tensors %v", im.Manifest.Format, im.Manifest.LayerTensors)
	}
	v1 := string(st.m[im.Root])
	for _, tc := range []struct{ edit, want string }{
		{strings.Replace(v1, `"mycel-model/1"`, `"mycel-model/3"`, 1), `"mycel-model/3"`},
		{strings.Replace(v1, `"layers":[`, `"layer_tensors":["attn_q.bias"],"layers":[`, 1), "layer_tensors"},
		{strings.Replace(v1, `"config":{`, `"config":{"act":1,`, 1), "gelu"},
		{strings.Replace(strings.Replace(v1, `"mycel-model/1"`, `"mycel-model/2"`, 1), `"layers":[`, `"layer_tensors":["attn_k.bias","attn_q.bias"],"layers":[`, 1), "out of order"},
		{strings.Replace(strings.Replace(v1, `"mycel-model/1"`, `"mycel-model/2"`, 1), `"layers":[`, `"layer_tensors":["ffn_gate_exps.weight"],"layers":[`, 1), "ffn_gate_exps.weight"},
		{strings.Replace(strings.Replace(v1, `"mycel-model/1"`, `"mycel-model/2"`, 1), `"layers":[`, `"layer_tensors":[],"layers":[`, 1), "empty"},
	} {
		if tc.edit == v1 {
			t.Fatalf("edit for %q changed nothing", tc.want)
		}
		_, err := shards.DecodeManifest([]byte(tc.edit))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("manifest %.80s…: error %v, want one naming %s", tc.edit, err, tc.want)
		}
	}
	v2 := strings.Replace(v1, `"mycel-model/1"`, `"mycel-model/2"`, 1)
	if m, err := shards.DecodeManifest([]byte(v2)); err != nil || m.Format != shards.ManifestFormat2 {
		t.Errorf("the same manifest as mycel-model/2: %v", err)
	}
}

// A mixture of experts' layout: each expert of a layer is a part of its
// own, linked from the layer's; a server's span fetches its layers'
// experts and no other layer's; a manifest or part whose expert layout
// disagrees with the config is refused, naming what is wrong.
func TestExpertLayout(t *testing.T) {
	ctx := context.Background()
	src, st, im := imported(ctx, t, "arch/mixtral.F32.gguf")
	m, c := im.Manifest, src.Weights.Config
	t.Logf("%d layers of %d experts (%d used), %d blocks", c.Layers, c.Experts, c.ExpertsUsed, im.Blocks)
	if m.Experts == nil || *m.Experts != (shards.ExpertLayout{}) {
		t.Fatalf("expert layout %+v, want every layer routed, no shared experts, no bias", m.Experts)
	}
	r := shards.PartRef{Kind: shards.LayerPart, Layer: 1, CID: m.Layers[1].CID}
	p, err := m.GetPart(ctx, st, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Experts) != c.Experts || p.Tensors[6].Name != "blk.1.ffn_gate_inp.weight" {
		t.Fatalf("layer 1 part: %d experts, tensor 6 %s", len(p.Experts), p.Tensors[6].Name)
	}
	er := p.ExpertRefs(r)[c.Experts-1]
	ep, err := m.GetPart(ctx, st, er)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("blk.1.ffn_gate.%d.weight", c.Experts-1)
	if len(ep.Tensors) != 3 || ep.Tensors[0].Name != want || ep.Tensors[0].Shape[0] != c.ExpertHidden {
		t.Fatalf("%s: tensors %+v, want %s first", er, ep.Tensors, want)
	}

	need, _, err := shards.BlocksFor(ctx, st, im.Root, shards.Span{First: 1, Last: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(need, er.CID) || slices.Contains(need, m.Layers[0].CID) {
		t.Errorf("layer 1's blocks: its expert %s listed %v, layer 0's part listed %v", er, slices.Contains(need, er.CID), slices.Contains(need, m.Layers[0].CID))
	}

	// A layer part that links one expert too few, or an expert part
	// checked as another expert's.
	short := *p
	short.Experts = short.Experts[1:]
	if err := m.CheckPart(r, &short); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("links %d experts, want %d", c.Experts-1, c.Experts)) {
		t.Errorf("a part short of an expert: %v", err)
	}
	other := er
	other.Expert = 0
	if err := m.CheckPart(other, ep); err == nil || !strings.Contains(err.Error(), "want \"blk.1.ffn_gate.0.weight\"") {
		t.Errorf("expert %d's part as expert 0's: %v", er.Expert, err)
	}

	// deepseek2: a dense first layer, shared experts 64 wide and a
	// router bias; its layer parts hold latent attention's projections.
	ds, err := shards.Import(ctx, load(t, "arch/deepseek2.F32.gguf"), st)
	if err != nil {
		t.Fatal(err)
	}
	if x := ds.Manifest.Experts; x == nil || *x != (shards.ExpertLayout{DenseFirst: 1, Shared: 64, Bias: true}) {
		t.Errorf("deepseek2's expert layout %+v, want dense_first 1, shared 64, bias", x)
	}
	for i, wantN := range []int{0, 4} {
		dp, err := ds.Manifest.GetPart(ctx, st, shards.PartRef{Kind: shards.LayerPart, Layer: i, CID: ds.Manifest.Layers[i].CID})
		if err != nil {
			t.Fatal(err)
		}
		if len(dp.Experts) != wantN || dp.Tensors[1].Name != fmt.Sprintf("blk.%d.attn_q_a.weight", i) {
			t.Errorf("deepseek2 layer %d: %d experts, tensor 1 %s", i, len(dp.Experts), dp.Tensors[1].Name)
		}
	}

	blk, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{`"experts":{}`, ``, "experts but no expert layout"},
		{`"experts":{}`, `"experts":{"dense_first":9}`, "experts from layer 9, outside the 2 layers"},
		{`"experts":{}`, `"experts":{"shared":-1}`, "shared experts -1 wide"},
		{`"format":"mycel-model/2"`, `"format":"mycel-model/1"`, "holds Llama 2's block only"},
	} {
		b := strings.Replace(string(blk.Data), tc.from, tc.to, 1)
		b = strings.Replace(b, ",,", ",", 1)
		if b == string(blk.Data) {
			t.Fatalf("%s not in the manifest", tc.from)
		}
		if _, err := shards.DecodeManifest([]byte(b)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("manifest with %s in place of %s: %v, want %q", tc.to, tc.from, err, tc.want)
		}
	}
}

// A span of some experts fetches its layers' parts and only those
// experts' parts, and loads the others as absent; a set naming an
// expert past the model's is refused.
func TestExpertSpanBlocks(t *testing.T) {
	ctx := context.Background()
	src, st, im := imported(ctx, t, "arch/mixtral.F32.gguf")
	m, c := im.Manifest, src.Weights.Config
	r := shards.PartRef{Kind: shards.LayerPart, Layer: 1, CID: m.Layers[1].CID}
	p, err := m.GetPart(ctx, st, r)
	if err != nil {
		t.Fatal(err)
	}
	refs := p.ExpertRefs(r)
	set := model.NewExpertSet(0, 2)
	need, _, err := shards.BlocksFor(ctx, st, im.Root, shards.Span{First: 1, Last: 2, Experts: set})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(need, m.Layers[1].CID) {
		t.Error("a span of experts 0 and 2 lacks its layer's part")
	}
	for e, er := range refs {
		if slices.Contains(need, er.CID) != set.Has(e) {
			t.Errorf("expert %d's part listed %v, in the set %v", e, slices.Contains(need, er.CID), set.Has(e))
		}
	}
	l, err := shards.Load(ctx, st, im.Root, shards.Span{First: 1, Last: 2, Experts: set})
	if err != nil {
		t.Fatal(err)
	}
	x := l.Weights.Layers[1].Experts
	for e := range c.Experts {
		if x.Holds(e) != set.Has(e) {
			t.Errorf("expert %d loaded %v, in the set %v", e, x.Holds(e), set.Has(e))
		}
	}
	if x.Router == nil {
		t.Error("the router of a span of some experts was not loaded")
	}
	if _, _, err := shards.BlocksFor(ctx, st, im.Root, shards.Span{First: 1, Last: 2, Experts: model.NewExpertSet(c.Experts)}); err == nil {
		t.Errorf("a span naming expert %d of %d passed", c.Experts, c.Experts)
	}
}

// imported loads the fixture name and imports it into a store in
// memory.
func imported(ctx context.Context, t *testing.T, name string) (*checkpoints.Model, *memStore, *shards.Imported) {
	t.Helper()
	src := load(t, name)
	st := newMem()
	im, err := shards.Import(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	return src, st, im
}
