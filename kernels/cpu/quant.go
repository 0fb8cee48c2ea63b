package cpu

import "github.com/mycel-net/mycel/kernels"

// runQuant computes rows [lo, hi) of a block-quantized weight matrix for
// every token, against the activations already quantized to Q8_0 in t.xq.
func runQuant(t *matmulTask, lo, hi int) {
	w := t.w
	rows := w.Rows
	nb := w.Cols / kernels.QK
	rb := nb * w.Type.BlockBytes()
	xb := nb * kernels.Q8_0BlockBytes
	for tok := 0; tok < t.n; tok++ {
		out := t.out[tok*rows+lo : tok*rows+hi]
		xq := t.xq[tok*xb : (tok+1)*xb]
		if w.Type == kernels.Q8_0 {
			matvecQ8(out, w.Data[lo*rb:hi*rb], nb, xq)
		} else {
			matvecQ4(out, w.Data[lo*rb:hi*rb], nb, xq)
		}
	}
}
