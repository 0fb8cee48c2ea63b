package checkpoints

import (
	"fmt"
	"math"
	"strings"

	"github.com/mycel-net/mycel/model"
)

// Fused reports how a GGUF of architecture arch stores a block's
// projections: q, k and v as one attn_qkv matrix (rows q, then k, then
// v), and the gate and up projections as one ffn_up (gate rows first).
// The loader splits them; a writer joins them again.
func Fused(arch string) (qkv, gateUp bool) {
	s := archs[arch]
	return s.fusedQKV, s.fusedGateUp
}

// ArchKVs is the GGUF metadata of a model of config c: the architecture
// (c.Arch, "llama" when empty), the name (when not empty) and the
// "<arch>." keys the loader reads back into c: the shape (with the
// heads' widths when they are not dim/heads), the rope (with its linear
// scaling), and the sliding window and soft-caps when c has them. A config the
// architecture's GGUF form cannot say (another rope style or activation
// than the architecture's, a query scale) is an error naming what differs.
func ArchKVs(c model.Config, name string) ([]KV, error) {
	arch := c.Arch
	if arch == "" {
		arch = "llama"
	}
	spec, ok := archs[arch]
	if !ok {
		return nil, fmt.Errorf("checkpoints: architecture %q has no GGUF form here (this runtime writes %s)", arch, archNames())
	}
	var differs []string
	if c.RopeStyle != spec.rope {
		differs = append(differs, fmt.Sprintf("rope style %s, not %s", c.RopeStyle, spec.rope))
	}
	if c.Act != spec.act {
		differs = append(differs, fmt.Sprintf("activation %s, not %s", c.Act, spec.act))
	}
	if want := float32(math.Sqrt(float64(c.Dim))); spec.embedScale && c.EmbedScale != want || !spec.embedScale && c.EmbedScale != 0 && c.EmbedScale != 1 {
		differs = append(differs, fmt.Sprintf("embedding scale %g", c.EmbedScale))
	}
	var implied float32 // the query scale the loader derives
	if spec.queryScale != nil {
		implied = spec.queryScale(&c)
	}
	if c.QueryScale != implied {
		differs = append(differs, fmt.Sprintf("query scale %g", c.QueryScale))
	}
	if c.SlidingWindow > 0 && c.SlidingEvery != spec.slidingEvery {
		differs = append(differs, fmt.Sprintf("a sliding window every %d layers, not %d", c.SlidingEvery, spec.slidingEvery))
	}
	if local := spec.ropeLocalTheta; c.SlidingWindow == 0 && c.RopeLocalTheta != 0 || c.SlidingWindow > 0 && c.RopeLocalTheta != local {
		differs = append(differs, fmt.Sprintf("a rotary base of %g in sliding-window layers", c.RopeLocalTheta))
	}
	if len(differs) > 0 {
		return nil, fmt.Errorf("checkpoints: a %s GGUF cannot say this config's %s", arch, strings.Join(differs, ", "))
	}
	kvs := []KV{{Key: "general.architecture", Value: Str(arch)}}
	if name != "" {
		kvs = append(kvs, KV{Key: "general.name", Value: Str(name)})
	}
	k := func(key string) string { return arch + "." + key }
	kvs = append(kvs, []KV{
		{Key: k("vocab_size"), Value: U32(uint32(c.Vocab))},
		{Key: k("context_length"), Value: U32(uint32(c.Context))},
		{Key: k("embedding_length"), Value: U32(uint32(c.Dim))},
		{Key: k("block_count"), Value: U32(uint32(c.Layers))},
		{Key: k("feed_forward_length"), Value: U32(uint32(c.Hidden))},
		{Key: k("attention.head_count"), Value: U32(uint32(c.Heads))},
		{Key: k("attention.head_count_kv"), Value: U32(uint32(c.KVHeads))},
		{Key: k("rope.dimension_count"), Value: U32(uint32(c.HeadDim()))},
		{Key: k("rope.freq_base"), Value: F32(c.RopeTheta)},
		{Key: k("attention.layer_norm_rms_epsilon"), Value: F32(c.NormEps)},
	}...)
	if c.HeadSize != 0 && c.KVLoRA == 0 {
		kvs = append(kvs, KV{Key: k("attention.key_length"), Value: U32(uint32(c.HeadDim()))},
			KV{Key: k("attention.value_length"), Value: U32(uint32(c.ValueDim()))})
	}
	if c.RopeScale != 0 {
		kvs = append(kvs, KV{Key: k("rope.scaling.type"), Value: Str("linear")},
			KV{Key: k("rope.scaling.factor"), Value: F32(c.RopeScale)})
	}
	if c.SlidingWindow > 0 {
		kvs = append(kvs, KV{Key: k("attention.sliding_window"), Value: U32(uint32(c.SlidingWindow))})
	}
	if c.AttnSoftCap > 0 {
		kvs = append(kvs, KV{Key: k("attn_logit_softcapping"), Value: F32(c.AttnSoftCap)})
	}
	if c.FinalSoftCap > 0 {
		kvs = append(kvs, KV{Key: k("final_logit_softcapping"), Value: F32(c.FinalSoftCap)})
	}
	if c.Experts > 0 {
		kvs = append(kvs, KV{Key: k("expert_count"), Value: U32(uint32(c.Experts))},
			KV{Key: k("expert_used_count"), Value: U32(uint32(c.ExpertsUsed))},
			KV{Key: k("expert_feed_forward_length"), Value: U32(uint32(c.ExpertHidden))})
		if c.ExpertNorm != spec.expertNorm {
			kvs = append(kvs, KV{Key: k("expert_weights_norm"), Value: Bool(c.ExpertNorm)})
		}
		if c.ExpertGating == model.GateSigmoid {
			kvs = append(kvs, KV{Key: k("expert_gating_func"), Value: U32(2)})
		}
		if c.ExpertScale != 0 {
			kvs = append(kvs, KV{Key: k("expert_weights_scale"), Value: F32(c.ExpertScale)})
		}
	}
	return kvs, nil
}
