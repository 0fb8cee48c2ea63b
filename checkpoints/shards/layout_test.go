package shards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/codec/dagjson"
	"github.com/ipld/go-ipld-prime/node/basicnode"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/p2p/blocks"
)

func (s *memStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[c]
	return ok, nil
}

// TestCanonicalDAGJSON checks that manifests and parts are DAG-JSON in
// canonical form: an IPLD codec reads them and writes the same bytes, and
// their CIDs carry the dag-json codec.
func TestCanonicalDAGJSON(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := shards.Import(ctx, builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	nodes := append([]cid.Cid{}, im.Announce...)
	if len(nodes) != 1+1+im.Manifest.Config.Layers+1 {
		t.Fatalf("announce %d CIDs", len(nodes))
	}
	for _, c := range nodes {
		if p := c.Prefix(); p.Version != 1 || p.Codec != cid.DagJSON {
			t.Errorf("%s: prefix %+v, want CIDv1 dag-json", c, p)
		}
		b, err := st.Get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		nb := basicnode.Prototype.Any.NewBuilder()
		if err := dagjson.Decode(nb, bytes.NewReader(b.Data)); err != nil {
			t.Fatalf("%s is not DAG-JSON: %v", c, err)
		}
		var out bytes.Buffer
		if err := dagjson.Encode(nb.Build(), &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b.Data) {
			t.Errorf("%s is not canonical DAG-JSON:\n got %.300s\nwant %.300s", c, b.Data, out.Bytes())
		}
	}
	// Re-encoding a decoded manifest gives the same block.
	b, _ := st.Get(ctx, im.Root)
	m, err := shards.DecodeManifest(b.Data)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if again.CID != im.Root {
		t.Errorf("decode → encode gives %s, want %s", again.CID, im.Root)
	}
}

// TestNameFromGGUF: the manifest takes general.name from a GGUF source,
// the option overrides it, and export writes it back (or nothing).
func TestNameFromGGUF(t *testing.T) {
	ctx := context.Background()
	src := builtin(t)
	want, err := src.GGUF.String("general.name")
	if err != nil || want == "" {
		t.Fatalf("the built-in model has no general.name: %q, %v", want, err)
	}
	st := newMem()
	im, err := shards.Import(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	if im.Manifest.Name != want {
		t.Errorf("name %q, want %q", im.Manifest.Name, want)
	}
	named, err := shards.Import(ctx, src, st, shards.Name("tiny stories"))
	if err != nil {
		t.Fatal(err)
	}
	if named.Manifest.Name != "tiny stories" || named.Root == im.Root {
		t.Errorf("Name option: %q, root %s", named.Manifest.Name, named.Root)
	}
	g := exportGGUF(t, st, named.Root)
	if got, _ := g.String("general.name"); got != "tiny stories" {
		t.Errorf("exported general.name %q", got)
	}
}

func exportGGUF(t *testing.T, get shards.Getter, root cid.Cid) *checkpoints.GGUF {
	t.Helper()
	var buf bytes.Buffer
	if err := shards.Export(context.Background(), get, root, &buf); err != nil {
		t.Fatal(err)
	}
	g, err := checkpoints.ParseGGUF(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// reimport exports root as GGUF and imports that file again.
func reimport(t *testing.T, st *memStore, root cid.Cid, opts ...shards.ImportOption) *shards.Imported {
	t.Helper()
	var buf bytes.Buffer
	if err := shards.Export(context.Background(), st, root, &buf); err != nil {
		t.Fatal(err)
	}
	src, err := checkpoints.LoadBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	im, err := shards.Import(context.Background(), src, newMem(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestLlama2CExport: a llama2.c checkpoint, with or without its
// tokenizer, exports as a GGUF that imports to the same CID and runs.
func TestLlama2CExport(t *testing.T) {
	ctx := context.Background()
	src := load(t, "stories260K.bin")
	tok, err := tokenizer.LoadLlama2C(testmodels.Path(t, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []shards.ImportOption
	}{
		{"bare", nil},
		{"tokenizer", []shards.ImportOption{shards.WithTokenizer(tok)}},
		{"named q8_0", []shards.ImportOption{shards.WithTokenizer(tok), shards.Name("stories260K"), shards.Quantize(kernels.Q8_0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMem()
			im, err := shards.Import(ctx, src, st, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if again := reimport(t, st, im.Root); again.Root != im.Root {
				t.Errorf("llama2.c → blocks → GGUF → blocks: %s, first %s", again.Root, im.Root)
			}
			g := exportGGUF(t, st, im.Root)
			if arch, _ := g.String("general.architecture"); arch != "llama" {
				t.Errorf("architecture %q", arch)
			}
			if _, err := g.String("tokenizer.ggml.model"); (err == nil) != (im.Manifest.Tokenizer != nil) {
				t.Errorf("tokenizer metadata in the export: %v, in the manifest: %v", err == nil, im.Manifest.Tokenizer != nil)
			}
		})
	}
}

// TestQuantizedImports converts a GGUF model on import: matrices whose
// rows are a multiple of 32 wide change dtype, norms and the rest stay;
// the model loads and generates; export and import again keep the CID.
// The built-in model's matrices are all multiples of 32 wide, so its f16
// import is the file itself; in a stories260K-shaped f32 model (random
// weights) the FFN down projection, 172 wide, stays f32 under the block
// types.
func TestQuantizedImports(t *testing.T) {
	ctx := context.Background()
	t.Run("builtin", func(t *testing.T) { quantizedImports(t, ctx, builtin(t), true) })
	t.Run("synth stories260K", func(t *testing.T) {
		var buf bytes.Buffer
		if err := checkpoints.Synth(&buf, "stories260K", kernels.F32, 7); err != nil {
			t.Fatal(err)
		}
		src, err := checkpoints.LoadBytes(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		quantizedImports(t, ctx, src, false)
	})
}

// quantizedImports imports src converted to each type; a trained model
// keeps its greedy opening in f16 and q8_0.
func quantizedImports(t *testing.T, ctx context.Context, src *checkpoints.Model, trained bool) {
	c := src.Weights.Config
	want := greedy(t, src.Weights, 20)
	plain, err := shards.Import(ctx, src, newMem())
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []kernels.DType{kernels.F16, kernels.Q8_0, kernels.Q4_0} {
		t.Run(dt.String(), func(t *testing.T) {
			st := newMem()
			im, err := shards.Import(ctx, src, st, shards.Quantize(dt))
			if err != nil {
				t.Fatal(err)
			}
			again, err := shards.Import(ctx, src, newMem(), shards.Quantize(dt))
			if err != nil {
				t.Fatal(err)
			}
			if again.Root != im.Root {
				t.Errorf("two %s imports: %s and %s", dt, im.Root, again.Root)
			}
			// Only a source whose matrices already are all dt imports as
			// itself.
			same := src.Weights.Embedding.Type == dt && src.Weights.Layers[0].W2.Type == dt
			if (im.Root == plain.Root) != same {
				t.Errorf("%s import: root %s, without conversion %s", dt, im.Root, plain.Root)
			}
			l, err := shards.Load(ctx, st, im.Root, shards.Whole(c.Layers))
			if err != nil {
				t.Fatal(err)
			}
			l0 := l.Weights.Layers[0]
			w2 := dt // a block type leaves a row that is not a multiple of its block alone
			if dt.Quantized() && c.Hidden%32 != 0 {
				w2 = src.Weights.Layers[0].W2.Type
			}
			if l0.Wq.Type != dt || l0.W1.Type != dt || l0.W2.Type != w2 || l.Weights.Embedding.Type != dt {
				t.Errorf("wq %s, w1 %s, w2 %s (want %s), embedding %s", l0.Wq.Type, l0.W1.Type, l0.W2.Type, w2, l.Weights.Embedding.Type)
			}
			if len(l0.AttnNorm) != c.Dim || l0.AttnNorm[0] != src.Weights.Layers[0].AttnNorm[0] {
				t.Error("the norms changed")
			}
			ids := greedy(t, l.Weights, 20)
			for _, id := range ids {
				if id < 0 || id >= c.Vocab {
					t.Fatalf("%s model generated %v", dt, ids)
				}
			}
			// f16 and q8_0 keep the source's opening; q4_0 need not.
			if trained && dt != kernels.Q4_0 && fmt.Sprint(ids[:8]) != fmt.Sprint(want[:8]) {
				t.Errorf("%s greedy %v, from the source %v", dt, ids, want)
			}
			if re := reimport(t, st, im.Root); re.Root != im.Root {
				t.Errorf("export and import of the %s model: %s, first %s", dt, re.Root, im.Root)
			}
			// Quantizing again to the same type changes nothing.
			if re := reimport(t, st, im.Root, shards.Quantize(dt)); re.Root != im.Root {
				t.Errorf("re-quantizing to %s changed the CID", dt)
			}
		})
	}
}

// rewrite edits one part of an imported model, stores the new part and
// manifest, and returns the new root.
func rewrite(t *testing.T, st *memStore, im *shards.Imported, layer int, edit func(*shards.Part)) cid.Cid {
	t.Helper()
	ctx := context.Background()
	b, err := st.Get(ctx, im.Manifest.Layers[layer].CID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := shards.DecodePart(b.Data)
	if err != nil {
		t.Fatal(err)
	}
	edit(p)
	pb, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := *im.Manifest
	m.Layers = append([]shards.Link(nil), m.Layers...)
	m.Layers[layer] = shards.Link{CID: pb.CID}
	mb, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	st.PutMany(ctx, []blocks.Block{pb, mb})
	return mb.CID
}

// TestPartsCheckedAgainstConfig: parts that decode on their own but do not
// fit the model's config are refused by BlocksFor, Load and Export before
// any chunk is fetched.
func TestPartsCheckedAgainstConfig(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := shards.Import(ctx, builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	c := im.Manifest.Config
	huge := blocks.NewBlock([]byte("x"))
	for _, tc := range []struct {
		name string
		edit func(*shards.Part)
		want string
	}{
		{"a huge tensor", func(p *shards.Part) {
			q := &p.Tensors[1]
			elem := q.Size / int64(q.Shape[0]*q.Shape[1]) // bytes a value
			q.Shape = []int{32 << 10, 16 << 10}
			q.Size = elem << 29
			q.Chunks = make([]shards.Link, q.Size>>20)
			for i := range q.Chunks {
				q.Chunks[i] = shards.Link{CID: huge.CID}
			}
		}, "shape"},
		{"another layer's tensor", func(p *shards.Part) { p.Tensors[1].Name = "blk.0.attn_q.weight" }, "want \"blk.2.attn_q.weight\""},
		{"a tensor dropped", func(p *shards.Part) { p.Tensors = p.Tensors[:8] }, "8 tensors, want 9"},
		{"a quantized norm", func(p *shards.Part) {
			n := &p.Tensors[0]
			n.DType, n.Size = "f16", int64(2*len(kernels.F32Bytes(make([]float32, c.Dim)))/4)
		}, "want f32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := rewrite(t, st, im, 2, tc.edit)
			clear(st.gets)
			_, _, err := shards.BlocksFor(ctx, st, root, shards.Whole(c.Layers))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "layer 2") {
				t.Errorf("BlocksFor: %v", err)
			}
			if _, err := shards.Load(ctx, st, root, shards.Span{First: 2, Last: 3}); err == nil {
				t.Error("Load accepted it")
			}
			if err := shards.Export(ctx, st, root, &bytes.Buffer{}); err == nil {
				t.Error("Export accepted it")
			}
			if st.gets[huge.CID] != 0 {
				t.Error("fetched a chunk of the bad part")
			}
		})
	}
}

// TestChunkLengths: a chunk that matches its CID but not its place in the
// tensor (short, or a whole block where the tail belongs) is an error.
func TestChunkLengths(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := shards.Import(ctx, builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	short := blocks.NewBlock(make([]byte, 100))
	st.PutMany(ctx, []blocks.Block{short})
	root := rewrite(t, st, im, 1, func(p *shards.Part) { p.Tensors[4].Chunks[0] = shards.Link{CID: short.CID} })
	_, err = shards.Load(ctx, st, root, shards.Span{First: 1, Last: 2})
	if err == nil || !strings.Contains(err.Error(), "blk.1.attn_output.weight") || !strings.Contains(err.Error(), "100 bytes") {
		t.Errorf("short chunk: %v", err)
	}
	if err := shards.Export(ctx, st, root, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "blk.1.attn_output.weight") {
		t.Errorf("export with a short chunk: %v", err)
	}
}

// TestInspect reports which parts are here.
func TestInspect(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	src := builtin(t)
	layers := src.Weights.Config.Layers
	im, err := shards.Import(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	info, err := shards.Inspect(ctx, st, st, im.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Parts) != layers+2 || info.LocalParts() != layers+2 || info.TokenizerLocalChunks != info.TokenizerChunks || info.TokenizerChunks == 0 {
		t.Fatalf("inspect: %+v", info)
	}
	var sum int64
	for _, ti := range src.GGUF.Tensors {
		sum += int64(len(ti.Data))
	}
	if info.Bytes() != sum {
		t.Errorf("inspect counts %d tensor bytes, the file holds %d", info.Bytes(), sum)
	}
	if p := info.Parts[4]; p.String() != "layer 3" || p.Tensors != 9 || p.Chunks != 9 {
		t.Errorf("layer 3: %+v", p)
	}
	// Lose a chunk of layer 3 and the block of layer 4.
	b, _ := st.Get(ctx, im.Manifest.Layers[3].CID)
	p3, _ := shards.DecodePart(b.Data)
	delete(st.m, p3.Tensors[2].Chunks[0].CID)
	delete(st.m, im.Manifest.Layers[4].CID)
	if info, err = shards.Inspect(ctx, st, st, im.Root); err != nil {
		t.Fatal(err)
	}
	l3, l4 := info.Parts[4], info.Parts[5]
	if l3.Local() || !l3.Read || l3.LocalChunks != 8 || l4.Read || l4.Local() || info.LocalParts() != layers {
		t.Errorf("after losing blocks: layer 3 %+v, layer 4 %+v, %d local", l3, l4, info.LocalParts())
	}
}

// TestHostileBlobs: bounds on the tokenizer and on chunk counts.
func TestHostileBlobs(t *testing.T) {
	cfg := `"config":{"arch":"llama","dim":64,"hidden":172,"layers":1,"heads":8,"kv_heads":4,"vocab":512,"context":512,"rope_theta":10000,"rope_style":0,"norm_eps":1e-5,"shared_classifier":true}`
	link := `{"/":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"}`
	base := `{"format":"mycel-model/1",` + cfg + `,"embedding":` + link + `,"layers":[` + link + `],"head":` + link
	if _, err := shards.DecodeManifest([]byte(base + `}`)); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
	for _, tok := range []string{
		`{"size":1073741824,"chunks":[]}`,
		`{"size":1152921504606846976,"chunks":[]}`,
		`{"size":-1,"chunks":[]}`,
		`{"size":3,"chunks":[]}`,
		`{"size":3,"chunks":[` + link + `,` + link + `]}`,
	} {
		if _, err := shards.DecodeManifest([]byte(base + `,"tokenizer":` + tok + `}`)); err == nil {
			t.Errorf("tokenizer %s accepted", tok)
		}
	}
	for _, s := range []string{
		base + `,"layers":[]}`,
		strings.Replace(base, `"layers":1`, `"layers":1000000000`, 1) + `}`,
		strings.Replace(base, `"vocab":512`, `"vocab":1152921504606846976`, 1) + `}`,
		base + `,"head":{"/":"not a cid"}}`,
		base + `,"head":{"/":"bafkqaaa","x":1}}`,
		base + `} {}`,
		`{"format":"mycel-model/1","name":"` + strings.Repeat("x", 3<<20) + `"}`,
	} {
		if _, err := shards.DecodeManifest([]byte(s)); err == nil {
			t.Errorf("manifest %.120s accepted", s)
		}
	}
}

// TestManifestJSON pins the shape documented in docs/formats.md.
func TestManifestJSON(t *testing.T) {
	st := newMem()
	im, err := shards.Import(context.Background(), builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := st.Get(context.Background(), im.Root)
	if got := strings.Join(topKeys(b.Data), ","); got != "config,embedding,format,head,layers,name,tokenizer" {
		t.Errorf("manifest keys in order: %s", got)
	}
	if !bytes.HasPrefix(b.Data, []byte(`{"config":{"arch":"llama","context":`)) {
		t.Errorf("manifest starts %.60s", b.Data)
	}
}

// topKeys lists the top-level keys of a JSON object in document order.
func topKeys(b []byte) []string {
	d := json.NewDecoder(bytes.NewReader(b))
	d.Token() // {
	var keys []string
	for d.More() {
		k, _ := d.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		d.Decode(&skip)
	}
	return keys
}

// TestImportStoreFull: a write error stops the import, and the root, which
// goes last, is not stored.
func TestImportStoreFull(t *testing.T) {
	ctx := context.Background()
	st, err := blocks.OpenStore(t.TempDir(), blocks.Cap(200<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := builtin(t)
	if _, err := shards.Import(ctx, src, st); !errors.Is(err, blocks.ErrStoreFull) {
		t.Fatalf("import into a full store: %v", err)
	}
	im, err := shards.Import(ctx, src, newMem())
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.Has(ctx, im.Root); ok {
		t.Error("the root was stored by a failed import")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := shards.Import(cctx, src, newMem()); !errors.Is(err, context.Canceled) {
		t.Errorf("import with a cancelled context: %v", err)
	}
}
