package cpu

import "github.com/mycel-net/mycel/kernels"

// The quantized path of MatMul. The activations are quantized to Q8_0
// (per 32 values: d = max|x|/127 as f16, q = round(x/d)), so every dot
// product with Q8_0 or Q4_0 weights is an exact int8 sum per block,
// scaled by d_w·d_x:
//
//	out[t,r] = Σ_b d_w[r,b]·d_x[t,b]·Σ_j qw[r,b,j]·qx[t,b,j]
//
// One token (decode) runs a matvec that streams the weights once, four
// rows per pass sharing the activation loads. Several tokens (prefill) run
// tiles of rows × 4 tokens, so each weight block is read from memory once
// per four tokens rather than once per token.
//
// quant_amd64.s has AVX-512 VNNI and AVX2 versions; quantSets lists those
// the CPU runs and init installs the best, or the one MYCEL_ISA names
// ("avx512", "avx2" or "go", read once at start-up). The pure-Go twins
// (rows_generic.go) define the results the assembly must reproduce: the
// quantizer bit for bit, the dot products to float rounding.

// quantKernels is one instruction set's version of the quantized kernels.
//
//	quantize(dst, x):     x (a multiple of 32 values) to Q8_0 blocks in dst,
//	                      bit for bit as kernels.Encode does it.
//	q8(out, w, nb, xq):   out[i] = Σ_b d_w·d_x·Σ_j qw·qx over the nb Q8_0
//	                      blocks of row i of w and the Q8_0 row xq.
//	q4(out, w, nb, xq):   the same for Q4_0 weights, qw = nibble − 8.
//	gemm8, gemm4(out, ldo, w, rows, nb, xq, n): out[t·ldo + r] for r < rows
//	                      and t < n tokens of Q8_0 rows xq (nb blocks each);
//	                      nil where the set has no tiled kernel.
//	prep4(xp, xq, nb):    xq rearranged for q4x (layout in q4x.go).
//	q4x(out, w, nb, xp):  q4 on the prepared activations xp; decode uses
//	                      it, with prep4 once per MatMul. Both nil where
//	                      the set has no such kernel.
//
// xq must come from quantize: its values lie in [−127, 127].
type quantKernels struct {
	name     string
	quantize func(dst []byte, x []float32)
	q8, q4   func(out []float32, w []byte, nb int, xq []byte)
	gemm8    func(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int)
	gemm4    func(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int)
	prep4    func(xp, xq []byte, nb int)
	q4x      func(out []float32, w []byte, nb int, xp []byte)
}

var genericQuant = quantKernels{"go", quantizeQ8Generic, matvecQ8Generic, matvecQ4Generic, nil, nil, nil, nil}

// The tiled prefill kernels in use; nil: a matvec per token.
var gemmQ8, gemmQ4 func(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int)

// The Q4_0 decode kernel on prepared activations in use; nil: matvecQ4.
var (
	prepQ4    func(xp, xq []byte, nb int)
	matvecQ4x func(out []float32, w []byte, nb int, xp []byte)
)

// quantISA names the quantized kernel set in use.
var quantISA = "go"

// install makes s the kernel set MatMul uses.
func (s quantKernels) install() {
	quantizeQ8, matvecQ8, matvecQ4 = s.quantize, s.q8, s.q4
	gemmQ8, gemmQ4 = s.gemm8, s.gemm4
	prepQ4, matvecQ4x = s.prep4, s.q4x
	quantISA = s.name
}

// runQuant computes rows [lo, hi) of a block-quantized weight matrix for
// every token, against the activations already quantized to Q8_0 in t.xq.
func runQuant(t *matmulTask, lo, hi int) {
	w := t.w
	rows := w.Rows
	nb := w.Cols / kernels.QK
	rb := nb * w.Type.BlockBytes()
	xb := nb * kernels.Q8_0BlockBytes
	if t.n > 1 {
		gemm := gemmQ8
		if w.Type == kernels.Q4_0 {
			gemm = gemmQ4
		}
		if gemm != nil {
			gemm(t.out[lo:], rows, w.Data[lo*rb:hi*rb], hi-lo, nb, t.xq, t.n)
			return
		}
	}
	for tok := 0; tok < t.n; tok++ {
		out := t.out[tok*rows+lo : tok*rows+hi]
		xq := t.xq[tok*xb : (tok+1)*xb]
		switch {
		case w.Type == kernels.Q8_0:
			matvecQ8(out, w.Data[lo*rb:hi*rb], nb, xq)
		case t.xp != nil:
			matvecQ4x(out, w.Data[lo*rb:hi*rb], nb, t.xp)
		default:
			matvecQ4(out, w.Data[lo*rb:hi*rb], nb, xq)
		}
	}
}
