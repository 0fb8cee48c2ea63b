package chat

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// ggufTemplate opens a GGUF's metadata and returns its chat template (""
// when it has none) and its tokenizer.
func ggufTemplate(t *testing.T, path string) (string, tokenizer.Tokenizer) {
	t.Helper()
	g, err := checkpoints.OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	src := ""
	if _, ok := g.Get(MetadataKey); ok {
		if src, err = g.String(MetadataKey); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := checkpoints.TokenizerFromGGUF(g)
	if err != nil {
		t.Fatal(err)
	}
	return src, tok
}

// The Qwen3 tokenizer GGUF carries Qwen3's own template: it renders
// through ForModel with the file's special tokens, and the prompt encodes
// to the chat control tokens.
func TestGGUFQwen3Template(t *testing.T) {
	src, tok := ggufTemplate(t, testmodels.Path(t, "tokenizers/qwen3-tokenizer-random.gguf"))
	if len(src) != 4116 {
		t.Fatalf("template of %d bytes, want 4116", len(src))
	}
	tm, err := ForModel(src, tok)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Family() != ChatML || tm.Special() != (Special{BOS: "<|endoftext|>", EOS: "<|im_end|>"}) {
		t.Fatalf("family %s, special %+v", tm.Family(), tm.Special())
	}
	got, err := tm.Render(full, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
		"<|im_start|>user\nHello!<|im_end|>\n" +
		"<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n" +
		"<|im_start|>user\nWhat is 2+2?<|im_end|>\n" +
		"<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	// Qwen3 adds no BOS; the markers are single control tokens.
	ids := Encode(tok, got)
	const imStart, imEnd = 151644, 151645
	starts, ends := 0, 0
	for _, id := range ids {
		switch id {
		case imStart:
			starts++
		case imEnd:
			ends++
		}
	}
	if ids[0] != imStart || starts != 5 || ends != 4 || tok.Decode(ids) != strings.NewReplacer("<|im_start|>", "", "<|im_end|>", "").Replace(got) {
		t.Fatalf("encoded to %v (%d starts, %d ends)", ids, starts, ends)
	}
	if stop := tm.StopIDs(tok); len(stop) != 1 || stop[0] != imEnd {
		t.Fatalf("stop ids %v", stop)
	}
	rule := tm.StopRule(tok, false)
	if !rule(imEnd) || !rule(151643) || rule(imStart) || tm.StopRule(tok, true) != nil {
		t.Fatal("stop rule")
	}
}

// The built-in model has no template: it gets the built-in format of its
// vocabulary (SentencePiece, no chat markers: Plain), which renders.
func TestBuiltinWithoutTemplate(t *testing.T) {
	plainWithoutTemplate(t, testmodels.Builtin(t))
}

// Every other test GGUF has no template: each gets a built-in format from
// its vocabulary (all are SentencePiece vocabularies with no chat
// markers, so Plain), which renders.
func TestGGUFWithoutTemplate(t *testing.T) {
	dir := testmodels.Dir()
	testmodels.Path(t, "arch/README.md")
	paths, _ := filepath.Glob(filepath.Join(dir, "arch", "*.gguf"))
	more, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	paths = append(paths, more...)
	if len(paths) < 10 {
		t.Fatalf("only %d GGUF files in %s", len(paths), dir)
	}
	for _, p := range paths {
		plainWithoutTemplate(t, p)
	}
}

// plainWithoutTemplate checks that the GGUF at p has no template and
// renders a chat in the Plain format.
func plainWithoutTemplate(t *testing.T, p string) {
	t.Helper()
	src, tok := ggufTemplate(t, p)
	tm, err := ForModel(src, tok)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	if src != "" || tm.Family() != Plain {
		t.Errorf("%s: template of %d bytes, family %s", filepath.Base(p), len(src), tm.Family())
		return
	}
	got, err := tm.Render(full, true)
	if err != nil || !strings.HasSuffix(got, "User: What is 2+2?\nAssistant:") {
		t.Errorf("%s: %q, %v", filepath.Base(p), got, err)
	}
	if ids := Encode(tok, got); len(ids) < 10 || ids[0] != tok.BOS() {
		t.Errorf("%s: encoded to %v", filepath.Base(p), ids)
	}
}
