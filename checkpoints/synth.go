package checkpoints

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// synthShapes are the named shapes Synth writes: the llama2.c TinyStories
// models, and a tiny one for tests.
var synthShapes = map[string]model.Config{
	"tiny":        {Dim: 64, Hidden: 128, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 320, Context: 128},
	"stories260K": {Dim: 64, Hidden: 172, Layers: 5, Heads: 8, KVHeads: 4, Vocab: 512, Context: 512},
	"stories15M":  {Dim: 288, Hidden: 768, Layers: 6, Heads: 6, KVHeads: 6, Vocab: 32000, Context: 256},
	"stories42M":  {Dim: 512, Hidden: 1376, Layers: 8, Heads: 8, KVHeads: 8, Vocab: 32000, Context: 1024},
	"stories110M": {Dim: 768, Hidden: 2048, Layers: 12, Heads: 12, KVHeads: 12, Vocab: 32000, Context: 1024},
}

// SynthShapes lists the shape names Synth accepts, smallest first.
func SynthShapes() []string {
	names := make([]string, 0, len(synthShapes))
	for n := range synthShapes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := synthShapes[names[i]], synthShapes[names[j]]
		return a.Params() < b.Params()
	})
	return names
}

// SynthConfig returns the model config of a named shape.
func SynthConfig(shape string) (model.Config, error) {
	c, ok := synthShapes[shape]
	if !ok {
		return model.Config{}, fmt.Errorf("unknown model shape %q (known: %v)", shape, SynthShapes())
	}
	c.Arch = "llama"
	c.RopeTheta = 10000
	c.RopeStyle = kernels.RopeAdjacent
	c.NormEps = 1e-5
	c.SharedClassifier = true
	return c, nil
}

// Scales of the random weights: matrices are uniform with this standard
// deviation, norms uniform around 1 with normStd.
const (
	synthStd     = 0.02
	synthNormStd = 0.05
)

// Synth writes a GGUF "llama" model of a named shape (see SynthShapes) with
// random weights and a synthetic SentencePiece vocabulary, so that the
// file runs end to end (its text is gibberish). The same shape, dtype and
// seed always give the same bytes.
//
// Matrices are stored as dt, norms as f32, and the classifier is shared
// with the token embedding. A matrix whose row length is not a multiple of
// dt's block length (stories260K's FFN down projection, 172 wide, for
// q8_0 and q4_0) is stored as f32 instead. Tensors are generated and
// written one at a time, so memory use stays small whatever the shape.
func Synth(w io.Writer, shape string, dt kernels.DType, seed uint64) error {
	c, err := SynthConfig(shape)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if !dt.Valid() {
		return fmt.Errorf("synth: unknown dtype %d", uint8(dt))
	}
	mt, err := GGMLTypeOf(dt)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	kvs := synthMetadata(&c, shape, dt, seed)

	rng := splitmix64(seed)
	var tensors []TensorSpec
	matrix := func(name string, rows, cols int) {
		typ, d := mt, dt
		if cols%dt.BlockLen() != 0 {
			typ, d = GGMLF32, kernels.F32
		}
		tensors = append(tensors, TensorSpec{
			Name: name, Type: typ, Dims: []uint64{uint64(cols), uint64(rows)},
			Write: func(w io.Writer) error { return writeRandom(w, &rng, d, rows*cols, 0, synthStd) },
		})
	}
	norm := func(name string) {
		tensors = append(tensors, TensorSpec{
			Name: name, Type: GGMLF32, Dims: []uint64{uint64(c.Dim)},
			Write: func(w io.Writer) error { return writeRandom(w, &rng, kernels.F32, c.Dim, 1, synthNormStd) },
		})
	}
	kv := c.KVDim()
	matrix(tnEmbedding, c.Vocab, c.Dim)
	for i := 0; i < c.Layers; i++ {
		p := "blk." + strconv.Itoa(i) + "."
		norm(p + "attn_norm.weight")
		matrix(p+"attn_q.weight", c.Dim, c.Dim)
		matrix(p+"attn_k.weight", kv, c.Dim)
		matrix(p+"attn_v.weight", kv, c.Dim)
		matrix(p+"attn_output.weight", c.Dim, c.Dim)
		norm(p + "ffn_norm.weight")
		matrix(p+"ffn_gate.weight", c.Hidden, c.Dim)
		matrix(p+"ffn_down.weight", c.Dim, c.Hidden)
		matrix(p+"ffn_up.weight", c.Hidden, c.Dim)
	}
	norm(tnFinalNorm)
	if err := WriteGGUF(w, kvs, tensors); err != nil {
		return fmt.Errorf("synth %s: %w", shape, err)
	}
	return nil
}

// llama.cpp's general.file_type numbers.
var fileTypes = map[kernels.DType]uint32{kernels.F32: 0, kernels.F16: 1, kernels.Q4_0: 2, kernels.Q8_0: 7, kernels.BF16: 32}

func synthMetadata(c *model.Config, shape string, dt kernels.DType, seed uint64) []KV {
	return append([]KV{
		{"general.architecture", Str("llama")},
		{"general.name", Str(fmt.Sprintf("synthetic %s %s seed %d (random weights)", shape, dt, seed))},
		{"general.file_type", U32(fileTypes[dt])},
		{"llama.vocab_size", U32(uint32(c.Vocab))},
		{"llama.context_length", U32(uint32(c.Context))},
		{"llama.embedding_length", U32(uint32(c.Dim))},
		{"llama.block_count", U32(uint32(c.Layers))},
		{"llama.feed_forward_length", U32(uint32(c.Hidden))},
		{"llama.attention.head_count", U32(uint32(c.Heads))},
		{"llama.attention.head_count_kv", U32(uint32(c.KVHeads))},
		{"llama.rope.dimension_count", U32(uint32(c.HeadDim()))},
		{"llama.rope.freq_base", F32(c.RopeTheta)},
		{"llama.attention.layer_norm_rms_epsilon", F32(c.NormEps)},
	}, synthVocabKVs(c.Vocab)...)
}

// synthVocabKVs are the tokenizer keys of SynthVocab's vocabulary of
// size n.
func synthVocabKVs(n int) []KV {
	tokens, scores, types := SynthVocab(n)
	return []KV{
		{"tokenizer.ggml.model", Str("llama")},
		{"tokenizer.ggml.tokens", Strs(tokens)},
		{"tokenizer.ggml.scores", F32s(scores)},
		{"tokenizer.ggml.token_type", I32s(types)},
		{"tokenizer.ggml.bos_token_id", U32(1)},
		{"tokenizer.ggml.eos_token_id", U32(2)},
		{"tokenizer.ggml.unknown_token_id", U32(0)},
		{"tokenizer.ggml.add_bos_token", Bool(true)},
	}
}

// SynthVocab makes a SentencePiece-style vocabulary of n tokens (n ≥ 259):
// <unk>, <s>, </s>, the byte pieces <0x00>..<0xFF>, then "▁", the printable
// ASCII characters alone and after "▁", then lower-case letter pairs and
// triples, alone and after "▁", with scores falling by 1 per token.
func SynthVocab(n int) (tokens []string, scores []float32, types []int32) {
	tokens = make([]string, 0, n)
	types = make([]int32, 0, n)
	add := func(s string, typ int32) bool {
		if len(tokens) == n {
			return false
		}
		tokens = append(tokens, s)
		types = append(types, typ)
		return true
	}
	add("<unk>", tokenizer.TypeUnknown)
	add("<s>", tokenizer.TypeControl)
	add("</s>", tokenizer.TypeControl)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), tokenizer.TypeByte)
	}
	const sp = "\u2581"
	add(sp, tokenizer.TypeNormal)
	for ch := byte('!'); ch <= '~'; ch++ {
		add(string(ch), tokenizer.TypeNormal)
		add(sp+string(ch), tokenizer.TypeNormal)
	}
	const letters = "etaoinshrdlcumwfgypbvkjxqz" // by English frequency
	for _, a := range letters {
		for _, b := range letters {
			add(string(a)+string(b), tokenizer.TypeNormal)
			add(sp+string(a)+string(b), tokenizer.TypeNormal)
		}
	}
	for _, a := range letters {
		for _, b := range letters {
			for _, c := range letters {
				add(string(a)+string(b)+string(c), tokenizer.TypeNormal)
				if !add(sp+string(a)+string(b)+string(c), tokenizer.TypeNormal) {
					break
				}
			}
		}
	}
	// Beyond 36,000 tokens: numbered filler pieces.
	for i := 0; len(tokens) < n; i++ {
		add(fmt.Sprintf("%s<%d>", sp, i), tokenizer.TypeNormal)
	}
	scores = make([]float32, len(tokens))
	for i := range scores {
		if types[i] == tokenizer.TypeNormal {
			scores[i] = -float32(i)
		}
	}
	return tokens, scores, types
}

// splitmix64 is a tiny deterministic generator: state advances by the
// golden gamma and each output is a mix of the state.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9E3779B97F4A7C15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// uniform returns a value uniform in [-0.5, 0.5), from the top 24 bits.
func (s *splitmix64) uniform() float32 {
	return float32(int64(s.next()>>40)-1<<23) / (1 << 24)
}

// writeRandom streams n values mean + uniform noise of standard deviation
// std, stored as dt.
func writeRandom(w io.Writer, rng *splitmix64, dt kernels.DType, n int, mean, std float32) error {
	const chunk = 1 << 15 // a multiple of the block length
	scale := std * float32(math.Sqrt(12))
	vals := make([]float32, chunk)
	buf := make([]byte, 0, chunk*4)
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		for i := range vals[:k] {
			vals[i] = mean + rng.uniform()*scale
		}
		buf = kernels.Encode(buf[:0], dt, vals[:k])
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
