package checkpoints

import (
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
	// window: 2 when it alternates with global attention, layer 0 first.
	slidingEvery int
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
	"gemma2":    {rope: kernels.RopeNeoX, act: model.ActGELU, embedScale: true, slidingEvery: 2},
	"phi3":      {rope: kernels.RopeNeoX, fusedQKV: true, fusedGateUp: true},
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
