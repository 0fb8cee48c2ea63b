package tokenizer_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// benchText is about 4 KB of English prose.
var benchText = func() string {
	var b strings.Builder
	for b.Len() < 4096 {
		b.WriteString(storyText)
		b.WriteString(" \"Hello, little boy,\" Lily said. \"What are you doing?\"\n")
	}
	return b.String()[:4096]
}()

// uniqueWords is about 4 KB of random lower-case words, so that a word
// cache rarely hits.
func uniqueWords(seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 7))
	var b strings.Builder
	for b.Len() < 4096 {
		b.WriteByte(' ')
		for range 3 + rng.IntN(8) {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
	}
	return b.String()
}

func benchEncode(b *testing.B, tok tokenizer.Tokenizer, text string) {
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text, tokenizer.EncodeOptions{BOS: true})
	}
}

func BenchmarkEncode(b *testing.B) {
	b.Run("tok512/4KB", func(b *testing.B) { benchEncode(b, loadTok512(b), benchText) })
	b.Run("llama2-32k/4KB", func(b *testing.B) { benchEncode(b, loadTok32k(b), benchText) })
	b.Run("qwen3/4KB", func(b *testing.B) { benchEncode(b, loadQwen3(b), benchText) })
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = uniqueWords(uint64(i))
	}
	random := func(b *testing.B, tok tokenizer.Tokenizer) {
		b.SetBytes(4096)
		i := 0
		for b.Loop() {
			tok.Encode(texts[i%len(texts)], tokenizer.EncodeOptions{})
			i++
		}
	}
	b.Run("llama2-32k/4KB-random-words", func(b *testing.B) { random(b, loadTok32k(b)) })
	b.Run("qwen3/4KB-random-words", func(b *testing.B) { random(b, loadQwen3(b)) })
}

func BenchmarkDecode(b *testing.B) {
	tok := loadQwen3(b)
	ids := tok.Encode(benchText, tokenizer.EncodeOptions{})
	b.SetBytes(int64(len(benchText)))
	for b.Loop() {
		d := tok.NewDecoder()
		for _, id := range ids {
			d.Next(id)
		}
		d.Flush()
	}
}
