package cpu

import "github.com/mycel-net/mycel/kernels"

// The products of the block types other than Q8_0 and Q4_0 (Q4_1, Q5_0,
// Q5_1, the K-quants Q2_K to Q6_K, IQ4_NL and IQ4_XS), except those of
// Q4_K, Q5_K and Q6_K with five tokens or fewer, which run on int8
// activations (kq8.go). Their activations stay float32: each weight row is decoded once per MatMul by
// kernels.Decode, the one dequantization of every type, and its dot
// product with every token's activations runs in the float kernel dotF32
// (SIMD where the CPU has it). Six tokens or more go through the float
// GEMM instead, whose packing decodes the same blocks (packRow). A row's
// result does not depend on how the rows are split over the workers.
//
// Every one of these types has a vector decoder (kquant_amd64.s, AVX2)
// that the ISA installs; each gives kernels.Decode's values bit for bit.

// vecDecoders are the vector row decoders in use, by type: each decodes
// len(dst)/BlockLen whole blocks of row. The code path installs them; nil
// where it has none.
var vecDecoders [kernels.IQ4_XS + 1]func(dst []float32, row []byte)

// decodeRow decodes len(dst) values of a row of type dt from value c0,
// through the vector decoder where there is one and the values are whole
// blocks.
func decodeRow(dst []float32, dt kernels.DType, row []byte, c0 int) {
	bl := dt.BlockLen()
	if int(dt) < len(vecDecoders) && vecDecoders[dt] != nil && c0%bl == 0 && len(dst)%bl == 0 {
		vecDecoders[dt](dst, row[c0/bl*dt.BlockBytes():])
		return
	}
	kernels.DecodeFrom(dst, dt, row, c0)
}

// runDecoded computes rows [lo, hi) of a block-type weight matrix for
// every token.
func runDecoded(t *matmulTask, worker, lo, hi int) {
	w := t.w
	cols := w.Cols
	row := t.rowBuf[worker][:cols]
	for r := lo; r < hi; r++ {
		decodeRow(row, w.Type, w.Row(r), 0)
		for tok := 0; tok < t.n; tok++ {
			t.out[tok*w.Rows+r] = dotF32(row, t.x[tok*cols:(tok+1)*cols])
		}
	}
}
