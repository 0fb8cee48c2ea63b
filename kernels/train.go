package kernels

// Trainer is the part of a backend that training needs beyond inference:
// the products of a backward pass and the backward of each op. It is
// optional: find it with a type assertion (be.(kernels.Trainer)); a backend
// without it can still run inference.
//
// Every method is deterministic: for the same inputs it returns bitwise the
// same result whatever the number of threads and however the work is
// scheduled (each output element is summed by one worker, in a fixed
// order). Training peers that must stay bitwise identical, and a peer that
// recomputes another's work, depend on this.
//
// Methods panic on mismatched lengths, like Backend's.
type Trainer interface {
	// MatMulT is the product with w untransposed, the gradient of MatMul
	// with respect to its input: for t < n and c < w.Cols,
	//
	//	dx[t·w.Cols + c] (+)= Σ_r dy[t·w.Rows + r] · w[r,c]
	//
	// over w of any type MatMul reads (quantized weights are dequantized
	// as MatMul reads them, activations stay float32). With accumulate the
	// sum is added to dx, otherwise dx is overwritten. len(dy) ≥ n·w.Rows,
	// len(dx) ≥ n·w.Cols; dx must not overlap dy.
	MatMulT(dx []float32, w *Matrix, dy []float32, n int, accumulate bool)

	// MatMulGrad accumulates the gradient of MatMul with respect to a
	// float32 weight of shape [rows, cols]: for r < rows and c < cols,
	//
	//	dw[r·cols + c] += Σ_t dy[t·rows + r] · x[t·cols + c]   (t < n)
	//
	// len(dw) = rows·cols, len(dy) ≥ n·rows, len(x) ≥ n·cols.
	MatMulGrad(dw, dy, x []float32, n, rows, cols int)

	// RMSNormBackward is the gradient of RMSNorm(out, x, weight, eps) for
	// the len(x)/len(weight) rows of x: it overwrites dx with the gradient
	// with respect to x and, when dweight is not nil, adds the gradient
	// with respect to weight to dweight. dx may equal dy.
	RMSNormBackward(dx, dweight, dy, x, weight []float32, eps float32)

	// RoPEBackward is the gradient of RoPE(x, p) in place: it rotates each
	// pair of dy by minus the forward angle (the transpose of a rotation is
	// its inverse).
	RoPEBackward(dy []float32, p RopeParams)

	// SwiGLUBackward is the gradient of SwiGLU(out, gate, up):
	// dgate[i] = dout[i]·up[i]·silu'(gate[i]), dup[i] = dout[i]·silu(gate[i]).
	// dgate and dup are overwritten; either may equal dout.
	SwiGLUBackward(dgate, dup, dout, gate, up []float32)

	// SoftmaxBackward is the gradient of a softmax over the rows of width
	// len(y)/n: given y = softmax(x) and dy, dx = y ⊙ (dy − Σ_j dy_j·y_j)
	// row by row. dx may equal dy.
	SoftmaxBackward(dx, dy, y []float32, n int)

	// AttentionBackward is the gradient of causal grouped-query attention
	// over a whole sequence that starts at position 0 (Pos0 must be 0,
	// N the sequence length; Cap is unused). q and dq are [N,
	// Heads·HeadDim]; k, v, dk and dv are [N, KVHeads·HeadDim], row by row
	// (not the cache layout): the keys and values the forward stored,
	// after RoPE. dout is the gradient of the attention's output. The
	// attention weights are recomputed from q and k. dq, dk and dv are
	// overwritten; a key or value head shared by several query heads gets
	// the sum of their gradients.
	AttentionBackward(dq, dk, dv, dout, q, k, v []float32, p AttnParams)

	// CrossEntropy computes, for n rows of vocab logits, the loss
	// −log softmax(logits)[target] of each row whose weight is not zero,
	// and returns Σ weight·loss. When dlogits is not nil it overwrites
	// it with the gradient of that sum: weight·(softmax(logits) −
	// onehot(target)) (zero rows where weight is zero). dlogits may equal
	// logits. targets[t] must be in [0, vocab) where weights[t] ≠ 0.
	CrossEntropy(dlogits, logits []float32, targets []int, weights []float32, vocab int) float64
}
