// Package tokenizer turns text into token ids and back for the vocabularies
// Llama-family models ship: llama2.c's tokenizer.bin, GGUF's
// SentencePiece-style "llama" model (scores, byte fallback) and GGUF's
// byte-level BPE "gpt2" model (merges and a pre-tokenizer regex, as Llama 3,
// Qwen2/3 and SmolLM use).
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
	// IsEOG reports whether generation should stop at id (EOS, end of turn
	// and similar control tokens).
	IsEOG(id int) bool
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
