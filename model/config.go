package model

import (
	"fmt"

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
}

// HeadDim is the width of one attention head.
func (c *Config) HeadDim() int { return c.Dim / c.Heads }

// KVDim is the width of the keys (and values) of one position.
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
	case c.Heads <= 0 || c.Dim%c.Heads != 0:
		return fmt.Errorf("model config: %d heads do not divide dim %d", c.Heads, c.Dim)
	case c.KVHeads <= 0 || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("model config: %d kv heads do not divide %d heads", c.KVHeads, c.Heads)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("model config: head size %d is odd; rotary embedding needs pairs", c.HeadDim())
	case c.Vocab <= 0 || c.Vocab > 1<<22:
		return fmt.Errorf("model config: vocab %d out of range (1..%d)", c.Vocab, 1<<22)
	case c.Context <= 0 || c.Context > 1<<24:
		return fmt.Errorf("model config: context %d out of range (1..%d)", c.Context, 1<<24)
	case !(c.NormEps > 0 && c.NormEps < 1):
		return fmt.Errorf("model config: norm eps %g out of range (0, 1)", c.NormEps)
	case !(c.RopeTheta > 1):
		return fmt.Errorf("model config: rope theta %g must be > 1", c.RopeTheta)
	case c.RopeStyle != kernels.RopeAdjacent && c.RopeStyle != kernels.RopeNeoX:
		return fmt.Errorf("model config: unknown rope style %d", c.RopeStyle)
	}
	return nil
}

// Params is the number of weights of the whole model.
func (c *Config) Params() int64 {
	d, h, l, v, kv := int64(c.Dim), int64(c.Hidden), int64(c.Layers), int64(c.Vocab), int64(c.KVDim())
	perLayer := 2*d + 2*d*d + 2*d*kv + 3*d*h
	n := v*d + l*perLayer + d
	if !c.SharedClassifier {
		n += v * d
	}
	return n
}
