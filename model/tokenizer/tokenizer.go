// Package tokenizer turns text into token ids and back for the vocabularies
// Llama-family models ship: llama2.c's tokenizer.bin, GGUF's
// SentencePiece-style "llama" model (scores, byte fallback) and GGUF's
// byte-level BPE "gpt2" model (merges and a pre-tokenizer regex, as Llama 3,
// Qwen2/3 and SmolLM use).
//
// # SentencePiece
//
// [SentencePiece] (from [LoadLlama2C], [ParseLlama2C] or [NewSentencePiece])
// prepends a space to the text (the dummy prefix; again after each added
// token matched in the text), makes one symbol per UTF-8 code point that is
// a piece and one byte-fallback symbol ("<0xXX>") per byte of any other code
// point, and then merges the adjacent pair whose concatenation is the
// highest-scoring piece, leftmost first, until no pair is a piece. Candidate
// merges sit in a heap, so this costs O(n log n). When no piece has a space
// after another character (true of the Llama 2 and TinyStories
// vocabularies), no merge can cross the start of a run of spaces, so the text
// is cut there and each word is encoded alone and cached.
//
// # Byte-level BPE
//
// [BPE] (from [NewBPE]) first splits out added tokens: user-defined ones
// always, control ones such as "<|im_start|>" only with
// [EncodeOptions].ParseSpecial, the longest at each position. The text
// between them is normalized to NFC and cut into words by the pre-tokenizer
// named in the vocabulary ("qwen2", "llama-bpe", "gpt2"/"default",
// "smollm"): hand-written scanners equivalent to the models' regular
// expressions, which need a lookahead Go's regexp lacks. Each word's bytes
// are then merged by merge rank, lowest first, leftmost on ties; results are
// cached per word.
//
// # Decoding
//
// Decode and the streaming [Decoder] map ids back to bytes. Control tokens
// print nothing unless asked (DecodeSpecial, [Decoder].ShowControl). For
// SentencePiece, "▁" is a space, byte pieces are bytes, and the space that
// opens the first piece after the start or after BOS (or any control token)
// is dropped, undoing the dummy prefix. Bytes that do not form valid UTF-8
// become U+FFFD, one per maximal ill-formed subpart (the WHATWG rule); the
// streaming decoder holds back a sequence that later byte pieces may still
// complete. To decode generated ids in context, prime a decoder with the
// prompt ids.
//
// All tokenizers are safe for concurrent use; a Decoder is not.
package tokenizer

// EncodeOptions control Encode.
type EncodeOptions struct {
	// BOS prepends the beginning-of-sequence id (if the vocab has one).
	BOS bool
	// ParseSpecial matches control tokens such as "<|im_start|>" written in
	// the text. User-defined added tokens are always matched.
	ParseSpecial bool
}

// Tokenizer is a model's vocabulary with its encoding algorithm.
// Implementations are safe for concurrent use.
type Tokenizer interface {
	// Encode converts text to ids.
	Encode(text string, o EncodeOptions) []int
	// Decode converts ids to text, leaving out control tokens. Byte pieces
	// that do not form valid UTF-8 become U+FFFD.
	Decode(ids []int) string
	// NewDecoder returns a streaming decoder.
	NewDecoder() *Decoder
	// Piece is the stored vocabulary string of id.
	Piece(id int) string
	// VocabSize is the number of ids.
	VocabSize() int
	// BOS and EOS are the beginning and end of sequence ids, -1 if none.
	BOS() int
	EOS() int
	// AddBOS is the model's default for EncodeOptions.BOS.
	AddBOS() bool
	// IsEOG reports whether id is EOS, an end of turn or a similar
	// control token. StopRule is the whole rule that ends a generation.
	IsEOG(id int) bool
}

// StopRule returns the rule that ends a generation with t, for
// model.GenerateOptions.Stop: a generated id ends it when IsEOG says so
// (EOS, the GGUF's tokenizer.ggml.eos_token_id, end of text or of a turn)
// or when it is BOS, which a model only produces to begin another text
// (the TinyStories models end a story so, as llama2.c's run.c knows).
// With ignoreEOS it returns nil: nothing ends the generation before its
// token budget.
func StopRule(t Tokenizer, ignoreEOS bool) func(id int) bool {
	if ignoreEOS {
		return nil
	}
	bos := t.BOS()
	return func(id int) bool { return t.IsEOG(id) || (bos >= 0 && id == bos) }
}

// Token types, as GGUF's tokenizer.ggml.token_type stores them.
const (
	TypeNormal      int32 = 1
	TypeUnknown     int32 = 2
	TypeControl     int32 = 3
	TypeUserDefined int32 = 4
	TypeUnused      int32 = 5
	TypeByte        int32 = 6
)

// SPVocab is a SentencePiece-style vocabulary (GGUF tokenizer.ggml.model
// "llama", and llama2.c's tokenizer.bin).
type SPVocab struct {
	// Tokens are the pieces. Spaces may be written as U+2581 ("▁"), as
	// GGUF stores them, or as real spaces, as llama2.c stores them.
	Tokens []string
	Scores []float32
	// Types holds one token type per token; nil means all normal except
	// the byte pieces <0x00>..<0xFF>, which are recognized by name.
	Types         []int32
	BOS, EOS, UNK int // -1 where absent
	AddBOS        bool
	// NoSpacePrefix leaves out the space SentencePiece puts before the
	// text and after each added token (GGUF tokenizer.ggml.add_space_prefix
	// false: Gemma's tokenizers).
	NoSpacePrefix bool
}

// BPEVocab is a byte-level BPE vocabulary (GGUF tokenizer.ggml.model
// "gpt2").
type BPEVocab struct {
	// Tokens are in GPT-2's byte-to-unicode alphabet ("Ġ" is a space).
	Tokens []string
	Types  []int32
	// Merges are "left right" pairs, highest priority first.
	Merges []string
	// Pre names the pre-tokenizer (GGUF tokenizer.ggml.pre), such as
	// "qwen2", "llama-bpe" or "gpt2".
	Pre    string
	BOS    int // -1 where absent
	EOS    int
	AddBOS bool
}
