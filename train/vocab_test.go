package train

import (
	"slices"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/tales"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// A vocabulary learned from stories encodes them in few tokens, decodes
// them back exactly, and is the same every time.
func TestLearnVocab(t *testing.T) {
	corpus := tales.Corpus(3, 400)
	v, err := LearnVocab(corpus, 1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 1024 || len(v.Scores) != 1024 || len(v.Types) != 1024 {
		t.Fatalf("%d tokens, %d scores, %d types, want 1024 each", len(v.Tokens), len(v.Scores), len(v.Types))
	}
	again, _ := LearnVocab(corpus, 1024, 2)
	if !slices.Equal(v.Tokens, again.Tokens) || !slices.Equal(v.Scores, again.Scores) {
		t.Error("two learns of one corpus differ")
	}
	if v.Tokens[VocabBOS] != "<s>" || v.Tokens[VocabEOS] != "</s>" || v.Tokens[3] != "<0x00>" || v.Tokens[258] != "<0xFF>" {
		t.Errorf("specials and bytes out of place: %q", v.Tokens[:5])
	}
	seen := map[string]bool{}
	for i, p := range v.Tokens {
		if seen[p] {
			t.Errorf("piece %q (%d) twice", p, i)
		}
		seen[p] = true
		if i > 258 && strings.Contains(strings.TrimLeft(p, "\u2581"), "\u2581") {
			t.Errorf("piece %q has a space after a character", p)
		}
		if i > 258 && symbolClass(strings.ReplaceAll(p, "\u2581", " ")) < 0 {
			t.Errorf("piece %q mixes letters and punctuation", p)
		}
	}
	tok, err := tokenizer.NewSentencePiece(v)
	if err != nil {
		t.Fatal(err)
	}
	var words, ids int
	for _, s := range append(corpus, tales.Corpus(4, 100)...) {
		enc := tok.Encode(s, tokenizer.EncodeOptions{BOS: true})
		if got := tok.Decode(enc); got != s {
			t.Fatalf("round trip:\n got %q\nwant %q", got, s)
		}
		words += len(strings.Fields(s))
		ids += len(enc)
	}
	perWord := float64(ids) / float64(words)
	t.Logf("%.2f tokens per word", perWord)
	if perWord > 1.6 {
		t.Errorf("%.2f tokens per word: the merges do not compress", perWord)
	}
	// Text the stories never use still round-trips, through the bytes.
	for _, s := range []string{"Zebras éat 42 ☃!", "  two  spaces ", "\ttab\nnewline"} {
		if got := tok.Decode(tok.Encode(s, tokenizer.EncodeOptions{})); got != s {
			t.Errorf("round trip of %q: %q", s, got)
		}
	}
	if _, err := LearnVocab(corpus, 100, 2); err == nil {
		t.Error("a vocabulary too small for the bytes was accepted")
	}
}
