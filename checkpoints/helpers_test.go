package checkpoints

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// microConfig is a model small enough for fuzz seeds.
var microConfig = model.Config{Arch: "llama", Dim: 32, Hidden: 64, Layers: 1, Heads: 2, KVHeads: 1, Vocab: 8, Context: 16,
	RopeTheta: 10000, RopeStyle: kernels.RopeAdjacent, NormEps: 1e-5, SharedClassifier: true}

// llama2cTensors returns the f32 arrays of a llama2.c model in the v0
// order (without freq_cis): embedding, rms_att, wq, wk, wv, wo, rms_ffn,
// w1, w2, w3, rms_final, and the classifier if unshared.
func llama2cTensors(c model.Config, seed uint64) (names []string, vals [][]float32) {
	rng := splitmix64(seed)
	d, h, kv, L, V := c.Dim, c.Hidden, c.KVDim(), c.Layers, c.Vocab
	add := func(name string, n int, norm bool) {
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.uniform() * 0.1
			if norm {
				v[i] += 1
			}
		}
		names, vals = append(names, name), append(vals, v)
	}
	add("emb", V*d, false)
	add("rms_att", L*d, true)
	add("wq", L*d*d, false)
	add("wk", L*kv*d, false)
	add("wv", L*kv*d, false)
	add("wo", L*d*d, false)
	add("rms_ffn", L*d, true)
	add("w1", L*h*d, false)
	add("w2", L*d*h, false)
	add("w3", L*h*d, false)
	add("rms_final", d, true)
	if !c.SharedClassifier {
		add("wcls", V*d, false)
	}
	return names, vals
}

func appendF32(b []byte, v []float32) []byte {
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func llama2cHeader(c model.Config, negVocab bool) []byte {
	v := int32(c.Vocab)
	if negVocab {
		v = -v
	}
	var b []byte
	for _, x := range []int32{int32(c.Dim), int32(c.Hidden), int32(c.Layers), int32(c.Heads), int32(c.KVHeads), v, int32(c.Context)} {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// makeLlama2C writes a llama2.c file of version 0, 1 or 2 (group size 32).
func makeLlama2C(t testing.TB, c model.Config, version int, seed uint64) []byte {
	names, vals := llama2cTensors(c, seed)
	byName := map[string][]float32{}
	for i, n := range names {
		byName[n] = vals[i]
	}
	var b []byte
	if version == 0 {
		b = llama2cHeader(c, !c.SharedClassifier)
		for i, n := range names {
			if n == "wcls" {
				b = appendF32(b, make([]float32, c.Context*c.HeadDim())) // freq_cis
			}
			b = appendF32(b, vals[i])
		}
		if c.SharedClassifier {
			b = appendF32(b, make([]float32, c.Context*c.HeadDim()))
		}
		return b
	}
	b = binary.LittleEndian.AppendUint32(b, ak42Magic)
	b = binary.LittleEndian.AppendUint32(b, uint32(version))
	b = append(b, llama2cHeader(c, false)...)
	if c.SharedClassifier {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	if version == 2 {
		b = binary.LittleEndian.AppendUint32(b, 32)
	}
	b = append(b, make([]byte, ak42HeaderBytes-len(b))...)
	for _, n := range []string{"rms_att", "rms_ffn", "rms_final"} {
		b = appendF32(b, byName[n])
	}
	order := []string{"emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"}
	if !c.SharedClassifier {
		order = append(order, "wcls")
	}
	for _, n := range order {
		v := byName[n]
		if version == 1 {
			b = appendF32(b, v)
			continue
		}
		per := len(v) / c.Layers
		if n == "emb" || n == "wcls" {
			per = len(v)
		}
		for s := 0; s < len(v); s += per {
			x := v[s : s+per]
			scales := make([]float32, len(x)/32)
			q := make([]byte, len(x))
			for g := range scales {
				var amax float32
				for _, y := range x[32*g : 32*g+32] {
					amax = max(amax, float32(math.Abs(float64(y))))
				}
				scales[g] = amax / 127
				for j := 32 * g; j < 32*g+32; j++ {
					if scales[g] != 0 {
						q[j] = byte(int8(math.Round(float64(x[j] / scales[g]))))
					}
				}
			}
			b = append(b, q...)
			b = appendF32(b, scales)
		}
	}
	return b
}

// nanoConfig is smaller still; its tensors are only f32-compatible for
// GGUF (rows of 16) but fit llama2.c v2's groups of 32.
var nanoConfig = model.Config{Arch: "llama", Dim: 16, Hidden: 32, Layers: 1, Heads: 2, KVHeads: 1, Vocab: 8, Context: 8,
	RopeTheta: 10000, RopeStyle: kernels.RopeAdjacent, NormEps: 1e-5, SharedClassifier: true}

// microGGUF writes a tiny llama GGUF with a tokenizer.
func microGGUF(t testing.TB, dt kernels.DType) []byte { return smallGGUF(t, microConfig, dt) }

// smallGGUF writes a llama GGUF of config c (vocab 8) with a tokenizer.
func smallGGUF(t testing.TB, c model.Config, dt kernels.DType) []byte {
	mt, _ := GGMLTypeOf(dt)
	rng := splitmix64(3)
	var tensors []TensorSpec
	mat := func(name string, rows, cols int) {
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = rng.uniform()
		}
		tensors = append(tensors, TensorSpec{Name: name, Type: mt, Dims: []uint64{uint64(cols), uint64(rows)}, Data: kernels.Encode(nil, dt, v)})
	}
	norm := func(name string) {
		v := make([]float32, c.Dim)
		for i := range v {
			v[i] = 1
		}
		tensors = append(tensors, TensorSpec{Name: name, Type: GGMLF32, Dims: []uint64{uint64(c.Dim)}, Data: kernels.Encode(nil, kernels.F32, v)})
	}
	mat("token_embd.weight", c.Vocab, c.Dim)
	norm("blk.0.attn_norm.weight")
	mat("blk.0.attn_q.weight", c.Dim, c.Dim)
	mat("blk.0.attn_k.weight", c.KVDim(), c.Dim)
	mat("blk.0.attn_v.weight", c.KVDim(), c.Dim)
	mat("blk.0.attn_output.weight", c.Dim, c.Dim)
	norm("blk.0.ffn_norm.weight")
	mat("blk.0.ffn_gate.weight", c.Hidden, c.Dim)
	mat("blk.0.ffn_down.weight", c.Dim, c.Hidden)
	mat("blk.0.ffn_up.weight", c.Hidden, c.Dim)
	norm("output_norm.weight")
	kvs := []KV{
		{"general.architecture", Str("llama")},
		{"llama.context_length", U32(uint32(c.Context))},
		{"llama.embedding_length", U32(uint32(c.Dim))},
		{"llama.block_count", U32(uint32(c.Layers))},
		{"llama.feed_forward_length", U32(uint32(c.Hidden))},
		{"llama.attention.head_count", U32(uint32(c.Heads))},
		{"llama.attention.head_count_kv", U32(uint32(c.KVHeads))},
		{"tokenizer.ggml.model", Str("llama")},
		{"tokenizer.ggml.tokens", Strs([]string{"<unk>", "<s>", "</s>", "a", "b", "\u2581", "\u2581a", "ab"})},
		{"tokenizer.ggml.scores", F32s([]float32{0, 0, 0, -1, -2, -3, -4, -5})},
		{"tokenizer.ggml.token_type", I32s([]int32{2, 3, 3, 1, 1, 1, 1, 1})},
	}
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
