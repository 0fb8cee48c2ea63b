package train

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// InitStd is the standard deviation of the matrices of a model trained
// from scratch.
const InitStd = 0.02

// InitWeights returns float32 weights for a model of config c, drawn from
// seed, to train from scratch (full training starts from them): every
// matrix normal(0, InitStd), except the two that write into the residual
// stream (attention output and FFN down), whose deviation is divided by
// √(2·Layers) so that the stream's variance does not grow with depth; every
// norm at 1. With c.SharedClassifier the head is the embedding. Each
// tensor is drawn from a stream of its own (seed and the tensor's place),
// so the draw is the same on every machine and does not depend on the
// order tensors are made in.
func InitWeights(c model.Config, seed uint64) (*model.Weights, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	resid := InitStd / math.Sqrt(2*float64(c.Layers))
	mat := func(stream uint64, rows, cols int, std float64) *kernels.Matrix {
		r := rand.New(rand.NewPCG(seed, stream))
		f := make([]float32, rows*cols)
		for i := range f {
			f[i] = float32(r.NormFloat64() * std)
		}
		return &kernels.Matrix{Type: kernels.F32, Rows: rows, Cols: cols, Data: kernels.F32Bytes(f)}
	}
	ones := func() []float32 {
		v := make([]float32, c.Dim)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	d, kv, h := c.Dim, c.KVDim(), c.Hidden
	w := &model.Weights{Config: c, Layers: make([]*model.Layer, c.Layers), FinalNorm: ones()}
	w.Embedding = mat(0, c.Vocab, d, InitStd)
	if c.SharedClassifier {
		w.Output = w.Embedding
	} else {
		w.Output = mat(1, c.Vocab, d, InitStd)
	}
	for li := range c.Layers {
		s := uint64(li+1) << 8
		w.Layers[li] = &model.Layer{
			AttnNorm: ones(), FFNNorm: ones(),
			Wq: mat(s|1, d, d, InitStd), Wk: mat(s|2, kv, d, InitStd), Wv: mat(s|3, kv, d, InitStd),
			Wo: mat(s|4, d, d, resid),
			W1: mat(s|5, h, d, InitStd), W2: mat(s|6, d, h, resid), W3: mat(s|7, h, d, InitStd),
		}
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return w, nil
}
