package checkpoints

import (
	"fmt"
	"io"
	"strings"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// LlamaKVs is the GGUF metadata of a "llama" model of config c: the
// architecture, the name (when not empty) and the llama.* shape keys. Only
// the adjacent rotary layout has a llama GGUF form.
func LlamaKVs(c model.Config, name string) ([]KV, error) {
	if c.RopeStyle != kernels.RopeAdjacent {
		return nil, fmt.Errorf("checkpoints: rope style %s has no llama GGUF form", c.RopeStyle)
	}
	kvs := []KV{{Key: "general.architecture", Value: Str("llama")}}
	if name != "" {
		kvs = append(kvs, KV{Key: "general.name", Value: Str(name)})
	}
	return append(kvs, []KV{
		{Key: "llama.vocab_size", Value: U32(uint32(c.Vocab))},
		{Key: "llama.context_length", Value: U32(uint32(c.Context))},
		{Key: "llama.embedding_length", Value: U32(uint32(c.Dim))},
		{Key: "llama.block_count", Value: U32(uint32(c.Layers))},
		{Key: "llama.feed_forward_length", Value: U32(uint32(c.Hidden))},
		{Key: "llama.attention.head_count", Value: U32(uint32(c.Heads))},
		{Key: "llama.attention.head_count_kv", Value: U32(uint32(c.KVHeads))},
		{Key: "llama.rope.dimension_count", Value: U32(uint32(c.HeadDim()))},
		{Key: "llama.rope.freq_base", Value: F32(c.RopeTheta)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: F32(c.NormEps)},
	}...), nil
}

// TokenizerKVs is the tokenizer.* metadata of a model: that of given, a
// SentencePiece vocabulary (llama2.c keeps its own outside the checkpoint),
// or else the source GGUF's own entries; nil when there is neither.
func TokenizerKVs(src *Model, given tokenizer.Tokenizer) ([]KV, error) {
	if given != nil {
		sp, ok := given.(*tokenizer.SentencePiece)
		if !ok {
			return nil, fmt.Errorf("checkpoints: only a SentencePiece tokenizer can be given separately, not %T", given)
		}
		return sentencePieceKVs(sp), nil
	}
	var kvs []KV
	if src != nil && src.GGUF != nil {
		for _, kv := range src.GGUF.KVs {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				kvs = append(kvs, kv)
			}
		}
	}
	return kvs, nil
}

// sentencePieceKVs writes a SentencePiece vocabulary as GGUF's "llama"
// tokenizer: spaces as U+2581, llama2.c's "\n<s>\n" and "\n</s>\n" as the
// plain control pieces.
func sentencePieceKVs(sp *tokenizer.SentencePiece) []KV {
	n := sp.VocabSize()
	tokens := make([]string, n)
	scores := make([]float32, n)
	types := make([]int32, n)
	for i := 0; i < n; i++ {
		p := sp.Piece(i)
		switch {
		case i == sp.BOS():
			p = "<s>"
		case i == sp.EOS():
			p = "</s>"
		default:
			p = strings.ReplaceAll(p, " ", "\u2581")
		}
		tokens[i], scores[i], types[i] = p, sp.Score(i), sp.Type(i)
	}
	kvs := []KV{
		{Key: "tokenizer.ggml.model", Value: Str("llama")},
		{Key: "tokenizer.ggml.tokens", Value: Strs(tokens)},
		{Key: "tokenizer.ggml.scores", Value: F32s(scores)},
		{Key: "tokenizer.ggml.token_type", Value: I32s(types)},
		{Key: "tokenizer.ggml.add_bos_token", Value: Bool(sp.AddBOS())},
	}
	if !sp.SpacePrefix() {
		kvs = append(kvs, KV{Key: "tokenizer.ggml.add_space_prefix", Value: Bool(false)})
	}
	for _, id := range []struct {
		key string
		v   int
	}{{"tokenizer.ggml.bos_token_id", sp.BOS()}, {"tokenizer.ggml.eos_token_id", sp.EOS()}} {
		if id.v >= 0 {
			kvs = append(kvs, KV{Key: id.key, Value: U32(uint32(id.v))})
		}
	}
	return kvs
}

// MatrixDims are a matrix's GGUF dimensions, innermost first: [Cols, Rows].
func MatrixDims(m *kernels.Matrix) []uint64 { return []uint64{uint64(m.Cols), uint64(m.Rows)} }

// WriteWeights writes w, a whole model, as a "llama" GGUF file with the
// metadata kvs (LlamaKVs and TokenizerKVs, typically) and the tensors under
// llama.cpp's names, each in its stored type; a classifier shared with the
// embedding is written once.
func WriteWeights(out io.Writer, w *model.Weights, kvs []KV) error {
	c := &w.Config
	if w.Embedding == nil || w.FinalNorm == nil || w.Output == nil || !w.HasLayers(0, c.Layers) {
		return fmt.Errorf("checkpoints: write %d-layer model: not every part is here", c.Layers)
	}
	if c.Arch != "" && c.Arch != "llama" {
		return fmt.Errorf("checkpoints: write model: architecture %s cannot be written (only llama can)", c.Arch)
	}
	for i, l := range w.Layers {
		if l.BQ != nil || l.BK != nil || l.BV != nil || l.QNorm != nil || l.KNorm != nil || l.PostAttnNorm != nil || l.PostFFNNorm != nil {
			return fmt.Errorf("checkpoints: write model: layer %d has biases or extra norms, which the llama writer does not write", i)
		}
		if l.Experts != nil {
			return fmt.Errorf("checkpoints: write model: layer %d has routed experts, which the llama writer does not write", i)
		}
	}
	var specs []TensorSpec
	addMat := func(name string, m *kernels.Matrix) error {
		gt, err := GGMLTypeOf(m.Type)
		if err != nil {
			return fmt.Errorf("checkpoints: tensor %s: %w", name, err)
		}
		specs = append(specs, TensorSpec{Name: name, Type: gt, Dims: MatrixDims(m), Data: m.Data})
		return nil
	}
	addVec := func(name string, v []float32) {
		specs = append(specs, TensorSpec{Name: name, Type: GGMLF32, Dims: []uint64{uint64(len(v))}, Data: kernels.F32Bytes(v)})
	}
	if err := addMat("token_embd.weight", w.Embedding); err != nil {
		return err
	}
	if w.RopeFreqs != nil {
		addVec(tnRopeFreqs, w.RopeFreqs)
	}
	for i, l := range w.Layers {
		b := fmt.Sprintf("blk.%d.", i)
		addVec(b+"attn_norm.weight", l.AttnNorm)
		for _, t := range []struct {
			name string
			m    *kernels.Matrix
		}{{"attn_q", l.Wq}, {"attn_k", l.Wk}, {"attn_v", l.Wv}, {"attn_output", l.Wo}} {
			if err := addMat(b+t.name+".weight", t.m); err != nil {
				return err
			}
		}
		addVec(b+"ffn_norm.weight", l.FFNNorm)
		for _, t := range []struct {
			name string
			m    *kernels.Matrix
		}{{"ffn_gate", l.W1}, {"ffn_down", l.W2}, {"ffn_up", l.W3}} {
			if err := addMat(b+t.name+".weight", t.m); err != nil {
				return err
			}
		}
	}
	addVec("output_norm.weight", w.FinalNorm)
	if w.Output != w.Embedding {
		if err := addMat("output.weight", w.Output); err != nil {
			return err
		}
	}
	return WriteGGUF(out, kvs, specs)
}

// ConvertWeights returns w with every matrix in type dt, except those
// whose rows do not fill whole blocks of a block-quantized dt, which keep
// their type (as GGUF tools do). Matrices already in dt are shared, not
// copied; norms are shared.
func ConvertWeights(w *model.Weights, dt kernels.DType) (*model.Weights, error) {
	var err error
	conv := func(m *kernels.Matrix) *kernels.Matrix {
		if m == nil || err != nil || m.Type == dt || (dt.Quantized() && m.Cols%kernels.QK != 0) {
			return m
		}
		row := make([]float32, m.Cols)
		var data []byte
		for r := range m.Rows {
			kernels.Decode(row, m.Type, m.Row(r))
			data = kernels.Encode(data, dt, row)
		}
		var out *kernels.Matrix
		out, err = kernels.NewMatrix(dt, m.Rows, m.Cols, data)
		return out
	}
	out := *w
	out.SetCloser(nil)
	out.Embedding = conv(w.Embedding)
	out.Output = out.Embedding
	if w.Output != w.Embedding {
		out.Output = conv(w.Output)
	}
	out.Layers = make([]*model.Layer, len(w.Layers))
	for i, l := range w.Layers {
		if l == nil {
			continue
		}
		c := *l
		c.Wq, c.Wk, c.Wv, c.Wo, c.W1, c.W2, c.W3 = conv(l.Wq), conv(l.Wk), conv(l.Wv), conv(l.Wo), conv(l.W1), conv(l.W2), conv(l.W3)
		if x := l.Experts; x != nil {
			// The router stays as it is, as GGUF tools keep it.
			cx := &model.Experts{Router: x.Router, Bias: x.Bias,
				SharedGate: conv(x.SharedGate), SharedUp: conv(x.SharedUp), SharedDown: conv(x.SharedDown)}
			for i := range x.Gate {
				cx.Gate = append(cx.Gate, conv(x.Gate[i]))
				cx.Up = append(cx.Up, conv(x.Up[i]))
				cx.Down = append(cx.Down, conv(x.Down[i]))
			}
			c.Experts = cx
		}
		if a := l.MLA; a != nil {
			c.MLA = &model.MLA{QA: conv(a.QA), QANorm: a.QANorm, QB: conv(a.QB), KVA: conv(a.KVA), KVANorm: a.KVANorm, KVB: conv(a.KVB)}
		}
		out.Layers[i] = &c
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints: convert to %s: %w", dt, err)
	}
	return &out, nil
}
