package shards_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// memStore is an in-memory block store that counts reads.
type memStore struct {
	mu   sync.Mutex
	m    map[cid.Cid][]byte
	gets map[cid.Cid]int
}

func newMem() *memStore { return &memStore{m: map[cid.Cid][]byte{}, gets: map[cid.Cid]int{}} }

func (s *memStore) PutMany(_ context.Context, bs []blocks.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bs {
		s.m[b.CID] = b.Data
	}
	return nil
}

func (s *memStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets[c]++
	d, ok := s.m[c]
	if !ok {
		return blocks.Block{}, fmt.Errorf("%w: %s", blocks.ErrNotFound, c)
	}
	return blocks.Block{CID: c, Data: d}, nil
}

func load(t *testing.T, name string, opts ...checkpoints.Option) *checkpoints.Model {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Path(t, name), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// builtin loads the built-in model (models/tales.gguf), which is part of
// the repository.
func builtin(t testing.TB) *checkpoints.Model {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The reference greedy continuation of stories260K from BOS (the test
// models' README).
var refFromBOS = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}

func greedy(t *testing.T, w *model.Weights, n int) []int {
	t.Helper()
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	var ids []int
	_, err = model.NewEngine(w, be).Generate(context.Background(), []int{1}, model.GenerateOptions{MaxTokens: n},
		func(id int) error { ids = append(ids, id); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestImportLoadRoundTrip: a model loaded from its blocks generates what
// the file does, and its tokenizer encodes alike.
func TestImportLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := builtin(t)
	layers := src.Weights.Config.Layers
	st := newMem()
	a, err := shards.Import(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	b, err := shards.Import(ctx, src, newMem())
	if err != nil {
		t.Fatal(err)
	}
	if a.Root != b.Root {
		t.Fatalf("two imports of one file gave %s and %s", a.Root, b.Root)
	}
	if len(a.Announce) != 1+1+layers+1 {
		t.Errorf("announce %d CIDs, want root, embedding, %d layers, head", len(a.Announce), layers)
	}
	l, err := shards.Load(ctx, st, a.Root, shards.Whole(layers))
	if err != nil {
		t.Fatal(err)
	}
	want := greedy(t, src.Weights, 40)
	if got := greedy(t, l.Weights, 40); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("greedy from blocks: %v, from the file %v", got, want)
	}
	if l.Tokenizer == nil {
		t.Fatal("no tokenizer loaded")
	}
	for _, s := range []string{testmodels.BuiltinPrompt, "Lily wanted to"} {
		ids := l.Tokenizer.Encode(s, tokenizer.EncodeOptions{BOS: true})
		if want := src.Tokenizer.Encode(s, tokenizer.EncodeOptions{BOS: true}); fmt.Sprint(ids) != fmt.Sprint(want) || len(ids) < 3 {
			t.Errorf("tokenizer from blocks encodes %q as %v, the file's as %v", s, ids, want)
		}
	}
}

// withOutput rewrites a GGUF model with a classifier of its own: a copy
// of the token embedding as output.weight.
func withOutput(t *testing.T, src *checkpoints.Model) *checkpoints.Model {
	t.Helper()
	var ts []checkpoints.TensorSpec
	for _, ti := range src.GGUF.Tensors {
		ts = append(ts, checkpoints.TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data})
		if ti.Name == "token_embd.weight" {
			ts = append(ts, checkpoints.TensorSpec{Name: "output.weight", Type: ti.Type, Dims: ti.Dims, Data: ti.Data})
		}
	}
	var buf bytes.Buffer
	if err := checkpoints.WriteGGUF(&buf, src.GGUF.KVs, ts); err != nil {
		t.Fatal(err)
	}
	m, err := checkpoints.LoadBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if m.Weights.Output == m.Weights.Embedding {
		t.Fatal("output.weight not read as a classifier of its own")
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestExportIsBitIdentical: the built-in model, with its shared
// classifier and with one of its own, and GGUF files written by
// llama.cpp's tools export with every tensor as it was.
func TestExportIsBitIdentical(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"builtin", "builtin with output", "stories260K.gguf", "llama-2-tiny-random.gguf"} {
		t.Run(name, func(t *testing.T) {
			var src *checkpoints.Model
			switch name {
			case "builtin":
				src = builtin(t)
			case "builtin with output":
				src = withOutput(t, builtin(t))
			default:
				src = load(t, name)
			}
			st := newMem()
			im, err := shards.Import(ctx, src, st)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := shards.Export(ctx, st, im.Root, &buf); err != nil {
				t.Fatal(err)
			}
			out, err := checkpoints.ParseGGUF(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			for _, ti := range src.GGUF.Tensors {
				got, ok := out.Tensor(ti.Name)
				if !ok {
					t.Fatalf("tensor %s missing from the export", ti.Name)
				}
				if got.Type != ti.Type || fmt.Sprint(got.Dims) != fmt.Sprint(ti.Dims) || !bytes.Equal(got.Data, ti.Data) {
					t.Errorf("tensor %s differs: %v %v vs %v %v", ti.Name, got.Type, got.Dims, ti.Type, ti.Dims)
				}
			}
			again, err := checkpoints.LoadBytes(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			im2, err := shards.Import(ctx, again, newMem())
			if err != nil {
				t.Fatal(err)
			}
			if im2.Root != im.Root {
				t.Errorf("import → export → import gave %s, first %s", im2.Root, im.Root)
			}
		})
	}
}

// TestSpanTouchesOnlyItsBlocks loads layers 2:4 and checks that no block of
// another part was read.
func TestSpanTouchesOnlyItsBlocks(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := shards.Import(ctx, builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	span := shards.Span{First: 2, Last: 4}
	want, _, err := shards.BlocksFor(ctx, st, im.Root, span)
	if err != nil {
		t.Fatal(err)
	}
	clear(st.gets)
	l, err := shards.Load(ctx, st, im.Root, span)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Weights.HasLayers(2, 4) || l.Weights.Layers[1] != nil || l.Weights.Layers[4] != nil || l.Weights.Embedding != nil {
		t.Fatal("span load holds the wrong layers")
	}
	allowed := map[cid.Cid]bool{}
	for _, c := range want {
		allowed[c] = true
	}
	for c := range st.gets {
		if !allowed[c] {
			t.Errorf("read block %s outside the span", c)
		}
	}
	// 1 manifest + 2 parts + 9 tensors per layer (each under 1 MiB here).
	if len(want) != 1+2+2*9 || len(st.gets) != len(want) {
		t.Errorf("span needs %d blocks and read %d; want %d", len(want), len(st.gets), 1+2+2*9)
	}
}

func TestLlama2CWithTokenizerAndQuantize(t *testing.T) {
	ctx := context.Background()
	src := load(t, "stories260K.bin")
	tok, err := tokenizer.LoadLlama2C(testmodels.Path(t, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	st := newMem()
	im, err := shards.Import(ctx, src, st, shards.WithTokenizer(tok), shards.Name("stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := shards.Load(ctx, st, im.Root, shards.Whole(5))
	if err != nil {
		t.Fatal(err)
	}
	if ids := l.Tokenizer.Encode("Lily wanted to", tokenizer.EncodeOptions{BOS: true}); fmt.Sprint(ids) != "[1 317 391 266 267]" {
		t.Errorf("converted llama2.c tokenizer encodes %v", ids)
	}
	if got := l.Tokenizer.Decode(refFromBOS[:8]); got != "Once upon a time, there was a" {
		t.Errorf("decodes %q", got)
	}
	if got := greedy(t, l.Weights, 20); fmt.Sprint(got) != fmt.Sprint(refFromBOS) {
		t.Errorf("greedy %v", got)
	}
	// Quantized on import: matrices 32-wide become Q8_0 and the model runs
	// with the reference's opening.
	q, err := shards.Import(ctx, src, st, shards.Quantize(kernels.Q8_0))
	if err != nil {
		t.Fatal(err)
	}
	lq, err := shards.Load(ctx, st, q.Root, shards.Whole(5))
	if err != nil {
		t.Fatal(err)
	}
	if lq.Weights.Layers[0].Wq.Type != kernels.Q8_0 || lq.Weights.Layers[0].W2.Type != kernels.F32 {
		t.Errorf("quantized import: wq %s, w2 %s", lq.Weights.Layers[0].Wq.Type, lq.Weights.Layers[0].W2.Type)
	}
	if got := greedy(t, lq.Weights, 8); fmt.Sprint(got) != fmt.Sprint(refFromBOS[:8]) {
		t.Errorf("Q8_0 import greedy %v", got)
	}
}

func TestDamagedBlocks(t *testing.T) {
	ctx := context.Background()
	st := newMem()
	im, err := shards.Import(ctx, builtin(t), st)
	if err != nil {
		t.Fatal(err)
	}
	whole := shards.Whole(im.Manifest.Config.Layers)
	p, _ := st.Get(ctx, im.Manifest.Layers[3].CID)
	part, err := shards.DecodePart(p.Data)
	if err != nil {
		t.Fatal(err)
	}
	chunk := part.Tensors[1].Chunks[0].CID // blk.3.attn_q.weight
	orig := st.m[chunk]
	bad := bytes.Clone(orig)
	bad[7] ^= 1
	st.m[chunk] = bad
	if _, err := shards.Load(ctx, st, im.Root, whole); !errors.Is(err, blocks.ErrCorrupt) || !strings.Contains(err.Error(), "blk.3.attn_q.weight") {
		t.Errorf("corrupt chunk: %v", err)
	}
	delete(st.m, chunk)
	if _, err := shards.Load(ctx, st, im.Root, whole); !errors.Is(err, blocks.ErrNotFound) || !strings.Contains(err.Error(), "blk.3.attn_q.weight") {
		t.Errorf("missing chunk: %v", err)
	}
	// A CID that is a block but not a manifest.
	if _, err := shards.Load(ctx, st, chunk0(im), whole); err == nil || !strings.Contains(err.Error(), "not a model manifest") {
		t.Errorf("loading a tensor chunk as a model: %v", err)
	}
}

func chunk0(im *shards.Imported) cid.Cid { return im.Manifest.Tokenizer.Chunks[0].CID }

func TestHostileManifests(t *testing.T) {
	for _, s := range []string{
		``, `{}`, `[]`, `{"format":"mycel-model/1"}`,
		`{"format":"mycel-model/1","config":{"dim":64,"hidden":172,"layers":1000000000,"heads":8,"kv_heads":4,"vocab":512,"context":512,"rope_theta":10000,"norm_eps":1e-5},"layers":[]}`,
		`{"format":"mycel-model/2"}`,
		`{"format":"mycel-model/1","extra":1}`,
	} {
		if _, err := shards.DecodeManifest([]byte(s)); err == nil {
			t.Errorf("manifest %q accepted", s)
		}
	}
	for _, s := range []string{
		`{"format":"mycel-part/1","tensors":[]}`,
		`{"format":"mycel-part/1","tensors":[{"name":"x","dtype":"f32","shape":[1152921504606846976,8],"size":0,"chunks":[]}]}`,
		`{"format":"mycel-part/1","tensors":[{"name":"x","dtype":"f32","shape":[4],"size":16,"chunks":[]}]}`,
		`{"format":"mycel-part/1","tensors":[{"name":"x","dtype":"q4_k","shape":[4],"size":16,"chunks":[]}]}`,
		`{"format":"mycel-part/1","tensors":[{"name":"x","dtype":"q8_0","shape":[2,17],"size":68,"chunks":[]}]}`,
	} {
		if _, err := shards.DecodePart([]byte(s)); err == nil {
			t.Errorf("part %q accepted", s)
		}
	}
}

// TestRealStore imports into the on-disk block store and loads back.
func TestRealStore(t *testing.T) {
	ctx := context.Background()
	st, err := blocks.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := builtin(t)
	im, err := shards.Import(ctx, src, st)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < im.Bytes/2 {
		t.Errorf("store holds %d bytes after importing %d", st.Size(), im.Bytes)
	}
	l, err := shards.Load(ctx, st, im.Root, shards.Whole(src.Weights.Config.Layers))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := greedy(t, l.Weights, 10), greedy(t, src.Weights, 10); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("greedy %v, from the file %v", got, want)
	}
}
