package tokenizer_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/tokenizer"
)

var (
	tok512Once sync.Once
	tok512     *tokenizer.SentencePiece
	tok512Err  error
)

func loadTok512(tb testing.TB) *tokenizer.SentencePiece {
	tb.Helper()
	p := testmodels.Path(tb, "tok512.bin")
	tok512Once.Do(func() { tok512, tok512Err = tokenizer.LoadLlama2C(p, 512) })
	if tok512Err != nil {
		tb.Fatal(tok512Err)
	}
	return tok512
}

var (
	builtinOnce sync.Once
	builtinTok  *tokenizer.SentencePiece
	builtinErr  error
)

// loadBuiltin returns the vocabulary of the built-in model
// (models/tales.gguf), which is part of the repository.
func loadBuiltin(tb testing.TB) *tokenizer.SentencePiece {
	tb.Helper()
	p := testmodels.Builtin(tb)
	builtinOnce.Do(func() {
		var m *checkpoints.Model
		if m, builtinErr = checkpoints.Load(p); builtinErr != nil {
			return
		}
		defer m.Close()
		var ok bool
		if builtinTok, ok = m.Tokenizer.(*tokenizer.SentencePiece); !ok {
			builtinErr = fmt.Errorf("the built-in model's tokenizer is a %T", m.Tokenizer)
		}
	})
	if builtinErr != nil {
		tb.Fatal(builtinErr)
	}
	return builtinTok
}

// TestBuiltinSentencePieceMatchesNaive: the chunked heap encoder and
// llama2.c's loop agree on the built-in model's vocabulary.
func TestBuiltinSentencePieceMatchesNaive(t *testing.T) {
	tokenizer.CheckMatchesNaive(t, loadBuiltin(t))
}

var (
	tok32kOnce sync.Once
	tok32k     *tokenizer.SentencePiece
	tok32kErr  error
)

func loadTok32k(tb testing.TB) *tokenizer.SentencePiece {
	tb.Helper()
	p := testmodels.Path(tb, "tokenizer.bin")
	tok32kOnce.Do(func() { tok32k, tok32kErr = tokenizer.LoadLlama2C(p, 32000) })
	if tok32kErr != nil {
		tb.Fatal(tok32kErr)
	}
	return tok32k
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLlama2CReferenceEncoding(t *testing.T) {
	tok := loadTok512(t)
	got := tok.Encode("Lily wanted to", tokenizer.EncodeOptions{BOS: true})
	want := []int{1, 317, 391, 266, 267}
	if !equalInts(got, want) {
		t.Fatalf("Encode(%q) = %v, want %v", "Lily wanted to", got, want)
	}
	if got := tok.Encode("", tokenizer.EncodeOptions{BOS: true}); !equalInts(got, []int{1}) {
		t.Errorf("Encode(\"\") with BOS = %v, want [1]", got)
	}
	if got := tok.Encode("", tokenizer.EncodeOptions{}); len(got) != 0 {
		t.Errorf("Encode(\"\") = %v, want []", got)
	}
	if tok.VocabSize() != 512 || tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() {
		t.Errorf("VocabSize, BOS, EOS, AddBOS = %d, %d, %d, %v", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.AddBOS())
	}
	if !tok.IsEOG(2) || tok.IsEOG(1) || tok.IsEOG(300) {
		t.Error("IsEOG: want only EOS (2)")
	}
}

// storyText is what stories260K writes greedily from BOS; storyIDs are the
// first 40 ids it generates, which cover the text up to "big, r".
const storyText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high"

var storyIDs = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352}

const story40 = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, r"

func TestLlama2CReferenceDecode(t *testing.T) {
	tok := loadTok512(t)
	d := tok.NewDecoder()
	var b strings.Builder
	b.WriteString(d.Next(1))
	for _, id := range storyIDs {
		b.WriteString(d.Next(id))
	}
	b.WriteString(d.Flush())
	if b.String() != story40 {
		t.Errorf("streamed decode of the 40 ids =\n%q\nwant\n%q", b.String(), story40)
	}
	prefixed := append([]int{1}, storyIDs...)
	if got := tok.Decode(prefixed); got != story40 {
		t.Errorf("Decode of the 40 ids =\n%q\nwant\n%q", got, story40)
	}
	// The whole text encodes to ids that start with the 40 the model
	// wrote (the vocabulary segments the way the model was trained to
	// write) and decode back to the whole text.
	all := tok.Encode(storyText, tokenizer.EncodeOptions{BOS: true})
	if len(all) < len(prefixed) || !equalInts(all[:len(prefixed)], prefixed) {
		t.Errorf("Encode(story) = %v, want it to start with %v", all, prefixed)
	}
	if got := tok.Decode(all); got != storyText {
		t.Errorf("Decode(Encode(story)) =\n%q\nwant\n%q", got, storyText)
	}
}

func TestLlama2CRoundTripUnicode(t *testing.T) {
	roundTripUnicode(t, loadTok32k(t))
}

// TestRoundTripUnicode: the built-in model's vocabulary, learned from
// English stories, gives back any text through its byte pieces.
func TestRoundTripUnicode(t *testing.T) {
	roundTripUnicode(t, loadBuiltin(t))
}

// roundTripUnicode encodes and decodes hard texts, whole and streamed,
// with a SentencePiece vocabulary with byte fallback.
func roundTripUnicode(t *testing.T, tok *tokenizer.SentencePiece) {
	t.Helper()
	texts := []string{
		"Hello, world! Les élèves étudient à l'école; Здравствуй, мир. 你好，世界。こんにちは 🌍🚀👩‍👩‍👧 — “quotes” and ½ ≠ ∞.\n\tNew line, tab; done.",
		"Once upon a time",
		" leading space",
		"  two leading spaces",
		"trailing space ",
		"\n",
		"⁂ \U0001F9EA \u0000 \x7f end",
	}
	for _, text := range texts {
		ids := tok.Encode(text, tokenizer.EncodeOptions{BOS: true})
		if got := tok.Decode(ids); got != text {
			t.Errorf("Decode(Encode(%q)) = %q (ids %v)", text, got, ids)
		}
		// Streaming gives the same text.
		d := tok.NewDecoder()
		var b strings.Builder
		for _, id := range ids {
			b.WriteString(d.Next(id))
		}
		b.WriteString(d.Flush())
		if b.String() != text {
			t.Errorf("streamed decode of %q = %q", text, b.String())
		}
	}
	// The emoji is not a piece: it must have gone through byte fallback
	// (ids 3..258), and the streaming decoder holds the partial bytes back.
	ids := tok.Encode("🚀", tokenizer.EncodeOptions{})
	bytes := 0
	for _, id := range ids {
		if id >= 3 && id <= 258 {
			bytes++
		}
	}
	if bytes != 4 {
		t.Errorf("Encode(🚀) = %v, want 4 byte-fallback ids", ids)
	}
	d := tok.NewDecoder()
	var outs []string
	for _, id := range ids {
		outs = append(outs, d.Next(id))
	}
	if got := strings.Join(outs, ""); got != "🚀" || outs[len(outs)-1] != "🚀" {
		t.Errorf("streamed byte pieces gave %q, want the emoji only once all 4 bytes arrived", outs)
	}
}

// llama2CFile writes a llama2.c tokenizer file of pieces.
func llama2CFile(maxLen int32, pieces []string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(maxLen))
	for i, p := range pieces {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(-i)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func TestParseLlama2CVocabMismatch(t *testing.T) {
	p := testmodels.Path(t, "tok512.bin")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the last entry: 511 pieces for a 512-token model.
	off, ends := 4, []int{}
	for off < len(data) {
		n := int(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8 + n
		ends = append(ends, off)
	}
	if len(ends) != 512 {
		t.Fatalf("tok512.bin has %d pieces", len(ends))
	}
	_, err = tokenizer.ParseLlama2C(data[:ends[510]], 512)
	if err == nil || !strings.Contains(err.Error(), "tokenizer has 511 pieces, model needs 512") {
		t.Errorf("511 pieces for vocab 512: err = %v", err)
	}
	// The 32000-token file for a 512-token model: trailing bytes.
	if _, err := tokenizer.ParseLlama2C(append(data, data[4:20]...), 512); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("trailing bytes: err = %v", err)
	}
	if _, err := tokenizer.ParseLlama2C(data, 513); err == nil {
		t.Error("tok512.bin for vocab 513: no error")
	}
}

func TestParseLlama2CHostile(t *testing.T) {
	ok := []string{"<unk>", "\n<s>\n", "\n</s>\n", "a"}
	if _, err := tokenizer.ParseLlama2C(llama2CFile(8, ok), 4); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	huge := llama2CFile(8, ok[:2])
	huge = binary.LittleEndian.AppendUint32(huge, 0)
	huge = binary.LittleEndian.AppendUint32(huge, 1<<31)
	negative := llama2CFile(8, ok[:2])
	negative = binary.LittleEndian.AppendUint32(negative, 0)
	negative = binary.LittleEndian.AppendUint32(negative, math.MaxUint32)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"max_token_length 2^31", llama2CFile(math.MinInt32, ok), "max_token_length"},
		{"max_token_length huge", llama2CFile(1<<30, ok), "max_token_length"},
		{"length 2^31", huge, "piece 2 has length -2147483648"},
		{"length -1", negative, "piece 2 has length -1"},
		{"length over max", llama2CFile(5, ok), "piece 2 has length 6"},
		{"truncated", llama2CFile(8, ok)[:33], "piece 2 is truncated"},
		{"bytes cut", llama2CFile(8, ok)[:40], "piece 2 (length 6) runs past"},
	} {
		_, err := tokenizer.ParseLlama2C(c.data, 4)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	if _, err := tokenizer.ParseLlama2C(llama2CFile(8, ok), 1<<30); err == nil {
		t.Error("vocab 2^30: no error")
	}
}

func TestNewSentencePieceGGUFStyle(t *testing.T) {
	// A GGUF-style vocabulary: U+2581 for spaces, typed byte pieces.
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{tokenizer.TypeUnknown, tokenizer.TypeControl, tokenizer.TypeControl}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, "<0x"+strings.ToUpper(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]))+">")
		types = append(types, tokenizer.TypeByte)
	}
	for _, p := range []string{"▁", "h", "i", "▁h", "▁hi", "!", "é"} {
		tokens = append(tokens, p)
		types = append(types, tokenizer.TypeNormal)
	}
	scores := make([]float32, len(tokens))
	for i := range scores {
		scores[i] = float32(-i)
	}
	tok, err := tokenizer.NewSentencePiece(tokenizer.SPVocab{Tokens: tokens, Scores: scores, Types: types, BOS: 1, EOS: 2, UNK: 0, AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode("hi hi!😀", tokenizer.EncodeOptions{BOS: true})
	want := []int{1, 263, 263, 264, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3}
	if !equalInts(ids, want) {
		t.Errorf("Encode = %v, want %v", ids, want)
	}
	if got := tok.Decode(ids); got != "hi hi!😀" {
		t.Errorf("Decode = %q", got)
	}
	if got := tok.DecodeSpecial(ids); got != "<s>hi hi!😀" {
		t.Errorf("DecodeSpecial = %q", got)
	}
	// "<s>" in text is matched only with ParseSpecial, and the dummy
	// prefix follows it.
	ids = tok.Encode("hi<s>hi", tokenizer.EncodeOptions{ParseSpecial: true})
	if want := []int{263, 1, 263}; !equalInts(ids, want) {
		t.Errorf("Encode with ParseSpecial = %v, want %v", ids, want)
	}
	if _, err := tokenizer.NewSentencePiece(tokenizer.SPVocab{Tokens: tokens, Scores: scores[:3], BOS: 1, EOS: 2, UNK: 0}); err == nil {
		t.Error("scores shorter than tokens: no error")
	}
	if _, err := tokenizer.NewSentencePiece(tokenizer.SPVocab{Tokens: tokens, BOS: 1, EOS: len(tokens), UNK: 0}); err == nil {
		t.Error("EOS out of range: no error")
	}
}
