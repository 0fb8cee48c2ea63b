package model

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// Layer holds the weights of one transformer block. Matrices are
// [out, in]: Wq is [Dim, Dim], Wk and Wv [KVDim, Dim], Wo [Dim, Dim],
// W1 (gate) and W3 (up) [Hidden, Dim], W2 (down) [Dim, Hidden].
type Layer struct {
	AttnNorm []float32 // [Dim]
	Wq       *kernels.Matrix
	Wk       *kernels.Matrix
	Wv       *kernels.Matrix
	Wo       *kernels.Matrix
	FFNNorm  []float32       // [Dim]
	W1       *kernels.Matrix // gate
	W2       *kernels.Matrix // down
	W3       *kernels.Matrix // up
}

// Weights is a model's parameters, or the part of them a node holds.
//
// Layers is indexed by absolute layer number and always has Config.Layers
// entries; a layer outside the span held is nil. Embedding, FinalNorm and
// Output are nil when the holder does not run those steps. With a shared
// classifier Output is the same Matrix as Embedding.
type Weights struct {
	Config    Config
	Embedding *kernels.Matrix // [Vocab, Dim]
	Layers    []*Layer
	FinalNorm []float32       // [Dim]
	Output    *kernels.Matrix // [Vocab, Dim]

	// closer releases what backs the weights (a memory map), if anything.
	closer func() error
}

// SetCloser records the function that releases the storage behind the
// weights; Close calls it once.
func (w *Weights) SetCloser(f func() error) { w.closer = f }

// Close releases the storage behind the weights (such as a memory-mapped
// file). The weights must not be used afterwards.
func (w *Weights) Close() error {
	f := w.closer
	w.closer = nil
	if f != nil {
		return f()
	}
	return nil
}

// HasLayers reports whether every layer in [a, b) is present.
func (w *Weights) HasLayers(a, b int) bool {
	if a < 0 || b > len(w.Layers) || a > b {
		return false
	}
	for _, l := range w.Layers[a:b] {
		if l == nil {
			return false
		}
	}
	return true
}

// Bytes is the stored size of the weights held.
func (w *Weights) Bytes() int64 {
	var n int64
	addM := func(m *kernels.Matrix) {
		if m != nil {
			n += int64(len(m.Data))
		}
	}
	addM(w.Embedding)
	if w.Output != w.Embedding {
		addM(w.Output)
	}
	n += 4 * int64(len(w.FinalNorm))
	for _, l := range w.Layers {
		if l == nil {
			continue
		}
		for _, m := range []*kernels.Matrix{l.Wq, l.Wk, l.Wv, l.Wo, l.W1, l.W2, l.W3} {
			addM(m)
		}
		n += 4 * int64(len(l.AttnNorm)+len(l.FFNNorm))
	}
	return n
}

// Validate checks that every tensor present has the shape the config says.
func (w *Weights) Validate() error {
	c := &w.Config
	if err := c.Validate(); err != nil {
		return err
	}
	if len(w.Layers) != c.Layers {
		return fmt.Errorf("weights: %d layer slots for %d layers", len(w.Layers), c.Layers)
	}
	check := func(name string, m *kernels.Matrix, rows, cols int) error {
		if m == nil {
			return fmt.Errorf("weights: %s missing", name)
		}
		if m.Rows != rows || m.Cols != cols {
			return fmt.Errorf("weights: %s is %dx%d, want %dx%d", name, m.Rows, m.Cols, rows, cols)
		}
		return nil
	}
	vec := func(name string, v []float32, n int) error {
		if len(v) != n {
			return fmt.Errorf("weights: %s has %d values, want %d", name, len(v), n)
		}
		return nil
	}
	if w.Embedding != nil {
		if err := check("token embedding", w.Embedding, c.Vocab, c.Dim); err != nil {
			return err
		}
	}
	if w.Output != nil {
		if err := check("output", w.Output, c.Vocab, c.Dim); err != nil {
			return err
		}
	}
	if w.FinalNorm != nil {
		if err := vec("final norm", w.FinalNorm, c.Dim); err != nil {
			return err
		}
	}
	kv := c.KVDim()
	for i, l := range w.Layers {
		if l == nil {
			continue
		}
		p := fmt.Sprintf("layer %d ", i)
		for _, e := range []error{
			vec(p+"attention norm", l.AttnNorm, c.Dim),
			vec(p+"ffn norm", l.FFNNorm, c.Dim),
			check(p+"wq", l.Wq, c.Dim, c.Dim),
			check(p+"wk", l.Wk, kv, c.Dim),
			check(p+"wv", l.Wv, kv, c.Dim),
			check(p+"wo", l.Wo, c.Dim, c.Dim),
			check(p+"w1 (gate)", l.W1, c.Hidden, c.Dim),
			check(p+"w2 (down)", l.W2, c.Dim, c.Hidden),
			check(p+"w3 (up)", l.W3, c.Hidden, c.Dim),
		} {
			if e != nil {
				return e
			}
		}
	}
	return nil
}
