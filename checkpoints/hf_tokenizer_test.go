package checkpoints

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// hfJSON marshals v, failing the test on error.
func hfJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// ggufOfKVs writes kvs as a GGUF file without tensors and parses it back,
// the way a converted model's metadata reaches the loader.
func ggufOfKVs(tb testing.TB, kvs []KV) *GGUF {
	tb.Helper()
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, kvs, nil); err != nil {
		tb.Fatal(err)
	}
	g, err := ParseGGUF(buf.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// tokenizerOfKVs builds the tokenizer the loader builds from kvs.
func tokenizerOfKVs(tb testing.TB, kvs []KV) (*GGUF, tokenizer.Tokenizer) {
	tb.Helper()
	g := ggufOfKVs(tb, kvs)
	tk, err := ggufTokenizer(g)
	if err != nil {
		tb.Fatal(err)
	}
	if tk == nil {
		tb.Fatal("the converted metadata has no tokenizer")
	}
	return g, tk
}

// writeHFDir writes tokenizer.json and, when cfg is not nil,
// tokenizer_config.json into a new directory, and returns it.
func writeHFDir(tb testing.TB, tok, cfg []byte) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		tb.Fatal(err)
	}
	if cfg != nil {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// hfByteLevelPre is a Hugging Face byte-level pre-tokenizer: a Split on
// regex, then ByteLevel without its own expression (Llama 3's and Qwen
// 2's layout).
func hfByteLevelPre(regex string) map[string]any {
	return map[string]any{
		"type": "Sequence",
		"pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": regex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		},
	}
}

// TestHFTokenizerByteLevelQwen3 writes Qwen3's real tokenizer (from the
// test GGUF and its reference) as Hugging Face lays it out, converts it
// back, and checks that the result equals the GGUF's own tokenizer and
// encodes the reference strings to the reference ids.
func TestHFTokenizerByteLevelQwen3(t *testing.T) {
	src, err := OpenGGUF(testmodels.Path(t, "tokenizers/qwen3-tokenizer-random.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tokens, err := src.Strings("tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	types, err := src.Int32s("tokenizer.ggml.token_type")
	if err != nil {
		t.Fatal(err)
	}
	merges, err := src.Strings("tokenizer.ggml.merges")
	if err != nil {
		t.Fatal(err)
	}
	srcPre, err := src.String("tokenizer.ggml.pre")
	if err != nil {
		t.Fatal(err)
	}
	refData, err := os.ReadFile(testmodels.Path(t, "tokenizers/qwen3-tokenizer-reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Tokenizer struct {
			BaseVocab int    `json:"base_vocab_size"`
			Regex     string `json:"pre_tokenizer_split_regex"`
			Added     []struct {
				ID      int    `json:"id"`
				Content string `json:"content"`
				Special bool   `json:"special"`
			} `json:"added_tokens"`
		} `json:"tokenizer"`
		Cases []struct {
			Name             string `json:"name"`
			Text             string `json:"text"`
			IDs              []int  `json:"ids"`
			IDsControlAsText []int  `json:"ids_control_as_text"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(refData, &ref); err != nil {
		t.Fatal(err)
	}
	base := ref.Tokenizer.BaseVocab
	if base != 151643 || len(ref.Tokenizer.Added) != 26 || len(ref.Cases) != 49 {
		t.Fatalf("reference: base %d, %d added tokens, %d cases", base, len(ref.Tokenizer.Added), len(ref.Cases))
	}

	// tokenizer.json as Qwen publishes it: the base vocabulary in the
	// model, the rest as added tokens, merges as [left, right] pairs.
	vocab := make(map[string]int, base)
	for id, s := range tokens[:base] {
		vocab[s] = id
	}
	pairs := make([][2]string, len(merges))
	for i, m := range merges {
		l, r, _ := strings.Cut(m, " ")
		pairs[i] = [2]string{l, r}
	}
	added := make([]map[string]any, len(ref.Tokenizer.Added))
	for i, a := range ref.Tokenizer.Added {
		added[i] = map[string]any{"id": a.ID, "content": a.Content, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": a.Special}
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
	tok := hfJSON(t, map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     map[string]any{"type": "NFC"},
		"pre_tokenizer":  hfByteLevelPre(ref.Tokenizer.Regex),
		"post_processor": byteLevel,
		"decoder":        byteLevel,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": pairs},
	})
	const template = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
	cfg := hfJSON(t, map[string]any{"add_bos_token": false, "add_prefix_space": false, "bos_token": nil,
		"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": template,
		"model_max_length": 131072, "tokenizer_class": "Qwen2Tokenizer"})

	kvs, err := HFTokenizerKVs(writeHFDir(t, tok, cfg), len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	g, tk := tokenizerOfKVs(t, kvs)
	str := func(key string) string {
		s, err := g.String(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if m := str("tokenizer.ggml.model"); m != "gpt2" {
		t.Errorf("tokenizer.ggml.model = %q, want gpt2", m)
	}
	if p := str("tokenizer.ggml.pre"); p != srcPre || p != "qwen2" {
		t.Errorf("tokenizer.ggml.pre = %q, want %q", p, srcPre)
	}
	if ChatTemplateKey != chat.MetadataKey {
		t.Fatalf("ChatTemplateKey %q, model/chat reads %q", ChatTemplateKey, chat.MetadataKey)
	}
	if s := str(chat.MetadataKey); s != template {
		t.Errorf("chat template = %q", s)
	}
	gotTokens, _ := g.Strings("tokenizer.ggml.tokens")
	gotTypes, _ := g.Int32s("tokenizer.ggml.token_type")
	gotMerges, _ := g.Strings("tokenizer.ggml.merges")
	if !slices.Equal(gotTokens, tokens) {
		t.Error("tokens differ from the GGUF's")
	}
	if !slices.Equal(gotTypes, types) {
		for id := range min(len(gotTypes), len(types)) {
			if gotTypes[id] != types[id] {
				t.Errorf("token %d %q: type %d, the GGUF has %d", id, tokens[id], gotTypes[id], types[id])
			}
		}
		t.Fatalf("token types differ (%d and %d entries)", len(gotTypes), len(types))
	}
	if !slices.Equal(gotMerges, merges) {
		t.Error("merges differ from the GGUF's")
	}
	if eos, err := g.Uint("tokenizer.ggml.eos_token_id"); err != nil || eos != 151645 {
		t.Errorf("eos_token_id = %d, %v; want 151645", eos, err)
	}
	if _, ok := g.Get("tokenizer.ggml.bos_token_id"); ok {
		t.Error("bos_token_id written for a null bos_token")
	}
	if tk.AddBOS() {
		t.Error("add_bos_token is true")
	}
	for _, c := range ref.Cases {
		if got := tk.Encode(c.Text, tokenizer.EncodeOptions{ParseSpecial: true}); !slices.Equal(got, c.IDs) {
			t.Errorf("%s: ids\n got  %v\n want %v", c.Name, got, c.IDs)
		}
		if got := tk.Encode(c.Text, tokenizer.EncodeOptions{}); !slices.Equal(got, c.IDsControlAsText) {
			t.Errorf("%s: ids_control_as_text\n got  %v\n want %v", c.Name, got, c.IDsControlAsText)
		}
	}
}

// spTokenizerJSON writes a SentencePiece vocabulary (pieces with U+2581,
// scores, GGUF types) as a Hugging Face tokenizer.json in Llama 2's
// layout. The merges come from the scores: for each normal piece of two
// or more characters, from the best score down, one merge of two normal
// pieces that spell it, the split whose worse part scores best (single
// characters counting as best of all).
func spTokenizerJSON(tb testing.TB, tokens []string, scores []float32, types []int32) []byte {
	tb.Helper()
	vocab := make(map[string]int, len(tokens))
	normal := map[string]int{}
	var added []map[string]any
	unk := ""
	for id, s := range tokens {
		vocab[s] = id
		switch types[id] {
		case tokenizer.TypeNormal:
			normal[s] = id
		case tokenizer.TypeUnknown, tokenizer.TypeControl:
			added = append(added, map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false,
				"rstrip": false, "normalized": false, "special": true})
			if types[id] == tokenizer.TypeUnknown {
				unk = s
			}
		}
	}
	rank := func(s string) float64 {
		if utf8.RuneCountInString(s) == 1 {
			return math.Inf(1)
		}
		return float64(scores[normal[s]])
	}
	var order []int
	for s, id := range normal {
		if utf8.RuneCountInString(s) >= 2 {
			order = append(order, id)
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if scores[a] != scores[b] {
			return scores[a] > scores[b]
		}
		return a < b
	})
	var merges []string
	for _, id := range order {
		s := tokens[id]
		best, bestAt := math.Inf(-1), -1
		for i := range s {
			if i == 0 {
				continue
			}
			_, okL := normal[s[:i]]
			_, okR := normal[s[i:]]
			if okL && okR {
				if r := min(rank(s[:i]), rank(s[i:])); r > best {
					best, bestAt = r, i
				}
			}
		}
		if bestAt > 0 {
			merges = append(merges, s[:bestAt]+" "+s[bestAt:])
		}
	}
	var unkToken any
	if unk != "" {
		unkToken = unk
	}
	return hfJSON(tb, map[string]any{
		"version":      "1.0",
		"added_tokens": added,
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "\u2581"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "\u2581"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			}},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": unkToken, "fuse_unk": true,
			"byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges},
	})
}

// TestHFTokenizerSentencePiece turns real SentencePiece vocabularies (the
// 512-token one of stories260K and Llama 2's 32000 tokens) into Llama 2
// style tokenizer.json files with merges, converts them back, and checks
// that the result encodes like the original.
func TestHFTokenizerSentencePiece(t *testing.T) {
	texts := []string{
		"Once upon a time, there was a little girl named Lily.",
		"Lily wanted to go on a walk. She saw 3 big boxes, 12 red balls and 1,024 cats!",
		"Line one\nLine two\n\n  indented\ttab\r\nend",
		"café ☕ naïve — «quotes» 日本語 Ελληνικά",
		"  leading and trailing spaces  ",
		"Hello<s>world</s><unk>",
		"x",
		"",
		strings.Repeat("The quick brown fox jumps over the lazy dog; ", 20),
	}
	for _, name := range []string{"stories260K.gguf", "llama-2-tiny-random.gguf"} {
		t.Run(name, func(t *testing.T) {
			src, err := OpenGGUF(testmodels.Path(t, name))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			orig, err := ggufTokenizer(src)
			if err != nil {
				t.Fatal(err)
			}
			tokens, err := src.Strings("tokenizer.ggml.tokens")
			if err != nil {
				t.Fatal(err)
			}
			scores, err := src.Float32s("tokenizer.ggml.scores")
			if err != nil {
				t.Fatal(err)
			}
			types, err := src.Int32s("tokenizer.ggml.token_type")
			if err != nil {
				t.Fatal(err)
			}
			tok := spTokenizerJSON(t, tokens, scores, types)
			cfg := hfJSON(t, map[string]any{
				"add_bos_token": true, "add_eos_token": false, "legacy": true, "unk_token": "<unk>",
				"bos_token": map[string]any{"__type": "AddedToken", "content": "<s>", "lstrip": false,
					"normalized": false, "rstrip": false, "single_word": false},
				"eos_token": "</s>",
				"chat_template": []any{
					map[string]any{"name": "tool_use", "template": "tools"},
					map[string]any{"name": "default", "template": "{{ bos_token }}"},
				},
			})
			kvs, err := hfTokenizerKVs(tok, cfg, len(tokens))
			if err != nil {
				t.Fatal(err)
			}
			g, conv := tokenizerOfKVs(t, kvs)
			if m, _ := g.String("tokenizer.ggml.model"); m != "llama" {
				t.Errorf("tokenizer.ggml.model = %q, want llama", m)
			}
			gotTokens, _ := g.Strings("tokenizer.ggml.tokens")
			gotTypes, _ := g.Int32s("tokenizer.ggml.token_type")
			if !slices.Equal(gotTokens, tokens) {
				t.Error("tokens differ from the GGUF's")
			}
			if !slices.Equal(gotTypes, types) {
				t.Errorf("token types differ from the GGUF's")
			}
			for _, key := range []string{"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"} {
				a, errA := src.Uint(key)
				b, errB := g.Uint(key)
				if errA != nil || errB != nil || a != b {
					t.Errorf("%s = %d (%v), the GGUF has %d (%v)", key, b, errB, a, errA)
				}
			}
			if !conv.AddBOS() {
				t.Error("add_bos_token is false")
			}
			if s, _ := g.String(chat.MetadataKey); s != "{{ bos_token }}" {
				t.Errorf("chat template = %q, want the default one", s)
			}
			for _, text := range texts {
				for _, o := range []tokenizer.EncodeOptions{{BOS: true}, {BOS: true, ParseSpecial: true}, {}} {
					want := orig.Encode(text, o)
					if got := conv.Encode(text, o); !slices.Equal(got, want) {
						t.Errorf("%q %+v:\n got  %v\n want %v", text, o, got, want)
					}
				}
			}
		})
	}
}

// gpt2Alphabet is GPT-2's byte-to-unicode map: printable Latin-1 bytes
// stand for themselves, the others for U+0100 onward in byte order.
func gpt2Alphabet() [256]string {
	var a [256]string
	next := rune(256)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			a[b] = string(rune(b))
		} else {
			a[b] = string(next)
			next++
		}
	}
	return a
}

// tinyByteLevel is a small byte-level tokenizer.json as a map, for tests
// to change: the 256 byte tokens (ids 0-255), "Ġt" (256), "he" (257) and
// "Ġthe" (258) with their merges, the control token <|endoftext|> (259)
// and the user-defined token <think> (260); a Qwen 2 pre-tokenizer.
func tinyByteLevel() map[string]any {
	vocab := map[string]any{}
	for b, s := range gpt2Alphabet() {
		vocab[s] = b
	}
	vocab["Ġt"], vocab["he"], vocab["Ġthe"] = 256, 257, 258
	return map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 259, "content": "<|endoftext|>", "special": true},
			map[string]any{"id": 260, "content": "<think>", "special": false},
		},
		"normalizer":    map[string]any{"type": "NFC"},
		"pre_tokenizer": hfByteLevelPre(hftokRegexQwen2),
		"model": map[string]any{"type": "BPE", "vocab": vocab,
			"merges": []any{"Ġ t", []any{"h", "e"}, "Ġt he"}},
	}
}

// tinySentencePiece is a small SentencePiece-style tokenizer.json as a
// map: <unk>, <s>, </s>, the 256 byte pieces, then "▁", "a", "b", "▁a",
// "ab", "▁ab" with merges for the last three.
func tinySentencePiece() map[string]any {
	vocab := map[string]any{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab["<0x"+strings.ToUpper(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]))+">"] = 3 + b
	}
	for i, s := range []string{"▁", "a", "b", "▁a", "ab", "▁ab"} {
		vocab[s] = 259 + i
	}
	return map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true},
			map[string]any{"id": 1, "content": "<s>", "special": true},
			map[string]any{"id": 2, "content": "</s>", "special": true},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "vocab": vocab,
			"merges": []any{"▁ a", "a b", "▁a b"}},
	}
}

// modelOf is the model object of a tokenizer.json map.
func modelOf(m map[string]any) map[string]any { return m["model"].(map[string]any) }

// TestHFTokenizerByteLevelSmall checks the byte-level conversion's parts
// on a small vocabulary: types, merges, padding, the pre-tokenizer chosen
// for each layout, and what tokenizer_config.json sets.
func TestHFTokenizerByteLevelSmall(t *testing.T) {
	tok := hfJSON(t, tinyByteLevel())
	kvs, err := hfTokenizerKVs(tok, nil, 264)
	if err != nil {
		t.Fatal(err)
	}
	g, tk := tokenizerOfKVs(t, kvs)
	tokens, _ := g.Strings("tokenizer.ggml.tokens")
	types, _ := g.Int32s("tokenizer.ggml.token_type")
	merges, _ := g.Strings("tokenizer.ggml.merges")
	if len(tokens) != 264 || len(types) != 264 {
		t.Fatalf("%d tokens and %d types, want 264", len(tokens), len(types))
	}
	if tokens[259] != "<|endoftext|>" || types[259] != tokenizer.TypeControl || tokens[260] != "<think>" || types[260] != tokenizer.TypeUserDefined {
		t.Errorf("added tokens: %q %d, %q %d", tokens[259], types[259], tokens[260], types[260])
	}
	if tokens[258] != "Ġthe" || types[258] != tokenizer.TypeNormal {
		t.Errorf("token 258 = %q type %d", tokens[258], types[258])
	}
	for id := 261; id < 264; id++ {
		if want := fmt.Sprintf("[PAD%d]", id); tokens[id] != want || types[id] != tokenizer.TypeUnused {
			t.Errorf("token %d = %q type %d, want %q type 5", id, tokens[id], types[id], want)
		}
	}
	if !slices.Equal(merges, []string{"Ġ t", "h e", "Ġt he"}) {
		t.Errorf("merges = %q", merges)
	}
	for _, key := range []string{"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token", chat.MetadataKey} {
		if _, ok := g.Get(key); ok {
			t.Errorf("%s written without a tokenizer_config.json", key)
		}
	}
	if got := tk.Encode(" the<think> the<|endoftext|>", tokenizer.EncodeOptions{ParseSpecial: true}); !slices.Equal(got, []int{258, 260, 258, 259}) {
		t.Errorf("encode = %v, want [258 260 258 259]", got)
	}

	// The pre-tokenizer is named after the layout of pre_tokenizer.
	for _, c := range []struct {
		name string
		pre  any
		want string
	}{
		{"llama3", hfByteLevelPre(hftokRegexLlama3), "llama-bpe"},
		{"qwen2", hfByteLevelPre(hftokRegexQwen2), "qwen2"},
		{"gpt2 split", hfByteLevelPre(hftokRegexGPT2), "gpt2"},
		{"gpt2", map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "gpt2"},
		{"smollm", map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Digits", "individual_digits": true},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		}}, "smollm"},
	} {
		m := tinyByteLevel()
		m["pre_tokenizer"] = c.pre
		kvs, err := hfTokenizerKVs(hfJSON(t, m), nil, 261)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if pre, _ := ggufOfKVs(t, kvs).String("tokenizer.ggml.pre"); pre != c.want {
			t.Errorf("%s: pre = %q, want %q", c.name, pre, c.want)
		}
	}

	// BOS: from tokenizer_config.json, added by the post-processor's
	// template unless add_bos_token says otherwise.
	m := tinyByteLevel()
	m["post_processor"] = map[string]any{"type": "Sequence", "processors": []any{
		map[string]any{"type": "ByteLevel"},
		map[string]any{"type": "TemplateProcessing", "single": []any{
			map[string]any{"SpecialToken": map[string]any{"id": "<|endoftext|>", "type_id": 0}},
			map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
		}},
	}}
	tok = hfJSON(t, m)
	for _, c := range []struct {
		cfg  string
		want bool
	}{
		{`{"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|endoftext|>"}`, true},
		{`{"bos_token": "<|endoftext|>", "add_bos_token": false}`, false},
	} {
		kvs, err := hfTokenizerKVs(tok, []byte(c.cfg), 261)
		if err != nil {
			t.Fatalf("%s: %v", c.cfg, err)
		}
		_, tk := tokenizerOfKVs(t, kvs)
		if tk.BOS() != 259 || tk.AddBOS() != c.want {
			t.Errorf("%s: BOS %d, AddBOS %v; want 259, %v", c.cfg, tk.BOS(), tk.AddBOS(), c.want)
		}
	}
}

// TestHFTokenizerSentencePieceSmall checks the scores of a small
// SentencePiece-style conversion: a piece made by merge r scores -r, the
// others score below every merged piece.
func TestHFTokenizerSentencePieceSmall(t *testing.T) {
	kvs, err := hfTokenizerKVs(hfJSON(t, tinySentencePiece()), []byte(`{"bos_token": "<s>", "eos_token": "</s>"}`), 265)
	if err != nil {
		t.Fatal(err)
	}
	g, tk := tokenizerOfKVs(t, kvs)
	scores, _ := g.Float32s("tokenizer.ggml.scores")
	types, _ := g.Int32s("tokenizer.ggml.token_type")
	if len(scores) != 265 {
		t.Fatalf("%d scores", len(scores))
	}
	if scores[262] != 0 || scores[263] != -1 || scores[264] != -2 || scores[259] != -3 || scores[260] != -3 {
		t.Errorf("scores of ▁ a b ▁a ab ▁ab = %v", scores[259:])
	}
	if types[0] != tokenizer.TypeUnknown || types[1] != tokenizer.TypeControl || types[3] != tokenizer.TypeByte || types[259] != tokenizer.TypeNormal {
		t.Errorf("types %v", types[:4])
	}
	// "▁a" (merge 0) comes before "ab" (merge 1), so both words are
	// "▁a" then "▁ab"; "c" falls back to its byte.
	if got := tk.Encode("ab abc", tokenizer.EncodeOptions{BOS: true}); !slices.Equal(got, []int{1, 264, 264, 3 + 'c'}) {
		t.Errorf("encode = %v", got)
	}
	if _, ok := g.Get("tokenizer.ggml.add_space_prefix"); ok {
		t.Error("add_space_prefix written for a tokenizer that puts a space before the text")
	}

	// Gemma's layout: spaces replaced, none put before the text. The
	// first word is "ab", not "▁ab", and decoding keeps the text's own
	// leading space.
	noPrefix := tinySentencePiece()
	noPrefix["normalizer"] = map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}
	kvs, err = hfTokenizerKVs(hfJSON(t, noPrefix), []byte(`{"bos_token": "<s>", "eos_token": "</s>"}`), 265)
	if err != nil {
		t.Fatal(err)
	}
	g, tk = tokenizerOfKVs(t, kvs)
	if b, err := g.Bool("tokenizer.ggml.add_space_prefix"); err != nil || b {
		t.Errorf("add_space_prefix = %v, %v; want false", b, err)
	}
	ids := tk.Encode("ab abc", tokenizer.EncodeOptions{})
	if !slices.Equal(ids, []int{263, 264, 3 + 'c'}) {
		t.Errorf("encode without the space prefix = %v", ids)
	}
	if got := tk.Decode(tk.Encode(" ab", tokenizer.EncodeOptions{})); got != " ab" {
		t.Errorf("decode(encode(\" ab\")) = %q", got)
	}
}

// TestHFTokenizerKVsDir reads a model directory: a chat_template.jinja
// stands in for a config without a chat template, and a missing
// tokenizer.json is an error naming it.
func TestHFTokenizerKVsDir(t *testing.T) {
	dir := writeHFDir(t, hfJSON(t, tinyByteLevel()), nil)
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("{{ messages }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	kvs, err := HFTokenizerKVs(dir, 261)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := ggufOfKVs(t, kvs).String(chat.MetadataKey); s != "{{ messages }}" {
		t.Errorf("chat template = %q", s)
	}
	if _, err := HFTokenizerKVs(t.TempDir(), 261); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("missing tokenizer.json: %v", err)
	}
}

// TestHFTokenizerErrors: each bad input is refused with an error naming
// what is wrong.
func TestHFTokenizerErrors(t *testing.T) {
	bl := func(change func(m map[string]any)) []byte {
		m := tinyByteLevel()
		change(m)
		return hfJSON(t, m)
	}
	sp := func(change func(m map[string]any)) []byte {
		m := tinySentencePiece()
		change(m)
		return hfJSON(t, m)
	}
	good := bl(func(map[string]any) {})
	for _, c := range []struct {
		name  string
		tok   []byte
		cfg   string
		vocab int
		want  string
	}{
		{"not json", []byte("{not json"), "", 261, "tokenizer.json"},
		{"no model", []byte(`{"added_tokens": []}`), "", 261, "no model"},
		{"unigram", []byte(`{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}`), "", 261, `"Unigram"`},
		{"wordpiece", []byte(`{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`), "", 261, `"WordPiece"`},
		{"vocab not an object", []byte(`{"model": {"type": "BPE", "vocab": [1, 2]}}`), "", 261, "model.vocab"},
		{"fractional id", []byte(`{"model": {"type": "BPE", "vocab": {"a": 1.5}}}`), "", 261, `"a"`},
		{"merge of an unknown token", bl(func(m map[string]any) {
			modelOf(m)["merges"] = []any{"Ġ t", "zz q"}
		}), "", 261, `"zz"`},
		{"merge of three tokens", bl(func(m map[string]any) {
			modelOf(m)["merges"] = []any{"Ġ t h"}
		}), "", 261, "model.merges[0]"},
		{"merge pair of one token", bl(func(m map[string]any) {
			modelOf(m)["merges"] = []any{[]any{"h"}}
		}), "", 261, "model.merges[0]"},
		{"duplicate id", bl(func(m map[string]any) {
			modelOf(m)["vocab"].(map[string]any)["dup"] = 5
		}), "", 261, "id 5 is given to both"},
		{"duplicate added id", bl(func(m map[string]any) {
			m["added_tokens"] = append(m["added_tokens"].([]any), map[string]any{"id": 259, "content": "<x>", "special": true})
		}), "", 261, "added_tokens: id 259"},
		{"gap", bl(func(m map[string]any) {
			modelOf(m)["vocab"].(map[string]any)["far"] = 300
		}), "", 301, "id 261 has no token"},
		{"negative id", bl(func(m map[string]any) {
			modelOf(m)["vocab"].(map[string]any)["neg"] = -1
		}), "", 261, `"neg" has id -1`},
		{"added token without id", bl(func(m map[string]any) {
			m["added_tokens"] = []any{map[string]any{"content": "<x>"}}
		}), "", 261, "has no id"},
		{"fewer rows than tokens", good, "", 100, "only 100 rows"},
		{"no rows", good, "", 0, "0 embedding rows"},
		{"unknown regex", bl(func(m map[string]any) {
			m["pre_tokenizer"] = hfByteLevelPre(`\w+|\s+`)
		}), "", 261, `"\\w+|\\s+"`},
		{"split then byte-level regex", bl(func(m map[string]any) {
			pre := hfByteLevelPre(hftokRegexQwen2)
			pre["pretokenizers"].([]any)[1].(map[string]any)["use_regex"] = true
			m["pre_tokenizer"] = pre
		}), "", 261, "not a shape"},
		{"prefix space", bl(func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true}
		}), "", 261, "add_prefix_space"},
		{"lowercase", bl(func(m map[string]any) {
			m["normalizer"] = map[string]any{"type": "Lowercase"}
		}), "", 261, "Lowercase"},
		{"missing byte", bl(func(m map[string]any) {
			v := modelOf(m)["vocab"].(map[string]any)
			delete(v, "Ā")
			v["Āx"] = 0
		}), "", 261, "byte 0x00"},
		{"deep sequence", bl(func(m map[string]any) {
			pre := any(map[string]any{"type": "ByteLevel"})
			for range 20 {
				pre = map[string]any{"type": "Sequence", "pretokenizers": []any{pre}}
			}
			m["pre_tokenizer"] = pre
		}), "", 261, "nested deeper"},
		{"config not json", good, "{", 261, "tokenizer_config.json"},
		{"unknown bos", good, `{"bos_token": "<nope>"}`, 261, `"<nope>"`},
		{"bos of another kind", good, `{"bos_token": 7}`, 261, "bos_token"},
		{"add_bos not a bool", good, `{"add_bos_token": "yes"}`, 261, "tokenizer_config.json"},
		{"no default template", good, `{"chat_template": [{"name": "rag", "template": "x"}]}`, 261, `none named "default"`},
		{"template of another kind", good, `{"chat_template": 3}`, 261, "chat_template"},
		{"sentencepiece unknown normalizer", sp(func(m map[string]any) {
			m["normalizer"] = map[string]any{"type": "NFKC"}
		}), "", 265, "NFKC"},
		{"sentencepiece unknown unk", sp(func(m map[string]any) {
			modelOf(m)["unk_token"] = "<?>"
		}), "", 265, `"<?>"`},
		{"neither family", sp(func(m map[string]any) {
			delete(m, "normalizer")
			modelOf(m)["byte_fallback"] = false
		}), "", 265, "neither"},
		{"token too long", bl(func(m map[string]any) {
			modelOf(m)["vocab"].(map[string]any)[strings.Repeat("a", hftokMaxTokenBytes+1)] = 261
		}), "", 262, "bytes"},
	} {
		var cfg []byte
		if c.cfg != "" {
			cfg = []byte(c.cfg)
		}
		kvs, err := hfTokenizerKVs(c.tok, cfg, c.vocab)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if kvs != nil {
			t.Errorf("%s: metadata with the error", c.name)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
		}
	}
}

// FuzzHFTokenizer converts arbitrary tokenizer.json and
// tokenizer_config.json bytes: it must not panic, and a conversion that
// succeeds gives exactly vocab tokens and loads.
func FuzzHFTokenizer(f *testing.F) {
	f.Add(hfJSON(f, tinyByteLevel()), []byte(`{"bos_token": "<|endoftext|>", "add_bos_token": true, "chat_template": "x"}`), uint16(261))
	f.Add(hfJSON(f, tinyByteLevel()), []byte(nil), uint16(300))
	f.Add(hfJSON(f, tinySentencePiece()), []byte(`{"bos_token": {"content": "<s>"}, "eos_token": "</s>"}`), uint16(265))
	f.Add(hfJSON(f, tinySentencePiece()), []byte(`{"chat_template": [{"name": "default", "template": "t"}]}`), uint16(270))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`), []byte(`{}`), uint16(1))
	f.Add([]byte(`{"model": {"type": "Unigram"}}`), []byte(nil), uint16(8))
	f.Fuzz(func(t *testing.T, tok, cfg []byte, rows uint16) {
		vocab := int(rows % 2048)
		kvs, err := hfTokenizerKVs(tok, cfg, vocab)
		if err != nil {
			if kvs != nil {
				t.Fatal("metadata with an error")
			}
			return
		}
		g, tk := tokenizerOfKVs(t, kvs)
		tokens, err := g.Strings("tokenizer.ggml.tokens")
		if err != nil {
			t.Fatal(err)
		}
		if len(tokens) != vocab || tk.VocabSize() != vocab {
			t.Fatalf("%d tokens, tokenizer of %d, for %d rows", len(tokens), tk.VocabSize(), vocab)
		}
	})
}
