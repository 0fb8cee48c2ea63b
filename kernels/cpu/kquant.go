package cpu

import "github.com/mycel-net/mycel/kernels"

// The products of the block types other than Q8_0 and Q4_0 (Q4_1, Q5_0,
// Q5_1, the K-quants Q2_K to Q6_K, IQ4_NL and IQ4_XS). Their activations
// stay float32: each weight row is decoded once per MatMul by
// kernels.Decode, the one dequantization of every type, and its dot
// product with every token's activations runs in the float kernel dotF32
// (SIMD where the CPU has it). Six tokens or more go through the float
// GEMM instead, whose packing decodes the same blocks (packRow). A row's
// result does not depend on how the rows are split over the workers.

// runDecoded computes rows [lo, hi) of a block-type weight matrix for
// every token.
func runDecoded(t *matmulTask, worker, lo, hi int) {
	w := t.w
	cols := w.Cols
	row := t.rowBuf[worker][:cols]
	for r := lo; r < hi; r++ {
		kernels.Decode(row, w.Type, w.Row(r))
		for tok := 0; tok < t.n; tok++ {
			t.out[tok*w.Rows+r] = dotF32(row, t.x[tok*cols:(tok+1)*cols])
		}
	}
}
