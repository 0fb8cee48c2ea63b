package cpu

import (
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

// The quantized path of MatMul. The activations are quantized to Q8_0
// (per 32 values: d = max|x|/127 as f16, q = round(x/d)), so every dot
// product with Q8_0 or Q4_0 weights is an exact int8 sum per block,
// scaled by d_w·d_x:
//
//	out[t,r] = Σ_b d_w[r,b]·d_x[t,b]·Σ_j qw[r,b,j]·qx[t,b,j]
//
// One token (decode) runs a matvec that streams the weights once, four
// rows per pass sharing the activation loads. A few tokens (a batch of
// sequences) run tiles of rows × 4 tokens, so each weight block is read
// from memory once per four tokens rather than once per token. Many
// tokens (prompts, training), where the dot products and not the memory
// bound the time, run the quantized GEMM of qgemm.go: weights and
// activations rearranged once per call so that each int32 lane of a
// vector sums one row's block for one token.
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
//	prep8(xg, xq, nb, n): n ≥ 4 tokens of xq rearranged for gemm8p, into
//	                      prep8Bytes(nb, n) bytes of xg; nil where the set
//	                      has no such kernel.
//	gemm8p(out, ldo, w, rows, nb, xg, xq, n): gemm8 on xg from prep8
//	                      (n ≥ 4); xq serves where rows < 4.
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
	prep8    func(xg, xq []byte, nb, n int)
	gemm8p   func(out []float32, ldo int, w []byte, rows, nb int, xg, xq []byte, n int)
	// qg is the quantized GEMM of qgMinRows or more rows (qgemm.go); its
	// functions are nil where the set has none.
	qg qgKernels
	// q2k, q3k, q4k, q5k, q6k(out, w, nb, xk): out[i] = the dot product
	// of row i of nb Q2_K–Q6_K blocks and the activations xk
	// quantized by quantizeQ8K (kq8.go), bit for bit as the pure-Go twins;
	// nil where the set has none (the twins run).
	q2k, q3k, q4k, q5k, q6k func(out []float32, w []byte, nb int, xk []byte)
}

var genericQuant = quantKernels{name: "go", quantize: quantizeQ8Generic, q8: matvecQ8Generic, q4: matvecQ4Generic}

// The tiled prefill kernels in use; nil: a matvec per token.
var gemmQ8, gemmQ4 func(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int)

// The Q8_0 prefill kernel on prepared activations in use; nil: gemmQ8.
var (
	prepQ8g func(xg, xq []byte, nb, n int)
	gemmQ8p func(out []float32, ldo int, w []byte, rows, nb int, xg, xq []byte, n int)
)

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
	prepQ8g, gemmQ8p = s.prep8, s.gemm8p
	qgemmImpl = s.qg
	matvecQ2K, matvecQ3K, matvecQ4K, matvecQ5K, matvecQ6K = matvecQ2KGeneric, matvecQ3KGeneric, matvecQ4KGeneric, matvecQ5KGeneric, matvecQ6KGeneric
	if s.q4k != nil {
		matvecQ2K, matvecQ3K, matvecQ4K, matvecQ5K, matvecQ6K = s.q2k, s.q3k, s.q4k, s.q5k, s.q6k
	}
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
	if t.xg != nil {
		gemmQ8p(t.out[lo:], rows, w.Data[lo*rb:hi*rb], hi-lo, nb, t.xg, t.xq, t.n)
		return
	}
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

// quantTileRows is a multiple of the rows of every multi-row tile of the
// kernel sets: a chunk of rows at least this tall is covered by whole
// tiles (gemmTiles moves the last one back).
const quantTileRows = 4

// runQuantNarrow is runQuant for a chunk of fewer rows than a tile, of a
// matrix that has more: a tile's worth of rows from lo (or ending at the
// last row) is computed into scratch and the chunk's rows copied out. Each row thus gets the tile's sums,
// not the matvec's, however the rows are split over the workers: the
// result does not depend on the number of threads.
func runQuantNarrow(t *matmulTask, worker, lo, hi int) {
	r0 := min(lo, t.w.Rows-quantTileRows)
	hi0 := r0 + quantTileRows
	tmp := t.narrow[worker][:t.n*quantTileRows]
	rb := t.w.Cols / kernels.QK * t.w.Type.BlockBytes()
	w := &t.narrowW[worker]
	*w = kernels.Matrix{Type: t.w.Type, Rows: quantTileRows, Cols: t.w.Cols, Data: t.w.Data[r0*rb : hi0*rb]}
	one := *t
	one.out, one.w = tmp, w
	runQuant(&one, 0, quantTileRows)
	for tok := 0; tok < t.n; tok++ {
		copy(t.out[tok*t.w.Rows+lo:tok*t.w.Rows+hi], tmp[tok*quantTileRows+lo-r0:])
	}
}

// prep8Group is the size of one block of four tokens prepared for gemm8p:
// their low and high quant halves, offset corrections and scales, 64 bytes
// each (layout in quant_amd64.s).
const prep8Group = 256

// prep8Bytes is the size of n ≥ 4 tokens of nb blocks prepared for gemm8p:
// one group per four tokens, the last moved back to end at token n.
func prep8Bytes(nb, n int) int { return (n + 3) / 4 * nb * prep8Group }

// alignedScratch returns need bytes starting at a multiple of 64, from buf
// where it has room (buf must come from alignedScratch) or else new.
func alignedScratch(buf []byte, need int) []byte {
	if cap(buf) >= need {
		return buf[:need]
	}
	buf = make([]byte, need+64)
	off := int(-uintptr(unsafe.Pointer(&buf[0])) & 63)
	return buf[off : off+need : off+need]
}
