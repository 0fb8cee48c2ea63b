package model

import (
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// Config is the architecture of a Llama-family transformer.
type Config struct {
	// Arch names the family as GGUF does ("llama").
	Arch    string `json:"arch"`
	Dim     int    `json:"dim"`      // width of the residual stream
	Hidden  int    `json:"hidden"`   // FFN inner width
	Layers  int    `json:"layers"`   // transformer blocks
	Heads   int    `json:"heads"`    // query heads
	KVHeads int    `json:"kv_heads"` // key/value heads (grouped-query attention when < Heads)
	Vocab   int    `json:"vocab"`
	// Context is the longest sequence the model was trained for; the KV
	// cache is sized from it (or less, at the caller's choice).
	Context   int               `json:"context"`
	RopeTheta float32           `json:"rope_theta"`
	RopeStyle kernels.RopeStyle `json:"rope_style"`
	NormEps   float32           `json:"norm_eps"`
	// SharedClassifier is true when the output head reuses the token
	// embedding matrix.
	SharedClassifier bool `json:"shared_classifier"`

	// What the block does beyond Llama 2's, each off at its zero value.
	// The optional per-layer tensors (Layer's biases, q/k norms and
	// post-norms) switch their steps on by being present.

	// Act is the FFN's gated activation: ActSiLU (SwiGLU) or ActGELU (GeGLU).
	Act Activation `json:"act,omitempty"`
	// EmbedScale multiplies the token embeddings (Gemma: √Dim); 0 is 1.
	EmbedScale float32 `json:"embed_scale,omitempty"`
	// QueryScale multiplies q·k before the softmax; 0 is 1/√HeadDim.
	QueryScale float32 `json:"query_scale,omitempty"`
	// AttnSoftCap and FinalSoftCap, when > 0, cap the attention scores
	// and the logits as c·tanh(x/c) (Gemma 2).
	AttnSoftCap  float32 `json:"attn_softcap,omitempty"`
	FinalSoftCap float32 `json:"final_softcap,omitempty"`
	// SlidingWindow, when > 0, limits attention to the last SlidingWindow
	// positions in the layers SlidingEvery picks: every layer when it is
	// 0 or 1 (Phi-3); otherwise the layers repeat in groups of
	// SlidingEvery, all but the last of each group sliding and the last
	// attending to everything: layer li is global when (li+1) is a
	// multiple of SlidingEvery (Gemma 2: 2, the even layers sliding;
	// Gemma 3: 6, five sliding layers, then one global).
	SlidingWindow int `json:"sliding_window,omitempty"`
	SlidingEvery  int `json:"sliding_every,omitempty"`
	// RopeLocalTheta, when not 0, is the rotary base of the sliding-window
	// layers, which then rotate without RopeScale (Gemma 3: 10000, its
	// global layers 1e6).
	RopeLocalTheta float32 `json:"rope_local_theta,omitempty"`
	// RopeScale, when not 0, divides the rotary frequencies of every layer
	// but those RopeLocalTheta sets apart: linear position interpolation
	// (Gemma 3's larger models: 8).
	RopeScale float32 `json:"rope_scale,omitempty"`

	// A mixture of experts, when Experts > 0: the FFN of each layer that
	// holds routed experts (Layer.Experts) sends each row to the
	// ExpertsUsed experts its router scores highest and sums their gated
	// FFNs (ExpertHidden wide), weighted by the router's softmax. Layers
	// without experts keep the dense FFN (Hidden wide).
	Experts      int `json:"experts,omitempty"`
	ExpertsUsed  int `json:"experts_used,omitempty"`
	ExpertHidden int `json:"expert_hidden,omitempty"`
	// ExpertNorm divides the chosen experts' weights by their sum, so
	// that they add up to 1: a softmax over the chosen experts' router
	// logits (Mixtral, Qwen3-MoE). Without it each keeps its share of the
	// softmax over all experts.
	ExpertNorm bool `json:"expert_norm,omitempty"`
	// ExpertGating turns router logits into weights: GateSoftmax over all
	// experts, or GateSigmoid of each (DeepSeek-V3). ExpertScale, when not
	// 0, multiplies the chosen experts' weights (after ExpertNorm).
	ExpertGating Gating  `json:"expert_gating,omitempty"`
	ExpertScale  float32 `json:"expert_scale,omitempty"`

	// Multi-head latent attention (DeepSeek-V2), when KVLoRA > 0: q comes
	// from a rank-QLoRA down-projection (normed) and an up-projection, or
	// from one matrix when QLoRA is 0; keys and values from one rank-KVLoRA
	// latent (normed) and one up-projection, plus RopeDim rotated key dims
	// shared by every head (Layer.MLA).
	QLoRA  int `json:"q_lora,omitempty"`
	KVLoRA int `json:"kv_lora,omitempty"`
	// HeadSize is the width of a query and key head when it is not
	// Dim/Heads; ValueSize that of a value head when it is not HeadSize.
	// RopeDim, when not 0, rotates only the last RopeDim values of each
	// query and key head.
	HeadSize  int `json:"head_size,omitempty"`
	ValueSize int `json:"value_size,omitempty"`
	RopeDim   int `json:"rope_dim,omitempty"`
}

// Gating is how a router turns its logits into expert weights.
type Gating uint8

const (
	GateSoftmax Gating = iota // softmax over all experts (Mixtral, Qwen3-MoE)
	GateSigmoid               // a sigmoid of each logit (DeepSeek-V3)
)

// Activation is the nonlinearity of a block's gated FFN.
type Activation uint8

const (
	ActSiLU Activation = iota // silu(gate)·up: Llama, Qwen, Phi-3
	ActGELU                   // gelu(gate)·up, GELU's tanh form: Gemma
)

func (a Activation) String() string {
	if a == ActGELU {
		return "gelu"
	}
	return "silu"
}

// window is the sliding window of layer li, 0 for full attention.
func (c *Config) window(li int) int {
	if c.SlidingWindow <= 0 || (c.SlidingEvery > 1 && (li+1)%c.SlidingEvery == 0) {
		return 0
	}
	return c.SlidingWindow
}

// localRope reports whether layer li rotates with RopeLocalTheta rather
// than RopeTheta and RopeScale.
func (c *Config) localRope(li int) bool {
	return c.RopeLocalTheta != 0 && c.window(li) > 0
}

// queryScale is the factor of q·k before the softmax.
func (c *Config) queryScale() float32 {
	if c.QueryScale != 0 {
		return c.QueryScale
	}
	return float32(1 / math.Sqrt(float64(c.HeadDim())))
}

// extras names what the config's block does beyond Llama 2's.
func (c *Config) extras() []string {
	var what []string
	if c.Act != ActSiLU {
		what = append(what, "the "+c.Act.String()+" activation")
	}
	if c.EmbedScale != 0 && c.EmbedScale != 1 {
		what = append(what, "scaled embeddings")
	}
	if c.QueryScale != 0 {
		what = append(what, "a query scale")
	}
	if c.AttnSoftCap > 0 || c.FinalSoftCap > 0 {
		what = append(what, "soft-capping")
	}
	if c.SlidingWindow > 0 {
		what = append(what, "sliding-window attention")
	}
	if c.RopeLocalTheta != 0 || c.RopeScale != 0 {
		what = append(what, "per-layer rotary bases or scaling")
	}
	if c.HeadSize != 0 && c.KVLoRA == 0 && c.HeadSize*c.Heads != c.Dim {
		what = append(what, "heads of another width than dim/heads")
	}
	if c.Experts > 0 {
		what = append(what, "a mixture of experts")
	}
	if c.KVLoRA > 0 {
		what = append(what, "latent attention")
	}
	return what
}

func (c *Config) archName() string {
	if c.Arch == "" {
		return "llama"
	}
	return c.Arch
}

// HeadDim is the width of one query or key head.
func (c *Config) HeadDim() int {
	if c.HeadSize > 0 {
		return c.HeadSize
	}
	return c.Dim / c.Heads
}

// ValueDim is the width of one value head.
func (c *Config) ValueDim() int {
	if c.ValueSize > 0 {
		return c.ValueSize
	}
	return c.HeadDim()
}

// RotaryDim is the number of values of each head that RoPE rotates.
func (c *Config) RotaryDim() int {
	if c.RopeDim > 0 {
		return c.RopeDim
	}
	return c.HeadDim()
}

// QDim is the width of the queries of one position.
func (c *Config) QDim() int { return c.Heads * c.HeadDim() }

// KVDim is the width of the keys (and values) of one position in the
// cache: values narrower than keys are stored padded to the key width.
func (c *Config) KVDim() int { return c.KVHeads * c.HeadDim() }

// Validate checks that the numbers describe a model this runtime can run,
// and bounds them so that nothing sized from them can exhaust memory by
// accident. The error names the offending field.
func (c *Config) Validate() error {
	const maxDim = 1 << 16
	switch {
	case c.Dim <= 0 || c.Dim > maxDim:
		return fmt.Errorf("model config: dim %d out of range (1..%d)", c.Dim, maxDim)
	case c.Hidden <= 0 || c.Hidden > 4*maxDim:
		return fmt.Errorf("model config: hidden %d out of range (1..%d)", c.Hidden, 4*maxDim)
	case c.Layers <= 0 || c.Layers > 1024:
		return fmt.Errorf("model config: layers %d out of range (1..1024)", c.Layers)
	case c.Heads <= 0 || c.HeadSize == 0 && c.Dim%c.Heads != 0:
		return fmt.Errorf("model config: %d heads do not divide dim %d", c.Heads, c.Dim)
	case c.KVHeads <= 0 || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("model config: %d kv heads do not divide %d heads", c.KVHeads, c.Heads)
	case c.HeadSize < 0 || c.HeadSize > maxDim || c.ValueSize < 0 || c.ValueSize > c.HeadDim() || c.RopeDim < 0 || c.RopeDim > c.HeadDim():
		return fmt.Errorf("model config: head size %d, value size %d, rope dims %d: want values and rotated dims no wider than heads", c.HeadSize, c.ValueSize, c.RopeDim)
	case c.RotaryDim()%2 != 0:
		return fmt.Errorf("model config: %d rotated dims is odd; rotary embedding needs pairs", c.RotaryDim())
	case c.QLoRA < 0 || c.QLoRA > maxDim || c.KVLoRA < 0 || c.KVLoRA > maxDim:
		return fmt.Errorf("model config: q and kv ranks %d, %d out of range (0..%d)", c.QLoRA, c.KVLoRA, maxDim)
	case c.ExpertGating > GateSigmoid:
		return fmt.Errorf("model config: unknown expert gating %d", c.ExpertGating)
	case c.Vocab <= 0 || c.Vocab > 1<<22:
		return fmt.Errorf("model config: vocab %d out of range (1..%d)", c.Vocab, 1<<22)
	case c.Context <= 0 || c.Context > 1<<24:
		return fmt.Errorf("model config: context %d out of range (1..%d)", c.Context, 1<<24)
	case !(c.NormEps > 0 && c.NormEps < 1):
		return fmt.Errorf("model config: norm eps %g out of range (0, 1)", c.NormEps)
	case !(c.RopeTheta > 1) || c.RopeLocalTheta != 0 && !(c.RopeLocalTheta > 1):
		return fmt.Errorf("model config: rope theta %g (local %g) must be > 1", c.RopeTheta, c.RopeLocalTheta)
	case c.RopeScale != 0 && !(c.RopeScale > 0 && c.RopeScale <= 1<<16):
		return fmt.Errorf("model config: rope scale %g out of range (0, %d]", c.RopeScale, 1<<16)
	case c.RopeStyle != kernels.RopeAdjacent && c.RopeStyle != kernels.RopeNeoX:
		return fmt.Errorf("model config: unknown rope style %d", c.RopeStyle)
	case c.Act != ActSiLU && c.Act != ActGELU:
		return fmt.Errorf("model config: unknown activation %d", c.Act)
	case c.SlidingWindow < 0 || c.SlidingEvery < 0:
		return fmt.Errorf("model config: sliding window %d every %d layers: must not be negative", c.SlidingWindow, c.SlidingEvery)
	case c.AttnSoftCap < 0 || c.FinalSoftCap < 0:
		return fmt.Errorf("model config: soft-caps %g, %g must not be negative", c.AttnSoftCap, c.FinalSoftCap)
	case c.Experts < 0 || c.Experts > 1<<16:
		return fmt.Errorf("model config: %d experts out of range (0..%d)", c.Experts, 1<<16)
	case c.Experts > 0 && (c.ExpertsUsed < 1 || c.ExpertsUsed > c.Experts):
		return fmt.Errorf("model config: %d experts used of %d: want 1..%d", c.ExpertsUsed, c.Experts, c.Experts)
	case c.Experts > 0 && (c.ExpertHidden <= 0 || c.ExpertHidden > 4*maxDim):
		return fmt.Errorf("model config: expert hidden %d out of range (1..%d)", c.ExpertHidden, 4*maxDim)
	case c.Experts == 0 && (c.ExpertsUsed != 0 || c.ExpertHidden != 0):
		return fmt.Errorf("model config: %d experts used, expert hidden %d, but no experts", c.ExpertsUsed, c.ExpertHidden)
	}
	return nil
}

// Params is the number of weights of the whole model (with experts: as if
// every layer held them).
func (c *Config) Params() int64 {
	d, h, l, v, kv := int64(c.Dim), int64(c.Hidden), int64(c.Layers), int64(c.Vocab), int64(c.KVDim())
	qo := d*int64(c.QDim()) + int64(c.Heads*c.ValueDim())*d // q and o
	perLayer := 2*d + qo + 2*d*kv + 3*d*h
	if c.KVLoRA > 0 {
		// Latent attention in place of q, k, v and o.
		q, r, lr := int64(c.QDim()), int64(c.RotaryDim()), int64(c.KVLoRA)
		heads, hd, dv := int64(c.Heads), int64(c.HeadDim()), int64(c.ValueDim())
		att := d*q + d*(lr+r) + lr + lr*int64(c.KVHeads)*(hd-r+dv) + heads*dv*d
		if c.QLoRA > 0 {
			ql := int64(c.QLoRA)
			att += d*ql + ql + ql*q - d*q
		}
		perLayer += att - qo - 2*d*kv
	}
	if c.Experts > 0 {
		ne := int64(c.Experts)
		perLayer += ne*d + ne*3*d*int64(c.ExpertHidden) - 3*d*h
	}
	n := v*d + l*perLayer + d
	if !c.SharedClassifier {
		n += v * d
	}
	return n
}
