package checkpoints

// Conversion of a Hugging Face tokenizer (tokenizer.json, and
// tokenizer_config.json beside it) into the GGUF tokenizer.* metadata that
// ggufTokenizer reads.
//
// Only BPE tokenizers convert, in the two families the loader implements:
//
//   - byte-level BPE (GPT-2's scheme: Llama 3, Qwen 2/2.5/3, SmolLM), whose
//     pre-tokenizer has a ByteLevel step, becomes tokenizer.ggml.model
//     "gpt2" with its merges and a tokenizer.ggml.pre named after the
//     pre-tokenizer's regular expression;
//   - SentencePiece-style BPE (Llama 2, Mistral 7B v0.1, TinyLlama), whose
//     pieces write spaces as U+2581, becomes tokenizer.ggml.model "llama",
//     with scores that make the loader's merge-the-best-scored-pair loop
//     follow the merge list.
//
// Anything the loader would tokenize differently (another model type, an
// unknown pre-tokenizer expression, normalizers it does not apply) is an
// error naming what is unsupported, never a silent approximation.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// Limits on a Hugging Face tokenizer. Real tokenizers are far inside them;
// they bound what a hostile directory can make the converter allocate.
const (
	// hftokMaxFile is the largest tokenizer.json read.
	hftokMaxFile = 64 << 20
	// hftokMaxConfig is the largest tokenizer_config.json read.
	hftokMaxConfig = 16 << 20
	// hftokMaxTemplate is the longest chat template accepted.
	hftokMaxTemplate = 1 << 20
	// hftokMaxTokenBytes is the longest token string accepted.
	hftokMaxTokenBytes = 8 << 10
	// hftokMaxTokens is the most tokens (ids, embedding rows) accepted.
	hftokMaxTokens = 1 << 22
	// hftokMaxMerges is the most merges accepted. Merge ranks become
	// float32 scores, exact up to 2^24.
	hftokMaxMerges = 1 << 22
	// hftokMaxDepth is how deeply Sequence steps may nest.
	hftokMaxDepth = 8
)

// The pre-tokenizer expressions the loader implements, verbatim as
// tokenizer.json files write them (the pattern's "Regex" of a Split step).
// They are compared as exact strings: an expression that differs in any
// character is refused rather than guessed at.
const (
	// hftokRegexLlama3 is Llama 3's expression: numbers in groups of up
	// to three digits.
	hftokRegexLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// hftokRegexQwen2 is Qwen 2's (and Qwen 2.5's and 3's) expression:
	// Llama 3's with every digit alone.
	hftokRegexQwen2 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// hftokRegexGPT2 is GPT-2's expression, the one a ByteLevel step
	// applies itself when its use_regex is true.
	hftokRegexGPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// hftokPreByRegex maps a Split step's expression to the loader's
// tokenizer.ggml.pre name.
var hftokPreByRegex = map[string]string{
	hftokRegexLlama3: "llama-bpe",
	hftokRegexQwen2:  "qwen2",
	hftokRegexGPT2:   "gpt2",
}

// ChatTemplateKey is the GGUF metadata key of a model's chat template (the
// key model/chat reads, chat.MetadataKey).
const ChatTemplateKey = "tokenizer.chat_template"

// hftokSpace is SentencePiece's visible space, U+2581.
const hftokSpace = "\u2581"

// HFTokenizerKVs reads the tokenizer of the Hugging Face model directory
// dir (tokenizer.json; tokenizer_config.json if present, and
// chat_template.jinja when that config holds no chat template) and returns
// it as GGUF tokenizer.* metadata for a model of vocab embedding rows.
// Tokens past the tokenizer's own are written as unused "[PAD<id>]"
// tokens, so the token list has exactly vocab entries; a tokenizer with
// more tokens than vocab is an error.
func HFTokenizerKVs(dir string, vocab int) ([]KV, error) {
	tok, err := readBounded(filepath.Join(dir, "tokenizer.json"), hftokMaxFile)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	cfg, err := readBounded(filepath.Join(dir, "tokenizer_config.json"), hftokMaxConfig)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	kvs, err := hfTokenizerKVs(tok, cfg, vocab)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %s: %w", dir, err)
	}
	if !slices.ContainsFunc(kvs, func(kv KV) bool { return kv.Key == ChatTemplateKey }) {
		tmpl, err := readBounded(filepath.Join(dir, "chat_template.jinja"), hftokMaxTemplate)
		switch {
		case err == nil:
			kvs = append(kvs, KV{Key: ChatTemplateKey, Value: Str(string(tmpl))})
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("checkpoints: %w", err)
		}
	}
	return kvs, nil
}

// hftokFile is the part of tokenizer.json the conversion reads.
type hftokFile struct {
	AddedTokens   []hftokAdded    `json:"added_tokens"`
	Normalizer    *hftokStep      `json:"normalizer"`
	PreTokenizer  *hftokStep      `json:"pre_tokenizer"`
	PostProcessor *hftokStep      `json:"post_processor"`
	Model         json.RawMessage `json:"model"`
}

// hftokAdded is one entry of added_tokens: a token matched in the raw text
// before the model runs.
type hftokAdded struct {
	ID      *int64 `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
}

// hftokModel is tokenizer.json's model object for model.type "BPE".
type hftokModel struct {
	Type         string      `json:"type"`
	Vocab        hftokVocab  `json:"vocab"`
	Merges       hftokMerges `json:"merges"`
	UnkToken     *string     `json:"unk_token"`
	ByteFallback bool        `json:"byte_fallback"`
}

// hftokStep is one normalizer, pre-tokenizer or post-processor step, with
// the fields of every kind the conversion understands; a Sequence holds
// its steps in Normalizers, Pretokenizers or Processors.
type hftokStep struct {
	Type          string       `json:"type"`
	Normalizers   []*hftokStep `json:"normalizers"`
	Pretokenizers []*hftokStep `json:"pretokenizers"`
	Processors    []*hftokStep `json:"processors"`
	// Pattern is what Split and Replace look for.
	Pattern struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Content          string  `json:"content"`           // Replace: the replacement
	Prepend          string  `json:"prepend"`           // Prepend
	Behavior         string  `json:"behavior"`          // Split
	Invert           bool    `json:"invert"`            // Split
	UseRegex         *bool   `json:"use_regex"`         // ByteLevel
	AddPrefixSpace   *bool   `json:"add_prefix_space"`  // ByteLevel, Metaspace
	IndividualDigits bool    `json:"individual_digits"` // Digits
	Replacement      string  `json:"replacement"`       // Metaspace
	PrependScheme    *string `json:"prepend_scheme"`    // Metaspace
	// Single is TemplateProcessing's template for one sequence.
	Single []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	} `json:"single"`
}

// hftokEntry is one token of model.vocab.
type hftokEntry struct {
	text string
	id   int64
}

// hftokVocab is model.vocab (token → id), in file order. It is read as a
// stream so that its size is checked as it grows.
type hftokVocab []hftokEntry

// UnmarshalJSON reads model.vocab, refusing more than hftokMaxTokens
// tokens, over-long tokens, and ids that are not integers.
func (v *hftokVocab) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	tok, err := d.Token()
	if err != nil {
		return fmt.Errorf("model.vocab: %w", err)
	}
	if tok == nil {
		*v = nil
		return nil
	}
	if tok != json.Delim('{') {
		return errors.New("model.vocab is not an object mapping tokens to ids")
	}
	out := hftokVocab{}
	for d.More() {
		if len(out) >= hftokMaxTokens {
			return fmt.Errorf("model.vocab has more than %d tokens", hftokMaxTokens)
		}
		k, err := d.Token()
		if err != nil {
			return fmt.Errorf("model.vocab: %w", err)
		}
		text, _ := k.(string) // object keys are always strings
		if len(text) > hftokMaxTokenBytes {
			return fmt.Errorf("model.vocab: token %.40q... is %d bytes, more than the %d accepted", text, len(text), hftokMaxTokenBytes)
		}
		val, err := d.Token()
		if err != nil {
			return fmt.Errorf("model.vocab: %w", err)
		}
		num, ok := val.(json.Number)
		if !ok {
			return fmt.Errorf("model.vocab: the id of %q is not a number", text)
		}
		id, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return fmt.Errorf("model.vocab: the id of %q is %s, not an integer", text, num)
		}
		out = append(out, hftokEntry{text: text, id: id})
	}
	*v = out
	return nil
}

// hftokMerge is one merge: the two tokens it joins.
type hftokMerge struct{ left, right string }

// hftokMerges is model.merges, highest priority first. Both of
// tokenizer.json's spellings are read: "left right" strings and
// [left, right] pairs.
type hftokMerges []hftokMerge

// UnmarshalJSON reads model.merges, refusing more than hftokMaxMerges
// merges and entries that are not two tokens.
func (m *hftokMerges) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	tok, err := d.Token()
	if err != nil {
		return fmt.Errorf("model.merges: %w", err)
	}
	if tok == nil {
		*m = nil
		return nil
	}
	if tok != json.Delim('[') {
		return errors.New("model.merges is not a list")
	}
	out := hftokMerges{}
	str := func() (string, bool) {
		t, err := d.Token()
		s, ok := t.(string)
		return s, err == nil && ok
	}
	for d.More() {
		i := len(out)
		if i >= hftokMaxMerges {
			return fmt.Errorf("model.merges has more than %d merges", hftokMaxMerges)
		}
		t, err := d.Token()
		if err != nil {
			return fmt.Errorf("model.merges[%d]: %w", i, err)
		}
		var mg hftokMerge
		switch t := t.(type) {
		case string:
			parts := strings.Split(t, " ")
			if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				return fmt.Errorf("model.merges[%d] %q is not two tokens separated by one space", i, t)
			}
			mg = hftokMerge{parts[0], parts[1]}
		case json.Delim:
			l, okL := str()
			r, okR := str()
			end, err := d.Token()
			if t != '[' || !okL || !okR || err != nil || end != json.Delim(']') {
				return fmt.Errorf("model.merges[%d] is not a pair of token strings", i)
			}
			mg = hftokMerge{l, r}
		default:
			return fmt.Errorf("model.merges[%d] is %v, neither \"left right\" nor [left, right]", i, t)
		}
		if len(mg.left)+len(mg.right) > hftokMaxTokenBytes {
			return fmt.Errorf("model.merges[%d] makes a token of %d bytes, more than the %d accepted", i, len(mg.left)+len(mg.right), hftokMaxTokenBytes)
		}
		out = append(out, mg)
	}
	*m = out
	return nil
}

// hftokConfig is the part of tokenizer_config.json the conversion reads.
type hftokConfig struct {
	BOS          json.RawMessage `json:"bos_token"`
	EOS          json.RawMessage `json:"eos_token"`
	AddBOS       *bool           `json:"add_bos_token"`
	ChatTemplate json.RawMessage `json:"chat_template"`
}

// hfTokenizerKVs converts the bytes of tokenizer.json (tok) and of
// tokenizer_config.json (cfg; nil when there is none) into GGUF tokenizer.*
// metadata for a model of vocab embedding rows. Before it returns, it
// builds the tokenizer the loader will build from the metadata, so a
// conversion that succeeds also loads.
func hfTokenizerKVs(tok, cfg []byte, vocab int) ([]KV, error) {
	if len(tok) > hftokMaxFile {
		return nil, fmt.Errorf("tokenizer.json is %d bytes, more than the %d accepted", len(tok), hftokMaxFile)
	}
	if len(cfg) > hftokMaxConfig {
		return nil, fmt.Errorf("tokenizer_config.json is %d bytes, more than the %d accepted", len(cfg), hftokMaxConfig)
	}
	if vocab <= 0 || vocab > hftokMaxTokens {
		return nil, fmt.Errorf("a model of %d embedding rows cannot take a tokenizer (1 to %d)", vocab, hftokMaxTokens)
	}
	var f hftokFile
	if err := json.Unmarshal(tok, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if len(f.Model) == 0 || string(f.Model) == "null" {
		return nil, errors.New("tokenizer.json has no model")
	}
	var kind struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(f.Model, &kind); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	if kind.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model.type %q is not supported: only BPE tokenizers convert", kind.Type)
	}
	var m hftokModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if len(f.AddedTokens) > hftokMaxTokens {
		return nil, fmt.Errorf("tokenizer.json: added_tokens has %d tokens, more than the %d accepted", len(f.AddedTokens), hftokMaxTokens)
	}
	tokens, added, err := hftokTokens(m.Vocab, f.AddedTokens)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	n := len(tokens)
	if n > vocab {
		return nil, fmt.Errorf("tokenizer.json has %d tokens but the model's embedding has only %d rows", n, vocab)
	}
	// model.vocab by text, for the merges (which name model tokens only).
	modelID := make(map[string]int, len(m.Vocab))
	for _, e := range m.Vocab {
		if _, dup := modelID[e.text]; !dup {
			modelID[e.text] = int(e.id)
		}
	}
	for i, mg := range m.Merges {
		for _, s := range []string{mg.left, mg.right, mg.left + mg.right} {
			if _, ok := modelID[s]; !ok {
				return nil, fmt.Errorf("tokenizer.json: model.merges[%d] (%q, %q) names %q, which is not in model.vocab", i, mg.left, mg.right, s)
			}
		}
	}
	norm, err := hftokFlatten(f.Normalizer, "normalizer", 0, nil)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	pre, err := hftokFlatten(f.PreTokenizer, "pre_tokenizer", 0, nil)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}

	c, err := hftokParseConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	byText := make(map[string]int, n)
	for id, a := range added {
		if a != nil {
			if _, dup := byText[a.Content]; !dup {
				byText[a.Content] = id
			}
		}
	}
	for id, s := range tokens {
		if _, dup := byText[s]; !dup {
			byText[s] = id
		}
	}
	bos, bosText, err := hftokSpecialID(c.BOS, "bos_token", byText)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	eos, _, err := hftokSpecialID(c.EOS, "eos_token", byText)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}
	addBOS, addBOSKnown := false, false
	if c.AddBOS != nil {
		addBOS, addBOSKnown = *c.AddBOS, true
	} else if bos >= 0 {
		addBOS, addBOSKnown, err = hftokTemplateAddsBOS(f.PostProcessor, bosText)
		if err != nil {
			return nil, fmt.Errorf("tokenizer.json: %w", err)
		}
	}
	tmpl, hasTmpl, err := hftokChatTemplate(c.ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %w", err)
	}

	types := make([]int32, n, vocab)
	var kvs []KV
	if slices.ContainsFunc(pre, func(s *hftokStep) bool { return s.Type == "ByteLevel" }) {
		preName, err := hftokBytePre(pre)
		if err != nil {
			return nil, fmt.Errorf("tokenizer.json: %w", err)
		}
		if err := hftokCheckByteNormalizer(norm); err != nil {
			return nil, fmt.Errorf("tokenizer.json: %w", err)
		}
		merges := make([]string, len(m.Merges))
		for i, mg := range m.Merges {
			if strings.Contains(mg.left, " ") || strings.Contains(mg.right, " ") {
				return nil, fmt.Errorf("tokenizer.json: model.merges[%d] (%q, %q) has a space inside a token, which GGUF's \"left right\" merges cannot write", i, mg.left, mg.right)
			}
			merges[i] = mg.left + " " + mg.right
		}
		for id := range tokens {
			types[id] = hftokAddedType(added[id], tokenizer.TypeNormal)
		}
		tokens, types = hftokPad(tokens, types, vocab)
		v := tokenizer.BPEVocab{Tokens: tokens, Types: types, Merges: merges, Pre: preName, BOS: bos, EOS: eos, AddBOS: addBOS}
		if _, err := tokenizer.NewBPE(v); err != nil {
			return nil, fmt.Errorf("tokenizer.json: the converted byte-level tokenizer does not load: %w", err)
		}
		kvs = []KV{
			{Key: "tokenizer.ggml.model", Value: Str("gpt2")},
			{Key: "tokenizer.ggml.pre", Value: Str(preName)},
			{Key: "tokenizer.ggml.tokens", Value: Strs(tokens)},
			{Key: "tokenizer.ggml.token_type", Value: I32s(types)},
			{Key: "tokenizer.ggml.merges", Value: Strs(merges)},
		}
	} else {
		prefix, err := hftokCheckSentencePiece(norm, pre, m.ByteFallback)
		if err != nil {
			return nil, fmt.Errorf("tokenizer.json: %w", err)
		}
		unk := -1
		if m.UnkToken != nil {
			id, ok := modelID[*m.UnkToken]
			if !ok {
				return nil, fmt.Errorf("tokenizer.json: model.unk_token %q is not in model.vocab", *m.UnkToken)
			}
			unk = id
		}
		for id, s := range tokens {
			typ := tokenizer.TypeNormal
			if added[id] == nil && hftokIsBytePiece(s) {
				typ = tokenizer.TypeByte
			}
			typ = hftokAddedType(added[id], typ)
			if id == unk {
				typ = tokenizer.TypeUnknown
			}
			types[id] = typ
		}
		// The loader merges, among adjacent symbols, the pair whose
		// concatenation is the piece of highest score. A piece made by
		// merge number r scores -r (the first such merge when several
		// make it), so pieces are formed in merge order. A piece no merge
		// makes cannot come out of Hugging Face's BPE at all; the loader
		// would still form it when two adjacent symbols spell it, so it
		// gets -len(merges), below every merged piece: it is formed only
		// once no listed merge applies. (Single characters, bytes and
		// control pieces are never the result of a merge in the loader,
		// so their score is never consulted; they get the same value.)
		floor := -float32(len(m.Merges))
		scores := make([]float32, n, vocab)
		for i := range scores {
			scores[i] = floor
		}
		scored := make([]bool, n)
		for r, mg := range m.Merges {
			id := modelID[mg.left+mg.right]
			if !scored[id] {
				scores[id], scored[id] = -float32(r), true
			}
		}
		tokens, types = hftokPad(tokens, types, vocab)
		for len(scores) < vocab {
			scores = append(scores, floor)
		}
		sv := tokenizer.SPVocab{Tokens: tokens, Scores: scores, Types: types, BOS: 1, EOS: 2, UNK: unk, AddBOS: true, NoSpacePrefix: !prefix}
		if bos >= 0 {
			sv.BOS = bos
		}
		if eos >= 0 {
			sv.EOS = eos
		}
		if addBOSKnown {
			sv.AddBOS = addBOS
		}
		if _, err := tokenizer.NewSentencePiece(sv); err != nil {
			return nil, fmt.Errorf("tokenizer.json: the converted SentencePiece tokenizer does not load: %w", err)
		}
		kvs = []KV{
			{Key: "tokenizer.ggml.model", Value: Str("llama")},
			{Key: "tokenizer.ggml.tokens", Value: Strs(tokens)},
			{Key: "tokenizer.ggml.scores", Value: F32s(scores)},
			{Key: "tokenizer.ggml.token_type", Value: I32s(types)},
		}
		if unk >= 0 {
			kvs = append(kvs, KV{Key: "tokenizer.ggml.unknown_token_id", Value: U32(uint32(unk))})
		}
		if !prefix {
			kvs = append(kvs, KV{Key: "tokenizer.ggml.add_space_prefix", Value: Bool(false)})
		}
	}
	if bos >= 0 {
		kvs = append(kvs, KV{Key: "tokenizer.ggml.bos_token_id", Value: U32(uint32(bos))})
	}
	if eos >= 0 {
		kvs = append(kvs, KV{Key: "tokenizer.ggml.eos_token_id", Value: U32(uint32(eos))})
	}
	if addBOSKnown {
		kvs = append(kvs, KV{Key: "tokenizer.ggml.add_bos_token", Value: Bool(addBOS)})
	}
	if hasTmpl {
		kvs = append(kvs, KV{Key: ChatTemplateKey, Value: Str(tmpl)})
	}
	return kvs, nil
}

// hftokTokens lays model.vocab and added_tokens out by id. The ids must
// run from 0 to n-1 with no gaps; two model tokens (or two added tokens)
// with one id are an error. An added token may take the id of a model
// token (Llama 2's <s>, GPT-2's <|endoftext|>): its content is the token's
// text. added[id] is the added token of id, nil for plain model tokens.
func hftokTokens(vocab hftokVocab, addedTokens []hftokAdded) (tokens []string, added []*hftokAdded, err error) {
	maxID := int64(-1)
	for _, e := range vocab {
		if e.id < 0 || e.id >= hftokMaxTokens {
			return nil, nil, fmt.Errorf("model.vocab: token %q has id %d, outside [0, %d)", e.text, e.id, hftokMaxTokens)
		}
		maxID = max(maxID, e.id)
	}
	for i, a := range addedTokens {
		if a.ID == nil {
			return nil, nil, fmt.Errorf("added_tokens[%d] %q has no id", i, a.Content)
		}
		if *a.ID < 0 || *a.ID >= hftokMaxTokens {
			return nil, nil, fmt.Errorf("added_tokens[%d] %q has id %d, outside [0, %d)", i, a.Content, *a.ID, hftokMaxTokens)
		}
		if len(a.Content) > hftokMaxTokenBytes {
			return nil, nil, fmt.Errorf("added_tokens[%d] is %d bytes, more than the %d accepted", i, len(a.Content), hftokMaxTokenBytes)
		}
		maxID = max(maxID, *a.ID)
	}
	if maxID < 0 {
		return nil, nil, errors.New("the tokenizer has no tokens")
	}
	n := int(maxID + 1)
	tokens = make([]string, n)
	have := make([]bool, n)
	sorted := slices.Clone(vocab)
	slices.SortFunc(sorted, func(a, b hftokEntry) int {
		if a.id != b.id {
			return int(a.id - b.id)
		}
		return strings.Compare(a.text, b.text)
	})
	for _, e := range sorted {
		if have[e.id] {
			return nil, nil, fmt.Errorf("model.vocab: id %d is given to both %q and %q", e.id, tokens[e.id], e.text)
		}
		tokens[e.id], have[e.id] = e.text, true
	}
	added = make([]*hftokAdded, n)
	for i := range addedTokens {
		a := &addedTokens[i]
		id := *a.ID
		if added[id] != nil {
			return nil, nil, fmt.Errorf("added_tokens: id %d is given to both %q and %q", id, added[id].Content, a.Content)
		}
		added[id] = a
		tokens[id], have[id] = a.Content, true
	}
	if gap := slices.Index(have, false); gap >= 0 {
		return nil, nil, fmt.Errorf("id %d has no token: ids must run from 0 to %d without gaps", gap, n-1)
	}
	return tokens, added, nil
}

// hftokAddedType is the GGUF type of a token: typ for a model token (a
// nil a); control for a special added token, or for one that is not marked
// special but is spelt like a control token ("<|...|>", as llama.cpp's
// converter also decides, so Qwen's <|fim_prefix|> and its kind are not
// matched in plain text); user-defined for the other added tokens.
func hftokAddedType(a *hftokAdded, typ int32) int32 {
	switch {
	case a == nil:
		return typ
	case a.Special || hftokLooksControl(a.Content):
		return tokenizer.TypeControl
	}
	return tokenizer.TypeUserDefined
}

// hftokLooksControl reports whether s is spelt like a control token:
// "<|...|>", or the same with full-width bars.
func hftokLooksControl(s string) bool {
	for _, bars := range [][2]string{{"<|", "|>"}, {"<\uff5c", "\uff5c>"}} {
		if len(s) >= len(bars[0])+len(bars[1]) && strings.HasPrefix(s, bars[0]) && strings.HasSuffix(s, bars[1]) {
			return true
		}
	}
	return false
}

// hftokIsBytePiece reports whether s is a byte-fallback piece "<0xXX>".
func hftokIsBytePiece(s string) bool {
	if len(s) != 6 || !strings.HasPrefix(s, "<0x") || s[5] != '>' {
		return false
	}
	_, err := strconv.ParseUint(s[3:5], 16, 8)
	return err == nil
}

// hftokPad extends tokens and types to vocab entries with unused
// "[PAD<id>]" tokens, as the rows of a model's embedding past its
// tokenizer's tokens are written.
func hftokPad(tokens []string, types []int32, vocab int) ([]string, []int32) {
	tokens = slices.Grow(tokens, vocab-len(tokens))
	for id := len(tokens); id < vocab; id++ {
		tokens = append(tokens, "[PAD"+strconv.Itoa(id)+"]")
		types = append(types, tokenizer.TypeUnused)
	}
	return tokens, types
}

// hftokFlatten appends the steps of s to out, expanding Sequence steps.
// what names the step list in errors.
func hftokFlatten(s *hftokStep, what string, depth int, out []*hftokStep) ([]*hftokStep, error) {
	if s == nil {
		return out, nil
	}
	if s.Type != "Sequence" {
		return append(out, s), nil
	}
	if depth >= hftokMaxDepth {
		return nil, fmt.Errorf("%s: Sequence steps nested deeper than %d", what, hftokMaxDepth)
	}
	var err error
	for _, list := range [][]*hftokStep{s.Normalizers, s.Pretokenizers, s.Processors} {
		for _, c := range list {
			if out, err = hftokFlatten(c, what, depth+1, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// hftokStepNames lists the types of steps, for error messages.
func hftokStepNames(steps []*hftokStep) string {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Type
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// hftokBytePre names the loader's pre-tokenizer for the steps of a
// byte-level tokenizer's pre_tokenizer. The shapes understood are:
// ByteLevel alone (GPT-2's own expression), Split(expression) then
// ByteLevel without its expression (Llama 3, Qwen 2), and Digits(each
// digit alone) then ByteLevel with its expression (SmolLM).
func hftokBytePre(steps []*hftokStep) (string, error) {
	last := steps[len(steps)-1]
	if last.Type != "ByteLevel" {
		return "", fmt.Errorf("pre_tokenizer %s: ByteLevel must be the last step", hftokStepNames(steps))
	}
	if last.AddPrefixSpace != nil && *last.AddPrefixSpace {
		return "", errors.New("pre_tokenizer: ByteLevel with add_prefix_space true is not supported (the loader puts no space before the text)")
	}
	useRegex := last.UseRegex == nil || *last.UseRegex
	switch {
	case len(steps) == 1 && useRegex:
		return "gpt2", nil
	case len(steps) == 2 && steps[0].Type == "Split" && !useRegex:
		s := steps[0]
		if s.Pattern.Regex == nil {
			return "", errors.New("pre_tokenizer: a Split step without a Regex pattern is not supported")
		}
		if s.Behavior != "Isolated" || s.Invert {
			return "", fmt.Errorf("pre_tokenizer: a Split step with behavior %q and invert %v is not supported (want Isolated, false)", s.Behavior, s.Invert)
		}
		name, ok := hftokPreByRegex[*s.Pattern.Regex]
		if !ok {
			return "", fmt.Errorf("pre_tokenizer: the Split expression %q is not one the loader implements (Llama 3's, Qwen 2's or GPT-2's)", *s.Pattern.Regex)
		}
		return name, nil
	case len(steps) == 2 && steps[0].Type == "Digits" && steps[0].IndividualDigits && useRegex:
		return "smollm", nil
	}
	return "", fmt.Errorf("pre_tokenizer %s (ByteLevel use_regex %v) is not a shape the loader implements", hftokStepNames(steps), useRegex)
}

// hftokCheckByteNormalizer accepts the normalizers a byte-level tokenizer
// may have: none, or NFC, which the loader always applies.
func hftokCheckByteNormalizer(steps []*hftokStep) error {
	for _, s := range steps {
		if s.Type != "NFC" {
			return fmt.Errorf("normalizer %s: %s is not supported for a byte-level tokenizer (only NFC)", hftokStepNames(steps), s.Type)
		}
	}
	return nil
}

// hftokCheckSentencePiece checks that a tokenizer without a ByteLevel step
// encodes as the loader's SentencePiece encoder does: spaces written as
// U+2581 by a normalizer (Replace) or a Metaspace pre-tokenizer, and says
// whether one is put before the text (a Prepend normalizer, or Metaspace's
// prepend scheme; Gemma's tokenizers put none).
func hftokCheckSentencePiece(norm, pre []*hftokStep, byteFallback bool) (bool, error) {
	spaces, prefix := false, false
	for _, s := range norm {
		switch {
		case s.Type == "Prepend" && s.Prepend == hftokSpace:
			prefix = true
		case s.Type == "Replace" && s.Pattern.String != nil && *s.Pattern.String == " " && s.Content == hftokSpace:
			spaces = true
		default:
			return false, fmt.Errorf("normalizer %s: %s is not supported for a SentencePiece-style tokenizer (only Prepend and Replace of spaces with %q)", hftokStepNames(norm), s.Type, hftokSpace)
		}
	}
	for _, s := range pre {
		if s.Type != "Metaspace" || s.Replacement != hftokSpace {
			if !byteFallback && !spaces {
				return false, fmt.Errorf("pre_tokenizer %s has no ByteLevel step and the tokenizer is not SentencePiece-style either: not supported", hftokStepNames(pre))
			}
			return false, fmt.Errorf("pre_tokenizer %s: %s is not supported for a SentencePiece-style tokenizer (only Metaspace with %q)", hftokStepNames(pre), s.Type, hftokSpace)
		}
		spaces = true
		switch {
		case s.PrependScheme != nil:
			prefix = prefix || *s.PrependScheme != "never"
		case s.AddPrefixSpace != nil:
			prefix = prefix || *s.AddPrefixSpace
		default:
			prefix = true
		}
	}
	if !spaces && !byteFallback {
		return false, errors.New("the tokenizer has no ByteLevel pre-tokenizer and does not write spaces as U+2581: neither a byte-level nor a SentencePiece-style BPE")
	}
	if !spaces {
		return false, fmt.Errorf("a SentencePiece-style tokenizer must write spaces as %q, as the loader does (normalizer %s, pre_tokenizer %s)", hftokSpace, hftokStepNames(norm), hftokStepNames(pre))
	}
	return prefix, nil
}

// hftokTemplateAddsBOS reports whether the post-processor's template for
// one sequence starts with the token bos, and whether there is such a
// template at all (TemplateProcessing, alone or in a Sequence).
func hftokTemplateAddsBOS(p *hftokStep, bos string) (adds, known bool, err error) {
	steps, err := hftokFlatten(p, "post_processor", 0, nil)
	if err != nil {
		return false, false, err
	}
	for _, s := range steps {
		if s.Type != "TemplateProcessing" {
			continue
		}
		first := len(s.Single) > 0 && s.Single[0].SpecialToken != nil && s.Single[0].SpecialToken.ID == bos
		return first, true, nil
	}
	return false, false, nil
}

// hftokParseConfig parses tokenizer_config.json; empty cfg is a config
// that sets nothing.
func hftokParseConfig(cfg []byte) (hftokConfig, error) {
	var c hftokConfig
	if len(cfg) == 0 {
		return c, nil
	}
	err := json.Unmarshal(cfg, &c)
	return c, err
}

// hftokSpecialID finds the id of a special token named in
// tokenizer_config.json (key): a string, an object with its "content",
// or null or absent (-1). A token that is not in the vocabulary is an
// error.
func hftokSpecialID(raw json.RawMessage, key string, byText map[string]int) (int, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return -1, "", nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		var obj struct {
			Content *string `json:"content"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
			return 0, "", fmt.Errorf("%s is neither a string nor an object with a content", key)
		}
		text = *obj.Content
	}
	id, ok := byText[text]
	if !ok {
		return 0, "", fmt.Errorf("%s %q is not a token of tokenizer.json", key, text)
	}
	return id, text, nil
}

// hftokChatTemplate reads tokenizer_config.json's chat_template: a
// string, or a list of {name, template} from which the one named
// "default" is taken (as Hugging Face does when no name is asked for).
func hftokChatTemplate(raw json.RawMessage) (string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	var tmpl string
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		var list []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return "", false, errors.New("chat_template is neither a string nor a list of {name, template}")
		}
		names := make([]string, len(list))
		found := false
		for i, t := range list {
			names[i] = t.Name
			if t.Name == "default" && !found {
				tmpl, found = t.Template, true
			}
		}
		if !found {
			return "", false, fmt.Errorf("chat_template lists templates %q but none named \"default\"", names)
		}
	}
	if len(tmpl) > hftokMaxTemplate {
		return "", false, fmt.Errorf("chat_template is %d bytes, more than the %d accepted", len(tmpl), hftokMaxTemplate)
	}
	return tmpl, true, nil
}
