package checkpoints

import (
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// SynthArch writes an F32 GGUF model of config c in its architecture's
// form (ArchKVs) with random weights and Synth's vocabulary (c.Vocab must
// be at least 259), so that a block of any architecture the loader reads
// can be run without a real model. Each block holds Llama 2's nine
// tensors plus those its architecture requires (a Gemma 3 block's q/k
// norms and post-norms); the classifier is shared with the embedding, and
// q, k, v and the FFN are separate matrices (an architecture whose file
// fuses them is an error). Matrix entries are uniform with standard
// deviation 1/√cols, so that every product keeps its input's scale, and
// norms uniform around 1 (standard deviation 0.1). The same config and
// seed always give the same bytes.
func SynthArch(w io.Writer, c model.Config, name string, seed uint64) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	spec := archs[c.Arch]
	if spec.fusedQKV || spec.fusedGateUp || spec.mla || c.Experts > 0 {
		return fmt.Errorf("synth: architecture %q stores fused, latent or expert tensors, which synth does not write", c.Arch)
	}
	if c.Vocab < 259 {
		return fmt.Errorf("synth: a vocabulary of %d tokens; the synthetic one needs at least 259", c.Vocab)
	}
	kvs, err := ArchKVs(c, name)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	kvs = append(kvs, KV{"general.file_type", U32(fileTypes[kernels.F32])})
	kvs = append(kvs, synthVocabKVs(c.Vocab)...)

	rng := splitmix64(seed)
	var tensors []TensorSpec
	matrix := func(name string, rows, cols int) {
		std := float32(1 / math.Sqrt(float64(cols)))
		tensors = append(tensors, TensorSpec{
			Name: name, Type: GGMLF32, Dims: []uint64{uint64(cols), uint64(rows)},
			Write: func(w io.Writer) error { return writeRandom(w, &rng, kernels.F32, rows*cols, 0, std) },
		})
	}
	norm := func(name string, n int) {
		tensors = append(tensors, TensorSpec{
			Name: name, Type: GGMLF32, Dims: []uint64{uint64(n)},
			Write: func(w io.Writer) error { return writeRandom(w, &rng, kernels.F32, n, 1, 0.1) },
		})
	}
	// The optional vectors a block may need, by name, with their lengths.
	vecLen := map[string]int{
		"attn_q_norm.weight": c.HeadDim(), "attn_k_norm.weight": c.HeadDim(),
		"post_attention_norm.weight": c.Dim, "post_ffw_norm.weight": c.Dim,
	}
	kv := c.KVDim()
	matrix(tnEmbedding, c.Vocab, c.Dim)
	for i := range c.Layers {
		p := "blk." + strconv.Itoa(i) + "."
		norm(p+"attn_norm.weight", c.Dim)
		matrix(p+"attn_q.weight", c.QDim(), c.Dim)
		matrix(p+"attn_k.weight", kv, c.Dim)
		matrix(p+"attn_v.weight", kv, c.Dim)
		matrix(p+"attn_output.weight", c.Dim, c.Heads*c.ValueDim())
		norm(p+"ffn_norm.weight", c.Dim)
		matrix(p+"ffn_gate.weight", c.Hidden, c.Dim)
		matrix(p+"ffn_down.weight", c.Dim, c.Hidden)
		matrix(p+"ffn_up.weight", c.Hidden, c.Dim)
		for _, n := range spec.needs {
			l, ok := vecLen[n]
			if !ok {
				return fmt.Errorf("synth: a %s block needs %s, which synth does not write", c.Arch, n)
			}
			norm(p+n, l)
		}
	}
	norm(tnFinalNorm, c.Dim)
	if err := WriteGGUF(w, kvs, tensors); err != nil {
		return fmt.Errorf("synth %s: %w", c.Arch, err)
	}
	return nil
}
