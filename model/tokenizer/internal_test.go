package tokenizer

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mycel-net/mycel/internal/testmodels"
)

func split(p preTokenizer, s string) []string {
	var out []string
	p(s, func(w string) { out = append(out, w) })
	return out
}

func TestPreTokenizers(t *testing.T) {
	for _, c := range []struct {
		pre  string
		text string
		want []string
	}{
		{"qwen2", "Hello world", []string{"Hello", " world"}},
		{"qwen2", "  a  b  ", []string{" ", " a", " ", " b", "  "}},
		{"qwen2", "x \n\n y", []string{"x", " \n\n", " y"}},
		{"qwen2", "a\t\tb", []string{"a", "\t", "\tb"}},
		{"qwen2", "12345", []string{"1", "2", "3", "4", "5"}},
		{"qwen2", "We'VE it's", []string{"We", "'VE", " it", "'s"}},
		{"qwen2", "a...\n\nb", []string{"a", "...\n\n", "b"}},
		{"qwen2", " !!x", []string{" !!", "x"}},
		{"qwen2", ".hello", []string{".hello"}},
		{"qwen2", "a\u00a0b", []string{"a", "\u00a0b"}},
		{"qwen2", "\xff\xfeab", []string{"\xff\xfe", "ab"}},
		{"llama-bpe", "12345 abc", []string{"123", "45", " abc"}},
		{"gpt2", "Hello  world's 123!!", []string{"Hello", " ", " world", "'s", " 123", "!!"}},
		{"gpt2", "it'S x\n\ny", []string{"it", "'", "S", " x", "\n", "\n", "y"}},
		{"gpt2", "a \n", []string{"a", " \n"}},
		{"smollm", "a 123b", []string{"a", " ", "1", "2", "3", "b"}},
		{"smollm", "hi  you", []string{"hi", " ", " you"}},
	} {
		p, err := lookupPreTokenizer(c.pre)
		if err != nil {
			t.Fatal(err)
		}
		if got := split(p, c.text); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %q: got %q, want %q", c.pre, c.text, got, c.want)
		}
	}
	if _, err := lookupPreTokenizer("tekken"); err == nil || !strings.Contains(err.Error(), `"tekken"`) {
		t.Errorf("unknown pre-tokenizer: err = %v", err)
	}
	if _, err := NewBPE(BPEVocab{Tokens: []string{"a"}, Pre: "tekken"}); err == nil || !strings.Contains(err.Error(), "tekken") {
		t.Errorf("NewBPE with unknown pre: err = %v", err)
	}
}

// The words of every pre-tokenizer cover the text exactly.
func FuzzPreTokenizers(f *testing.F) {
	f.Add("Hello  world's 123!!\r\n\n\t x")
	f.Add("\xff\u00a0 \u3000\u2028 'LL")
	f.Fuzz(func(t *testing.T, s string) {
		for name, p := range preTokenizers {
			var b strings.Builder
			p(s, func(w string) {
				if w == "" {
					t.Fatalf("%s: empty word in %q", name, s)
				}
				b.WriteString(w)
			})
			if b.String() != s {
				t.Fatalf("%s: words of %q join to %q", name, s, b.String())
			}
		}
	})
}

func TestAppendValidUTF8(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"abc", "abc"},
		{"\xc3", "\uFFFD"},
		{"\xe2\x80", "\uFFFD"},
		{"\xe2\x80a", "\uFFFDa"},
		{"\xf0\x80\x80", "\uFFFD\uFFFD\uFFFD"}, // F0 80: 80 is no valid second byte
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // a surrogate
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\xf0\x9f\x98\x80\x80", "😀\uFFFD"},
		{"\xc0\xaf", "\uFFFD\uFFFD"},
		{"\xff", "\uFFFD"},
		{"é€😀", "é€😀"},
	} {
		if got := string(appendValidUTF8(nil, []byte(c.in))); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

// The streaming decoder gives the same text as decoding all bytes at once,
// however the bytes are cut into pieces.
func TestDecoderChunking(t *testing.T) {
	tab := newDecodeTable(256, false)
	for b := range 256 {
		tab.add([]byte{byte(b)}, kindText)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{'a', 0x80, 0x9f, 0xbf, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xf4, 0x90, 0xff, 0xc0}
	for range 20000 {
		n := rng.IntN(8)
		ids := make([]int, n)
		raw := make([]byte, n)
		for i := range ids {
			raw[i] = alphabet[rng.IntN(len(alphabet))]
			ids[i] = int(raw[i])
		}
		want := string(appendValidUTF8(nil, raw))
		d := newDecoder(tab)
		var b strings.Builder
		for _, id := range ids {
			s := d.Next(id)
			if !utf8.ValidString(s) {
				t.Fatalf("%x: Next returned invalid UTF-8 %q", raw, s)
			}
			b.WriteString(s)
		}
		b.WriteString(d.Flush())
		if b.String() != want {
			t.Fatalf("%x: streamed %q, want %q", raw, b.String(), want)
		}
		if got := decodeAll(tab, ids, false); got != want {
			t.Fatalf("%x: decodeAll %q, want %q", raw, got, want)
		}
	}
}

// naiveMerge is the textbook loop: scan all adjacent pairs, merge the best
// (lowest key, leftmost), repeat. It is the oracle for mergeAll.
func naiveMerge(ids []int32, pair func(l, r int32) (int32, float64, bool)) []int32 {
	ids = slices.Clone(ids)
	for {
		best, bestKey, bestID := -1, 0.0, int32(0)
		for i := 0; i+1 < len(ids); i++ {
			if id, key, ok := pair(ids[i], ids[i+1]); ok && (best < 0 || key < bestKey) {
				best, bestKey, bestID = i, key, id
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = bestID
		ids = slices.Delete(ids, best+1, best+2)
	}
}

// Random vocabularies with many equal keys: the heap loop and the naive
// loop agree.
func TestMergeAllMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		// Tokens 0..3 are the alphabet; each merge makes a new token.
		type mk struct{ l, r int32 }
		rules := map[mk]struct {
			id  int32
			key float64
		}{}
		next := int32(4)
		for range 40 {
			l, r := rng.Int32N(next), rng.Int32N(next)
			if _, ok := rules[mk{l, r}]; ok {
				continue
			}
			rules[mk{l, r}] = struct {
				id  int32
				key float64
			}{next, float64(rng.IntN(6))}
			next++
		}
		pair := func(l, r int32) (int32, float64, bool) {
			v, ok := rules[mk{l, r}]
			return v.id, v.key, ok
		}
		n := 1 + rng.IntN(30)
		ids := make([]int32, n)
		syms := make([]symbol, n)
		for i := range ids {
			ids[i] = rng.Int32N(4)
			syms[i] = symbol{start: int32(i), end: int32(i + 1), id: ids[i], prev: int32(i - 1), next: int32(i + 1)}
		}
		syms[n-1].next = -1
		mergeAll(syms, nil, func(l, r *symbol) (int32, float64, bool) { return pair(l.id, r.id) })
		var got []int32
		for i := 0; i >= 0; i = int(syms[i].next) {
			got = append(got, syms[i].id)
		}
		if want := naiveMerge(ids, pair); !slices.Equal(got, want) {
			t.Fatalf("trial %d, input %v: heap %v, naive %v", trial, ids, got, want)
		}
	}
}

// naiveLlama2C is llama2.c's encoder loop (rescan every pair after each
// merge), the baseline for the chunked heap encoder. Pieces that write
// spaces as "▁" (GGUF's vocabularies) are read with real spaces, as
// llama2.c's files store them.
func naiveLlama2C(t *SentencePiece, text string) []int {
	if text == "" {
		return nil
	}
	s := " " + text
	var ids []int
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		if id, ok := t.pieces[s[i:i+w]]; ok {
			ids = append(ids, int(id))
		} else {
			for j := i; j < i+w; j++ {
				ids = append(ids, int(t.byteID[s[j]]))
			}
		}
		i += w
	}
	for {
		best, bestScore, bestID := -1, float32(0), 0
		for i := 0; i+1 < len(ids); i++ {
			l, r := t.tokens[ids[i]], t.tokens[ids[i+1]]
			if id, ok := t.pieces[strings.ReplaceAll(l+r, spaceMark, " ")]; ok && t.types[ids[i]] == TypeNormal && t.types[ids[i+1]] == TypeNormal && (best < 0 || t.scores[id] > bestScore) {
				best, bestScore, bestID = i, t.scores[id], int(id)
			}
		}
		if best < 0 {
			return ids
		}
		ids[best] = bestID
		ids = slices.Delete(ids, best+1, best+2)
	}
}

func loadLlama2(tb testing.TB) *SentencePiece {
	tok, err := LoadLlama2C(testmodels.Path(tb, "tokenizer.bin"), 32000)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

var oracleTexts = []string{
	"Hello, world! Les élèves étudient à l'école; Здравствуй, мир. 你好，世界。🌍🚀",
	"   spaces    everywhere   ",
	"The quick brown fox jumps over the lazy dog. 1234567890 !@#$%^&*()",
}

// The chunked heap encoder and llama2.c's loop agree on Llama 2's
// vocabulary (the built-in model's: TestBuiltinSentencePieceMatchesNaive).
func TestSentencePieceMatchesNaive(t *testing.T) {
	CheckMatchesNaive(t, loadLlama2(t))
}

// CheckMatchesNaive checks that tok, whose vocabulary allows chunked
// encoding, encodes as llama2.c's loop does, with chunks and without, on
// hard texts and random strings of word pieces.
func CheckMatchesNaive(t *testing.T, tok *SentencePiece) {
	t.Helper()
	if !tok.chunked {
		t.Error("the vocabulary should allow chunked encoding")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	texts := slices.Clone(oracleTexts)
	pieces := []string{" ", "  ", "the", "un", "believ", "able", "é", "😀", "\n", "x", "ing", "–", "中文", "Once", " upon", " friend", "ly", ".", "\""}
	for range 200 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		texts = append(texts, b.String())
	}
	for _, text := range texts {
		got := tok.Encode(text, EncodeOptions{})
		if want := naiveLlama2C(tok, text); !slices.Equal(got, want) {
			t.Errorf("%q: got %v, naive %v", text, got, want)
		}
		tok.chunked = false // the unchunked path too
		if got := tok.Encode(text, EncodeOptions{}); !slices.Equal(got, naiveLlama2C(tok, text)) {
			t.Errorf("%q unchunked: got %v", text, got)
		}
		tok.chunked = true
	}
}

// BenchmarkSentencePiece compares llama2.c's loop (baseline) with the
// heap, without and with chunking, on 4 KB of text.
func BenchmarkSentencePiece(b *testing.B) {
	tok := loadLlama2(b)
	var sb strings.Builder
	for sb.Len() < 4096 {
		sb.WriteString(oracleTexts[0] + " " + oracleTexts[2] + " ")
	}
	text := sb.String()[:4096]
	text = strings.ToValidUTF8(text, "")
	b.Run("naive", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			naiveLlama2C(tok, text)
		}
	})
	b.Run("heap", func(b *testing.B) {
		tok.chunked = false
		defer func() { tok.chunked = true }()
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tok.Encode(text, EncodeOptions{})
		}
	})
	b.Run("heap-chunked-cached", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tok.Encode(text, EncodeOptions{})
		}
	})
}

// toyBPE is a byte-level vocabulary: the 256 byte symbols, "ab", "abc"
// (reachable only through merges "a b", "ab c") and "xyz" (no merges), a
// control and a user-defined token.
func toyBPE(t *testing.T, pre string) *BPE {
	t.Helper()
	var tokens []string
	for b := range 256 {
		tokens = append(tokens, string(byteToRune[b]))
	}
	tokens = append(tokens, "ab", "abc", "xyz", "<|end|>", "<x>")
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = TypeNormal
	}
	types[259], types[260] = TypeControl, TypeUserDefined
	tok, err := NewBPE(BPEVocab{Tokens: tokens, Types: types, Merges: []string{"a b", "ab c"}, Pre: pre, BOS: -1, EOS: 259})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestToyBPE(t *testing.T) {
	q := toyBPE(t, "qwen2")
	if got := q.Encode("abc xyz", EncodeOptions{}); !slices.Equal(got, []int{257, ' ', 'x', 'y', 'z'}) {
		t.Errorf("qwen2 Encode = %v", got)
	}
	// llama-bpe emits a word that is a token as is (ignore_merges).
	l := toyBPE(t, "llama-bpe")
	if got := l.Encode("xyz", EncodeOptions{}); !slices.Equal(got, []int{258}) {
		t.Errorf("llama-bpe Encode(xyz) = %v", got)
	}
	// Control tokens only with ParseSpecial; user-defined always.
	if got := q.Encode("a<|end|><x>", EncodeOptions{}); got[len(got)-1] != 260 || slices.Contains(got, 259) {
		t.Errorf("Encode without ParseSpecial = %v", got)
	}
	if got := q.Encode("a<|end|><x>", EncodeOptions{ParseSpecial: true}); !slices.Equal(got, []int{'a', 259, 260}) {
		t.Errorf("Encode with ParseSpecial = %v", got)
	}
	ids := []int{'a', 259, 260, 99999, -1}
	if got := q.Decode(ids); got != "a<x>" {
		t.Errorf("Decode = %q", got)
	}
	if got := q.DecodeSpecial(ids); got != "a<|end|><x>" {
		t.Errorf("DecodeSpecial = %q", got)
	}
	if !q.IsEOG(259) || q.IsEOG(260) || q.IsEOG(-5) {
		t.Error("IsEOG")
	}
	// A vocabulary without every byte is refused.
	if _, err := NewBPE(BPEVocab{Tokens: []string{"a", "b"}, Pre: "gpt2", BOS: -1, EOS: -1}); err == nil || !strings.Contains(err.Error(), "byte 0x00") {
		t.Errorf("missing bytes: err = %v", err)
	}
	if _, err := NewBPE(BPEVocab{Tokens: q.tokens, Merges: []string{"ab"}, Pre: "gpt2", BOS: -1, EOS: -1}); err == nil || !strings.Contains(err.Error(), `merge 0 "ab"`) {
		t.Errorf("bad merge: err = %v", err)
	}
}
