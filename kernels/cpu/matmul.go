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
	if n >= gemmMinN && !w.Type.Quantized() {
		b.gemm(out, w, x, n)
		return
	}
	t := &b.mm
	t.out, t.w, t.x, t.n = out, w, x, n
	if w.Type.Quantized() {
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
	}
	grain := max(1, macsPerChunk/(w.Cols*n))
	b.pool.run(t, w.Rows, grain)
	t.out, t.w, t.x, t.xq = nil, nil, nil, nil
}

type matmulTask struct {
	out []float32
	w   *kernels.Matrix
	x   []float32
	xq  []byte
	n   int
}

func (t *matmulTask) run(_, lo, hi int) {
	switch t.w.Type {
	case kernels.F32, kernels.F16, kernels.BF16:
		runFloat(t, lo, hi)
	case kernels.Q8_0, kernels.Q4_0:
		runQuant(t, lo, hi)
	default:
		panic("cpu: MatMul of unsupported dtype " + t.w.Type.String())
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
