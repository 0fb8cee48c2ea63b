package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// Limits on a llama2.c tokenizer file, so that a hostile file cannot make
// the reader allocate much.
const (
	maxLlama2CVocab    = 1 << 22 // ids
	maxLlama2CTokenLen = 1 << 10 // bytes per piece
)

// llama2.c's fixed ids.
const (
	llama2CUNK = 0
	llama2CBOS = 1
	llama2CEOS = 2
)

// LoadLlama2C reads a llama2.c tokenizer.bin with vocabSize entries (the
// vocabulary size comes from the model, the file does not store it).
func LoadLlama2C(path string, vocabSize int) (*SentencePiece, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := ParseLlama2C(data, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// ParseLlama2C parses a llama2.c tokenizer file: an int32 max_token_length,
// then for each of the vocabSize ids a float32 score, an int32 byte length
// and the piece's bytes, all little-endian. The file must hold exactly
// vocabSize pieces; this is how a tokenizer that does not belong to the
// model is caught. Ids 0, 1 and 2 are UNK, BOS and EOS; pieces "<0xXX>"
// are byte fallbacks.
func ParseLlama2C(data []byte, vocabSize int) (*SentencePiece, error) {
	if vocabSize < 3 || vocabSize > maxLlama2CVocab {
		return nil, fmt.Errorf("tokenizer: llama2.c vocabulary size %d is outside [3, %d]", vocabSize, maxLlama2CVocab)
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("tokenizer: llama2.c tokenizer file is %d bytes, too short for its header", len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 || maxLen > maxLlama2CTokenLen {
		return nil, fmt.Errorf("tokenizer: llama2.c max_token_length %d is outside [1, %d]", maxLen, maxLlama2CTokenLen)
	}
	// Every piece takes at least 8 bytes, which bounds the allocation by
	// the file's size whatever vocabSize says.
	capacity := min(vocabSize, (len(data)-4)/8)
	v := SPVocab{
		Tokens: make([]string, 0, capacity),
		Scores: make([]float32, 0, capacity),
		BOS:    llama2CBOS,
		EOS:    llama2CEOS,
		UNK:    llama2CUNK,
		AddBOS: true,
	}
	off := 4
	for id := 0; off < len(data); id++ {
		if id >= vocabSize {
			return nil, fmt.Errorf("tokenizer: llama2.c tokenizer has %d trailing bytes after the %d pieces the model needs (a tokenizer for another model?)", len(data)-off, vocabSize)
		}
		if len(data)-off < 8 {
			return nil, fmt.Errorf("tokenizer: llama2.c tokenizer piece %d is truncated at byte %d", id, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || n > maxLen {
			return nil, fmt.Errorf("tokenizer: llama2.c tokenizer piece %d has length %d, outside [0, max_token_length %d]", id, n, maxLen)
		}
		if int(n) > len(data)-off {
			return nil, fmt.Errorf("tokenizer: llama2.c tokenizer piece %d (length %d) runs past the end of the file", id, n)
		}
		if math.IsNaN(float64(score)) {
			return nil, fmt.Errorf("tokenizer: llama2.c tokenizer piece %d has a NaN score", id)
		}
		v.Tokens = append(v.Tokens, string(data[off:off+int(n)]))
		v.Scores = append(v.Scores, score)
		off += int(n)
	}
	if len(v.Tokens) != vocabSize {
		return nil, fmt.Errorf("tokenizer: llama2.c tokenizer has %d pieces, model needs %d", len(v.Tokens), vocabSize)
	}
	v.Types = make([]int32, vocabSize)
	for id, s := range v.Tokens {
		v.Types[id] = TypeNormal
		if _, ok := parseBytePiece(s); ok {
			v.Types[id] = TypeByte
		}
	}
	v.Types[llama2CUNK] = TypeUnknown
	v.Types[llama2CBOS] = TypeControl
	v.Types[llama2CEOS] = TypeControl
	return newSentencePiece(v, false)
}
