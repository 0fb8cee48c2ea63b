package model

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// Linear is one linear map of a transformer block or of the output head,
// applied to rows of activations. The default is Dense, a stored weight
// matrix; an adapter such as LoRA wraps one and adds its own term, and
// the block code that calls it does not change.
type Linear interface {
	// Apply sets out[t] = f(x[t]) for the n rows of x ([n, In]); out is
	// [n, Out] and does not overlap x.
	Apply(out, x []float32, n int)

	// Backward is the gradient of Apply: given the n rows x that Apply
	// read and dy, the gradient of the loss with respect to its output,
	// it adds the gradient with respect to x to dx ([n, In]; skipped
	// when dx is nil) and adds the gradient with respect to its own
	// trainable parameters, if it has any, to where it keeps them.
	Backward(dx, dy, x []float32, n int)
}

// Proj names the seven linear maps of a block.
type Proj int

// The linear maps of a block, in the order the forward pass runs them.
const (
	ProjQ    Proj = iota // query, Layer.Wq
	ProjK                // key, Layer.Wk
	ProjV                // value, Layer.Wv
	ProjO                // attention output, Layer.Wo
	ProjGate             // FFN gate, Layer.W1
	ProjUp               // FFN up, Layer.W3
	ProjDown             // FFN down, Layer.W2
	numProj
)

var projNames = [numProj]string{"q", "k", "v", "o", "gate", "up", "down"}

func (p Proj) String() string {
	if p < 0 || p >= numProj {
		return fmt.Sprintf("Proj(%d)", int(p))
	}
	return projNames[p]
}

// matrix is the layer's weight matrix that p names.
func (l *Layer) matrix(p Proj) *kernels.Matrix {
	return [numProj]*kernels.Matrix{l.Wq, l.Wk, l.Wv, l.Wo, l.W1, l.W3, l.W2}[p]
}

// Dense is the plain linear map y = W·x of a stored weight matrix W
// ([Out, In]), on a backend; W must not change once the Dense is in use. Its Backward needs the backend's training
// kernels (kernels.Trainer). With Grad set (a float32 [Out·In], as
// Engine.SetGrads does for full fine-tuning) Backward also accumulates
// the gradient of W there; with Grad nil, W is frozen.
//
// The block runs products of one input over several Dense maps on one
// backend (query, key and value; gate and up) as one MatMulMany.
type Dense struct {
	W    *kernels.Matrix
	Grad []float32
	be   kernels.Backend
}

// NewDense returns the linear map of w on be.
func NewDense(be kernels.Backend, w *kernels.Matrix) *Dense { return &Dense{W: w, be: be} }

// splitRows reports whether a product of n rows over w runs best as n-1
// rows and one: a Q4_0 batch of 4k+1 rows (k ≥ 1), whose last row would
// otherwise cost the backend's multi-row kernel a whole overlapping
// four-row tile, while the one row's matrix-vector product reads the
// weights the tiles just brought into the cache. Q8_0's multi-row kernel
// (activations prepared in groups of four) covers the fifth row for less
// than a second pass over the weights costs (docs/performance.md).
func splitRows(w *kernels.Matrix, n int) bool {
	return n > minPadRows && n%minPadRows == 1 && w.Type == kernels.Q4_0
}

// Apply sets out = x·Wᵀ for n rows.
func (d *Dense) Apply(out, x []float32, n int) { mulRows(d.be, out, d.W, x, n) }

// mulRows is be.MatMul, but a Q4_0 batch of 4k+1 rows runs as 4k rows
// and one (see splitRows).
func mulRows(be kernels.Backend, out []float32, w *kernels.Matrix, x []float32, n int) {
	if splitRows(w, n) {
		k := n - 1
		be.MatMul(out[:k*w.Rows], w, x[:k*w.Cols], k)
		be.MatMul(out[k*w.Rows:n*w.Rows], w, x[k*w.Cols:n*w.Cols], 1)
		return
	}
	be.MatMul(out, w, x, n)
}

// Backward adds dy·W to dx and, when Grad is set, dyᵀ·x to Grad. It
// panics if the backend has no training kernels: the training entry
// points check that first.
func (d *Dense) Backward(dx, dy, x []float32, n int) {
	tr := d.be.(kernels.Trainer)
	if dx != nil {
		tr.MatMulT(dx, d.W, dy, n, true)
	}
	if d.Grad != nil {
		tr.MatMulGrad(d.Grad, dy, x, n, d.W.Rows, d.W.Cols)
	}
}

var _ Linear = (*Dense)(nil)
