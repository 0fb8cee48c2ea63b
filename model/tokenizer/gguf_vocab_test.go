package tokenizer_test

import (
	"fmt"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// optionalID reads a token id key, -1 where absent.
func optionalID(g *checkpoints.GGUF, key string) int {
	v, err := g.Uint(key)
	if err != nil {
		return -1
	}
	return int(v)
}

// readQwen3Vocab reads the byte-level BPE vocabulary of a GGUF file.
func readQwen3Vocab(path string) (tokenizer.BPEVocab, error) {
	g, err := checkpoints.OpenGGUF(path)
	if err != nil {
		return tokenizer.BPEVocab{}, err
	}
	defer g.Close()
	var v tokenizer.BPEVocab
	if model, err := g.String("tokenizer.ggml.model"); err != nil || model != "gpt2" {
		return v, fmt.Errorf("%s: tokenizer.ggml.model = %q, %v; want gpt2", path, model, err)
	}
	if v.Tokens, err = g.Strings("tokenizer.ggml.tokens"); err != nil {
		return v, err
	}
	if v.Types, err = g.Int32s("tokenizer.ggml.token_type"); err != nil {
		return v, err
	}
	if v.Merges, err = g.Strings("tokenizer.ggml.merges"); err != nil {
		return v, err
	}
	if v.Pre, err = g.String("tokenizer.ggml.pre"); err != nil {
		return v, err
	}
	v.BOS = optionalID(g, "tokenizer.ggml.bos_token_id")
	v.EOS = optionalID(g, "tokenizer.ggml.eos_token_id")
	v.AddBOS, _ = g.Bool("tokenizer.ggml.add_bos_token")
	return v, nil
}

// loadGGUFSentencePiece reads a GGUF "llama" (SentencePiece) vocabulary.
func loadGGUFSentencePiece(tb testing.TB, name string) *tokenizer.SentencePiece {
	tb.Helper()
	g, err := checkpoints.OpenGGUF(testmodels.Path(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer g.Close()
	if model, err := g.String("tokenizer.ggml.model"); err != nil || model != "llama" {
		tb.Fatalf("%s: tokenizer.ggml.model = %q, %v; want llama", name, model, err)
	}
	var v tokenizer.SPVocab
	if v.Tokens, err = g.Strings("tokenizer.ggml.tokens"); err != nil {
		tb.Fatal(err)
	}
	if v.Scores, err = g.Float32s("tokenizer.ggml.scores"); err != nil {
		tb.Fatal(err)
	}
	if v.Types, err = g.Int32s("tokenizer.ggml.token_type"); err != nil {
		tb.Fatal(err)
	}
	v.BOS = optionalID(g, "tokenizer.ggml.bos_token_id")
	v.EOS = optionalID(g, "tokenizer.ggml.eos_token_id")
	v.UNK = optionalID(g, "tokenizer.ggml.unknown_token_id")
	v.AddBOS = true
	if b, err := g.Bool("tokenizer.ggml.add_bos_token"); err == nil {
		v.AddBOS = b
	}
	tok, err := tokenizer.NewSentencePiece(v)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// The GGUF copies of the llama2.c vocabularies ("▁" for spaces, typed
// pieces) encode and decode exactly as the llama2.c files do.
func TestGGUFSentencePieceMatchesLlama2C(t *testing.T) {
	texts := []string{
		"Lily wanted to", storyText, "", " ", "  two", "tab\tand\nnewline ",
		"Hello, world! Les élèves étudient à l'école; 你好，世界。🌍🚀👩‍👩‍👧 ½",
		"<s> and </s> as text",
	}
	for _, c := range []struct {
		gguf string
		bin  func(testing.TB) *tokenizer.SentencePiece
	}{
		{"stories260K.gguf", loadTok512},
		{"llama-2-tiny-random.gguf", loadTok32k},
	} {
		g := loadGGUFSentencePiece(t, c.gguf)
		bin := c.bin(t)
		if g.VocabSize() != bin.VocabSize() || g.BOS() != 1 || g.EOS() != 2 {
			t.Fatalf("%s: vocab %d, BOS %d, EOS %d", c.gguf, g.VocabSize(), g.BOS(), g.EOS())
		}
		for _, text := range texts {
			for _, o := range []tokenizer.EncodeOptions{{BOS: true}, {}} {
				want := bin.Encode(text, o)
				got := g.Encode(text, o)
				if !equalInts(got, want) {
					t.Errorf("%s %+v: Encode(%q) = %v, llama2.c file gives %v", c.gguf, o, text, got, want)
				}
				if d := g.Decode(got); d != text {
					t.Errorf("%s: Decode(Encode(%q)) = %q", c.gguf, text, d)
				}
			}
		}
		if got := g.Encode("Lily wanted to", tokenizer.EncodeOptions{BOS: true}); c.gguf == "stories260K.gguf" && !equalInts(got, []int{1, 317, 391, 266, 267}) {
			t.Errorf("stories260K.gguf: Encode(Lily wanted to) = %v", got)
		}
		// Control pieces in text are matched only with ParseSpecial.
		if got := g.Encode("a</s>", tokenizer.EncodeOptions{ParseSpecial: true}); len(got) == 0 || got[len(got)-1] != 2 {
			t.Errorf("%s: Encode(a</s>, ParseSpecial) = %v, want it to end with EOS", c.gguf, got)
		}
		if !g.IsEOG(2) || g.IsEOG(1) {
			t.Errorf("%s: IsEOG(2), IsEOG(1) = %v, %v", c.gguf, g.IsEOG(2), g.IsEOG(1))
		}
	}
}
