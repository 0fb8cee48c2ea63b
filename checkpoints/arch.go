package checkpoints

import (
	"math"
	"slices"
	"strings"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// archSpec is what a GGUF architecture's block does beyond Llama 2's that
// its keys and tensor names do not say by themselves. The rest is read
// from the file: the shape and rope keys under "<arch>.", the soft-caps
// and the sliding window when their keys are there, and each optional
// tensor of a block (q/k/v biases, q/k norms, post-norms, rope_freqs)
// when it is present.
type archSpec struct {
	rope kernels.RopeStyle
	act  model.Activation
	// embedScale scales the token embeddings by √Dim.
	embedScale bool
	// slidingEvery is Config.SlidingEvery for a file with a sliding
	// window: the layers come in groups of slidingEvery, all sliding but
	// the last of each (2: alternating, layer 0 sliding; 6: five sliding
	// layers, then a global one).
	slidingEvery int
	// ropeLocalTheta is Config.RopeLocalTheta for a file with a sliding
	// window: the sliding layers' own rotary base, which no key gives.
	ropeLocalTheta float32
	// queryScale, when not nil, gives Config.QueryScale from the rest of
	// the config (0 for 1/√key_length), where the architecture scales
	// queries otherwise and no key says so.
	queryScale func(c *model.Config) float32
	// needs are the tensors every block of the architecture holds (after
	// "blk.N."), beyond those the loader always requires.
	needs []string
	// fusedQKV: q, k and v are one matrix, attn_qkv; fusedGateUp: the
	// gate and the up projection are one, ffn_up, gate first.
	fusedQKV, fusedGateUp bool
	// expertNorm is Config.ExpertNorm unless the file's
	// <arch>.expert_weights_norm key says otherwise: the chosen experts'
	// weights renormalised to sum to 1 (Mixtral's softmax over the chosen
	// experts; Qwen3-MoE's normalised top-k). Experts themselves are read
	// from the file: <arch>.expert_count and a block's ffn_gate_inp.
	expertNorm bool
	// mla: latent attention (attn_q_a/attn_q_b or attn_q, attn_kv_a_mqa,
	// attn_kv_b), with heads of key_length and value_length, the last
	// rope.dimension_count of each rotated, and YaRN when the file's
	// rope.scaling.type says so (its attention factor in the query scale).
	mla bool
}

// archs are the architectures this runtime runs, by general.architecture.
var archs = map[string]archSpec{
	"llama":     {rope: kernels.RopeAdjacent, expertNorm: true},
	"qwen3moe":  {rope: kernels.RopeNeoX, expertNorm: true},
	"deepseek2": {rope: kernels.RopeAdjacent, mla: true},
	"qwen2":     {rope: kernels.RopeNeoX},
	"qwen3":     {rope: kernels.RopeNeoX},
	"gemma2":    {rope: kernels.RopeNeoX, act: model.ActGELU, embedScale: true, slidingEvery: 2, queryScale: gemmaQueryScale(46)},
	"phi3":      {rope: kernels.RopeNeoX, fusedQKV: true, fusedGateUp: true},
	// Gemma 3: Gemma 2's block with q/k norms in place of the soft-caps,
	// five sliding-window layers (rotary base 10000) to each global one
	// (the file's base and linear scaling), and heads of key_length.
	"gemma3": {rope: kernels.RopeNeoX, act: model.ActGELU, embedScale: true, slidingEvery: 6, ropeLocalTheta: 10000,
		queryScale: gemmaQueryScale(62),
		needs:      []string{"attn_q_norm.weight", "attn_k_norm.weight", "post_attention_norm.weight", "post_ffw_norm.weight"}},
}

// gemmaQueryScale is the query scale of Gemma 2 and 3: 1/√key_length,
// but 1/√(embedding_length/head_count) in their 27B models (46 blocks in
// Gemma 2, 62 in Gemma 3; query_pre_attn_scalar is 144 and 168 there,
// where the heads are 128 wide), which llama.cpp recognises by the block
// count, as no key says it.
func gemmaQueryScale(blocks int) func(c *model.Config) float32 {
	return func(c *model.Config) float32 {
		if c.Layers == blocks && c.Dim%c.Heads == 0 && c.Dim/c.Heads != c.HeadDim() {
			return float32(1 / math.Sqrt(float64(c.Dim/c.Heads)))
		}
		return 0
	}
}

// archNames lists the architectures of archs, sorted, for errors.
func archNames() string {
	var names []string
	for n := range archs {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
