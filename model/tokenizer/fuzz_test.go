package tokenizer_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/tokenizer"
	"golang.org/x/text/unicode/norm"
)

// FuzzParseLlama2C feeds hostile tokenizer files to the reader: it must
// return an error or a tokenizer that encodes and decodes without
// panicking, and never allocate by a length it has not checked.
func FuzzParseLlama2C(f *testing.F) {
	if data, err := os.ReadFile(testmodels.Dir() + "/tok512.bin"); err == nil {
		f.Add(data, uint16(512))
	}
	f.Add(llama2CFile(8, []string{"<unk>", "\n<s>\n", "\n</s>\n", "a", "b", "ab"}), uint16(6))
	f.Add(llama2CFile(8, []string{"<unk>", "\n<s>\n", "\n</s>\n", "<0x41>", " ", "A"}), uint16(6))
	f.Add(binary.LittleEndian.AppendUint32(llama2CFile(8, []string{"<unk>"}), 1<<31), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, vocab uint16) {
		tok, err := tokenizer.ParseLlama2C(data, int(vocab))
		if err != nil {
			if tok != nil {
				t.Fatal("tokenizer and error both returned")
			}
			return
		}
		if tok.VocabSize() != int(vocab) {
			t.Fatalf("VocabSize %d, want %d", tok.VocabSize(), vocab)
		}
		for _, text := range []string{"", "ab A", "\xff héllo 😀"} {
			ids := tok.Encode(text, tokenizer.EncodeOptions{BOS: true, ParseSpecial: true})
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("Encode(%q) gave id %d outside the vocabulary", text, id)
				}
			}
			_ = tok.Decode(ids)
		}
	})
}

// FuzzEncodeDecode: encoding never panics, and for valid UTF-8 decoding
// gives the text back (SentencePiece with byte fallback: exactly; BPE: the
// NFC form of the text between added tokens).
func FuzzEncodeDecode(f *testing.F) {
	for _, s := range []string{
		"", " ", "Hello world", "  lead and trail  ", "\n\n\t x", "😀👩‍👩‍👧 🇩🇪 1️⃣",
		"e\u0301 a\u0301\u0302 \u00a0\u3000\u2028", "<|im_start|>user\nhi<|im_end|>", "<think>\u0338x</think>",
		"don't 'tis O'Neill's", "12345678901", "\x00\x7f\xff\xfe", "▁▁x",
	} {
		f.Add(s)
	}
	// The built-in model's vocabulary always; the llama2.c vocabularies
	// and Qwen3's byte-level BPE of the shared test models where they are
	// (the tests that check those against their references fail under
	// CI=true without them).
	sps := []*tokenizer.SentencePiece{loadBuiltin(f)}
	if haveModel("tok512.bin") {
		sps = append(sps, loadTok512(f))
	}
	if haveModel("tokenizer.bin") {
		sps = append(sps, loadTok32k(f))
	}
	var qwen *tokenizer.BPE
	var userDefined []string
	if haveModel("tokenizers/qwen3-tokenizer-random.gguf") {
		qwen = loadQwen3(f)
		for id := range qwen.VocabSize() {
			if qwen.Type(id) == tokenizer.TypeUserDefined {
				userDefined = append(userDefined, qwen.Piece(id))
			}
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		valid := utf8.ValidString(text)
		for _, sp := range sps {
			for _, o := range []tokenizer.EncodeOptions{{BOS: true}, {}} {
				ids := sp.Encode(text, o)
				got := sp.Decode(ids)
				if valid && got != text {
					t.Fatalf("SentencePiece(%d) %+v: Decode(Encode(%q)) = %q (ids %v)", sp.VocabSize(), o, text, got, ids)
				}
			}
		}
		if qwen == nil {
			return
		}
		for _, o := range []tokenizer.EncodeOptions{{}, {ParseSpecial: true}} {
			ids := qwen.Encode(text, o)
			for _, id := range ids {
				if id < 0 || id >= qwen.VocabSize() {
					t.Fatalf("BPE: id %d outside the vocabulary", id)
				}
			}
			got := qwen.DecodeSpecial(ids)
			if !valid {
				continue
			}
			if want := norm.NFC.String(text); got != want && got != nfcBetween(text, userDefined) {
				t.Fatalf("BPE %+v: Decode(Encode(%q)) = %q, want %q", o, text, got, want)
			}
		}
	})
}

// haveModel reports whether the named shared test model is there.
func haveModel(name string) bool {
	_, err := os.Stat(filepath.Join(testmodels.Dir(), name))
	return err == nil
}

// nfcBetween normalizes text to NFC piecewise, between occurrences of the
// added tokens (which the tokenizer splits out before normalizing).
func nfcBetween(text string, added []string) string {
	var b strings.Builder
	for text != "" {
		at, tok := -1, ""
		for _, a := range added {
			if i := strings.Index(text, a); i >= 0 && (at < 0 || i < at || i == at && len(a) > len(tok)) {
				at, tok = i, a
			}
		}
		if at < 0 {
			b.WriteString(norm.NFC.String(text))
			break
		}
		b.WriteString(norm.NFC.String(text[:at]))
		b.WriteString(tok)
		text = text[at+len(tok):]
	}
	return b.String()
}
