package checkpoints

import (
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
)

func TestGGUFStories260K(t *testing.T) {
	g, err := OpenGGUF(testmodels.Path(t, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Version != 3 || len(g.KVs) != 19 || len(g.Tensors) != 48 || g.Alignment != 32 || g.DataOffset != 14176 {
		t.Fatalf("version %d, %d KVs, %d tensors, alignment %d, data at %d", g.Version, len(g.KVs), len(g.Tensors), g.Alignment, g.DataOffset)
	}
	if s, err := g.String("general.architecture"); err != nil || s != "llama" {
		t.Fatalf("architecture %q, %v", s, err)
	}
	if n, err := g.Uint("llama.feed_forward_length"); err != nil || n != 172 {
		t.Fatalf("ffn %d, %v", n, err)
	}
	if f, err := g.Float("llama.attention.layer_norm_rms_epsilon"); err != nil || float32(f) != 1e-5 {
		t.Fatalf("eps %g, %v", f, err)
	}
	toks, err := g.Strings("tokenizer.ggml.tokens")
	if err != nil || len(toks) != 512 || toks[1] != "<s>" {
		t.Fatalf("tokens: %d, %v", len(toks), err)
	}
	scores, err := g.Float32s("tokenizer.ggml.scores")
	if err != nil || len(scores) != 512 {
		t.Fatalf("scores: %d, %v", len(scores), err)
	}
	te, ok := g.Tensor("token_embd.weight")
	if !ok || len(te.Dims) != 2 || te.Dims[0] != 64 || te.Dims[1] != 512 || te.DType != kernels.F32 || !te.Supported || len(te.Data) != 4*64*512 {
		t.Fatalf("token_embd: %+v", te)
	}
	if _, err := g.Uint("no.such.key"); err == nil {
		t.Fatal("missing key: no error")
	}
}

// TestGGUFBuiltin reads the built-in model's header (docs/ourmodel.md):
// a GGUF written by package checkpoints, f16 matrices and f32 norms.
func TestGGUFBuiltin(t *testing.T) {
	g, err := OpenGGUF(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Version != 3 || len(g.Tensors) != 2+6*9 || g.Alignment != 32 || g.DataOffset%32 != 0 {
		t.Fatalf("version %d, %d tensors, alignment %d, data at %d", g.Version, len(g.Tensors), g.Alignment, g.DataOffset)
	}
	if s, err := g.String("general.architecture"); err != nil || s != "llama" {
		t.Fatalf("architecture %q, %v", s, err)
	}
	if n, err := g.Uint("llama.feed_forward_length"); err != nil || n != 512 {
		t.Fatalf("ffn %d, %v", n, err)
	}
	if f, err := g.Float("llama.attention.layer_norm_rms_epsilon"); err != nil || float32(f) != 1e-5 {
		t.Fatalf("eps %g, %v", f, err)
	}
	if b, err := g.Bool("tokenizer.ggml.add_bos_token"); err != nil || !b {
		t.Fatalf("add_bos %v, %v", b, err)
	}
	toks, err := g.Strings("tokenizer.ggml.tokens")
	if err != nil || len(toks) != 1536 || toks[1] != "<s>" || toks[2] != "</s>" {
		t.Fatalf("tokens: %d, %v", len(toks), err)
	}
	scores, err := g.Float32s("tokenizer.ggml.scores")
	if err != nil || len(scores) != 1536 {
		t.Fatalf("scores: %d, %v", len(scores), err)
	}
	types, err := g.Int32s("tokenizer.ggml.token_type")
	if err != nil || len(types) != 1536 || types[3] != 6 {
		t.Fatalf("token types: %d, %v", len(types), err)
	}
	te, ok := g.Tensor("token_embd.weight")
	if !ok || len(te.Dims) != 2 || te.Dims[0] != 192 || te.Dims[1] != 1536 || te.DType != kernels.F16 || !te.Supported || len(te.Data) != 2*192*1536 {
		t.Fatalf("token_embd: %+v", te)
	}
	n, ok := g.Tensor("blk.5.ffn_norm.weight")
	if !ok || len(n.Dims) != 1 || n.Dims[0] != 192 || n.DType != kernels.F32 || len(n.Data) != 4*192 {
		t.Fatalf("blk.5.ffn_norm: %+v", n)
	}
	if _, ok := g.Tensor("output.weight"); ok {
		t.Error("an output.weight: the classifier is the token embedding")
	}
	if _, err := g.Uint("no.such.key"); err == nil {
		t.Fatal("missing key: no error")
	}
}

func TestGGUFQwen3Tokenizer(t *testing.T) {
	path := testmodels.Path(t, "tokenizers/qwen3-tokenizer-random.gguf")
	start := time.Now()
	g, err := OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	toks, err := g.Strings("tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	merges, err := g.Strings("tokenizer.ggml.merges")
	if err != nil {
		t.Fatal(err)
	}
	types, err := g.Int32s("tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("open and decode: %v", time.Since(start))
	if len(toks) != 151669 || len(merges) != 151387 || len(types) != 151669 {
		t.Fatalf("%d tokens, %d merges, %d types", len(toks), len(merges), len(types))
	}
	if toks[0] != "!" || toks[151668] != "</think>" || merges[0] != "Ġ Ġ" || merges[2] != "i n" {
		t.Fatalf("tokens %q..%q, merges %q %q", toks[0], toks[151668], merges[0], merges[2])
	}
	if types[0] != 1 || types[151643] != 3 || types[151667] != 4 {
		t.Fatalf("types %d %d %d", types[0], types[151643], types[151667])
	}
	if pre, err := g.String("tokenizer.ggml.pre"); err != nil || pre != "qwen2" {
		t.Fatalf("pre %q, %v", pre, err)
	}
	if b, err := g.Bool("tokenizer.ggml.add_bos_token"); err != nil || b {
		t.Fatalf("add_bos %v, %v", b, err)
	}
	if eos, err := g.Uint("tokenizer.ggml.eos_token_id"); err != nil || eos != 151645 {
		t.Fatalf("eos %d, %v", eos, err)
	}
	if g.DataOffset != 5927328 || len(g.KVs) != 25 || len(g.Tensors) != 12 {
		t.Fatalf("data at %d, %d KVs, %d tensors", g.DataOffset, len(g.KVs), len(g.Tensors))
	}
}
