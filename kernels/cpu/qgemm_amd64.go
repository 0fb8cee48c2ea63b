//go:build amd64 && !noasm

package cpu

import "github.com/mycel-net/mycel/kernels"

//go:noescape
func qgPack4VNNI(dst *byte, w *byte, offs *int32, nb int)

//go:noescape
func qgPack8VNNI(dst *byte, w *byte, offs *int32, nb int)

//go:noescape
func qgPrepVNNI(dst *byte, xq *byte, xb, nb, m int)

//go:noescape
func qgGemmVNNI(out *float32, ldo int, panel *byte, nb int, xg *byte, ng int, mask int, pf *byte, pfn int)

// qgVNNI is the quantized GEMM on AVX-512 VNNI.
var qgVNNI = qgKernels{pack4: qgPack4AVX512, pack8: qgPack8AVX512, prep: qgPrepAVX512, gemm: qgGemmAVX512}

// qgCheckPack panics unless w holds every row offs names, nb blocks of bs
// bytes from each, and dst a whole panel.
func qgCheckPack(dst, w []byte, offs *[qgRows]int32, nb, bs int) {
	_ = dst[nb*qgPanelBlock-1]
	for _, o := range offs {
		_ = w[int(o)+nb*bs-1]
		if o < 0 {
			panic("cpu: negative row offset")
		}
	}
}

func qgPack4AVX512(dst, w []byte, offs *[qgRows]int32, nb int) {
	if nb <= 0 {
		return
	}
	qgCheckPack(dst, w, offs, nb, kernels.Q4_0BlockBytes)
	qgPack4VNNI(&dst[0], &w[0], &offs[0], nb)
}

func qgPack8AVX512(dst, w []byte, offs *[qgRows]int32, nb int) {
	if nb <= 0 {
		return
	}
	qgCheckPack(dst, w, offs, nb, kernels.Q8_0BlockBytes)
	qgPack8VNNI(&dst[0], &w[0], &offs[0], nb)
}

func qgPrepAVX512(dst, xq []byte, xb, nb, m int) {
	if nb <= 0 {
		return
	}
	_ = dst[nb*qgGroupBlock-1]
	_ = xq[(qgToks-1)*xb+nb*kernels.Q8_0BlockBytes-1]
	qgPrepVNNI(&dst[0], &xq[0], xb, nb, m)
}

func qgGemmAVX512(out []float32, ldo int, panel []byte, nb int, xg []byte, ng int, mask uint32, next []byte) {
	if ng <= 0 || nb <= 0 || mask == 0 {
		return
	}
	hi := qgRows - 1
	for mask&(1<<hi) == 0 {
		hi--
	}
	_ = out[(ng*qgToks-1)*ldo+hi]
	_ = panel[nb*qgPanelBlock-1]
	_ = xg[ng*nb*qgGroupBlock-1]
	var pf *byte
	if len(next) > 0 {
		pf = &next[0]
	}
	qgGemmVNNI(&out[0], ldo, &panel[0], nb, &xg[0], ng, int(mask), pf, len(next))
}
