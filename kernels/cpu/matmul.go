package cpu

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// macsPerChunk is the least work (multiply-adds) worth handing to another
// thread: below it the hand-off costs more than it saves.
const macsPerChunk = 32 << 10

// MatMul computes out[t·Rows + r] = Σ_c w[r,c]·x[t·Cols + c] for t < n.
func (b *Backend) MatMul(out []float32, w *kernels.Matrix, x []float32, n int) {
	if n <= 0 {
		return
	}
	if len(x) < n*w.Cols || len(out) < n*w.Rows {
		panic(fmt.Sprintf("cpu: MatMul %dx%d by %d rows: x has %d values, out %d", w.Rows, w.Cols, n, len(x), len(out)))
	}
	int8w := int8Weights(w.Type)
	if kqgType(w.Type, n) {
		b.qgemm(out, w, x, n)
		return
	}
	if n >= gemmMinN && !int8w {
		b.gemm(out, w, x, n)
		return
	}
	if int8w && n >= qgMinRows(w.Type) && qgemmImpl.gemm != nil {
		b.qgemm(out, w, x, n)
		return
	}
	t := &b.mm
	t.out, t.w, t.x, t.n = out, w, x, n
	if kq8Type(w.Type) {
		t.xk = b.quantizeK(x, w.Cols, n)
	} else if !int8w && w.Type.Quantized() {
		t.rowBuf = b.perWorker(w.Cols)
	}
	if int8w {
		// Quantize the activations once; every row's dot product then
		// runs on int8 values.
		nb := w.Cols / kernels.QK
		need := n * nb * kernels.Q8_0BlockBytes
		if cap(b.xq) < need {
			b.xq = make([]byte, need)
		}
		t.xq = b.xq[:need]
		for i := 0; i < n; i++ {
			quantizeQ8(t.xq[i*nb*kernels.Q8_0BlockBytes:(i+1)*nb*kernels.Q8_0BlockBytes], x[i*w.Cols:(i+1)*w.Cols])
		}
		if n == 1 && w.Type == kernels.Q4_0 {
			t.xp = b.prepQ4(t.xq, nb)
		}
		if n >= 4 && w.Type == kernels.Q8_0 && prepQ8g != nil {
			b.xg = alignedScratch(b.xg, prep8Bytes(nb, n))
			t.xg = b.xg
			prepQ8g(t.xg, t.xq, nb, n)
		}
	}
	if int8w && n > 1 {
		if len(b.narrow) != b.pool.threads {
			b.narrow = make([][]float32, b.pool.threads)
			b.narrowW = make([]kernels.Matrix, b.pool.threads)
		}
		for i := range b.narrow {
			if cap(b.narrow[i]) < n*quantTileRows {
				b.narrow[i] = make([]float32, n*quantTileRows)
			}
		}
		t.narrow, t.narrowW = b.narrow, b.narrowW
	}
	grain := max(1, macsPerChunk/(w.Cols*n))
	b.pool.run(t, w.Rows, grain)
	t.out, t.w, t.x, t.xq, t.xp, t.xg, t.narrow, t.narrowW, t.rowBuf, t.xk = nil, nil, nil, nil, nil, nil, nil, nil, nil, nil
}

// int8Weights reports whether MatMul multiplies weights of type dt on
// activations quantized to Q8_0 (quant.go). The other block types are
// decoded to float32 row by row (kquant.go).
func int8Weights(dt kernels.DType) bool { return dt == kernels.Q8_0 || dt == kernels.Q4_0 }

// prepQ4 rearranges one Q8_0 activation row of nb blocks for the Q4_0
// decode kernel, into scratch kept by the backend. It returns nil where
// the kernel set has no such kernel.
func (b *Backend) prepQ4(xq []byte, nb int) []byte {
	if prepQ4 == nil {
		return nil
	}
	need := q4PrepBytes(nb)
	if cap(b.xp) < need {
		b.xp = make([]byte, need)
	}
	xp := b.xp[:need]
	prepQ4(xp, xq, nb)
	return xp
}

type matmulTask struct {
	out []float32
	w   *kernels.Matrix
	x   []float32
	xq  []byte
	xp  []byte // Q4_0 decode: xq prepared by prepQ4, or nil
	xg  []byte // Q8_0 prefill: xq prepared by prepQ8g, or nil
	xk  []byte // Q4_K, Q5_K, Q6_K: activations quantized by quantizeK
	n   int
	// narrow is per-worker scratch of n·quantTileRows floats for
	// runQuantNarrow (quantized weights, n > 1).
	narrow  [][]float32
	narrowW []kernels.Matrix
	// rowBuf is per-worker scratch of Cols floats for runDecoded.
	rowBuf [][]float32
}

func (t *matmulTask) run(worker, lo, hi int) {
	switch t.w.Type {
	case kernels.F32, kernels.F16, kernels.BF16:
		runFloat(t, lo, hi)
	case kernels.Q8_0, kernels.Q4_0:
		if t.n > 1 && hi-lo < quantTileRows && t.w.Rows >= quantTileRows {
			runQuantNarrow(t, worker, lo, hi)
			return
		}
		runQuant(t, lo, hi)
	default:
		if t.xk != nil {
			runKQ8(t, lo, hi)
			return
		}
		if !t.w.Type.Quantized() {
			panic("cpu: MatMul of unsupported dtype " + t.w.Type.String())
		}
		runDecoded(t, worker, lo, hi)
	}
}

// runFloat computes rows [lo, hi) of a float weight matrix for every token.
func runFloat(t *matmulTask, lo, hi int) {
	w := t.w
	rows, cols := w.Rows, w.Cols
	for tok := 0; tok < t.n; tok++ {
		out := t.out[tok*rows+lo : tok*rows+hi]
		x := t.x[tok*cols : (tok+1)*cols]
		switch w.Type {
		case kernels.F32:
			matvecF32(out, kernels.BytesF32(w.Data)[lo*cols:hi*cols], cols, x)
		case kernels.F16:
			matvecF16(out, w.Data[lo*cols*2:hi*cols*2], cols, x)
		case kernels.BF16:
			matvecBF16(out, w.Data[lo*cols*2:hi*cols*2], cols, x)
		}
	}
}

// maxMany bounds the matrices of one MatMulMany.
const maxMany = 8

// MatMulMany runs several matrix products of one input as one job. For one
// row of activations (decode) the rows of all matrices are split over the
// workers together, so the query, key and value projections (or the gate
// and up projections) cost one hand-off instead of three (or two), and the
// activations are quantized once. Longer inputs go through MatMul each:
// the GEMM paths have enough work per call; a K-quant matrix whose
// activations the quantized GEMM prepares as the one before it does
// (kqgSamePrep) takes that one's.
func (b *Backend) MatMulMany(outs [][]float32, ws []*kernels.Matrix, x []float32, n int) {
	if len(outs) != len(ws) {
		panic(fmt.Sprintf("cpu: MatMulMany of %d matrices into %d outputs", len(ws), len(outs)))
	}
	if n != 1 || len(ws) == 1 || len(ws) > maxMany {
		for i, w := range ws {
			b.kqgReuse = i > 0 && kqgSamePrep(ws[i-1], w, n)
			b.MatMul(outs[i], w, x, n)
		}
		b.kqgReuse = false
		return
	}
	t := &b.many
	cols := ws[0].Cols
	total := 0
	quant, q4, decoded, kq := false, false, false, false
	for i, w := range ws {
		if w.Cols != cols || len(outs[i]) < w.Rows {
			panic(fmt.Sprintf("cpu: MatMulMany: matrix %d is %dx%d (cols %d expected), output %d", i, w.Rows, w.Cols, cols, len(outs[i])))
		}
		t.starts[i] = total
		total += w.Rows
		quant = quant || int8Weights(w.Type)
		kq = kq || kq8Type(w.Type)
		decoded = decoded || !int8Weights(w.Type) && !kq8Type(w.Type) && w.Type.Quantized()
		q4 = q4 || w.Type == kernels.Q4_0
	}
	if len(x) < cols {
		panic(fmt.Sprintf("cpu: MatMulMany: x has %d values, matrices %d columns", len(x), cols))
	}
	t.starts[len(ws)] = total
	t.outs, t.ws, t.x, t.xq, t.xp, t.rowBuf, t.xk = outs, ws, x, nil, nil, nil, nil
	if kq {
		t.xk = b.quantizeK(x, cols, 1)
	}
	if decoded {
		t.rowBuf = b.perWorker(cols)
	}
	if quant {
		need := cols / kernels.QK * kernels.Q8_0BlockBytes
		if cap(b.xq) < need {
			b.xq = make([]byte, need)
		}
		t.xq = b.xq[:need]
		quantizeQ8(t.xq, x[:cols])
		if q4 {
			t.xp = b.prepQ4(t.xq, cols/kernels.QK)
		}
	}
	b.pool.run(t, total, max(1, macsPerChunk/cols))
	t.outs, t.ws, t.x, t.xq, t.xp, t.rowBuf, t.xk = nil, nil, nil, nil, nil, nil, nil
}

// manyTask is one MatMulMany job: item r is row r of the matrices' rows
// laid end to end (starts[i] is where matrix i begins).
type manyTask struct {
	outs   [][]float32
	ws     []*kernels.Matrix
	x      []float32
	xq     []byte
	xp     []byte
	xk     []byte
	rowBuf [][]float32
	starts [maxMany + 1]int
}

func (t *manyTask) run(worker, lo, hi int) {
	for i, w := range t.ws {
		a, z := max(lo, t.starts[i]), min(hi, t.starts[i+1])
		if a >= z {
			continue
		}
		one := matmulTask{out: t.outs[i], w: w, x: t.x, xq: t.xq, n: 1, rowBuf: t.rowBuf}
		if kq8Type(w.Type) {
			one.xk = t.xk
		}
		if w.Type == kernels.Q4_0 {
			one.xp = t.xp
		}
		one.run(worker, a-t.starts[i], z-t.starts[i])
	}
}
