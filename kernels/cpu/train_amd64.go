//go:build amd64 && !noasm

package cpu

import "unsafe"

// packColsTFast is packColsT with the vector transpose of the GEMM's W
// packing (pack8F32AVX2) for the bulk, eight rows by eight columns at a
// time: a panel of 12 rows as rows 0-7 and 4-11, one of 6 as rows 0-7,
// whose two extra values per column the next column's store overwrites
// and the last column's land in the panelPad floats past dst (its
// capacity must hold them). Partial panels, and columns past a multiple
// of 8, go through packColsT.
func packColsTFast(dst, src []float32, ld, r0, c0, kc, w, cnt int) {
	k8 := kc &^ 7
	rows := max(w, 8)
	if pack8 == nil || k8 == 0 || cnt < w || (r0+rows-1)*ld+c0+k8 > len(src) ||
		(w < 8 && cap(dst) < (k8-1)*w+8) {
		packColsT(dst, src, ld, r0, c0, kc, w, cnt)
		return
	}
	full := dst[:cap(dst)]
	for i0 := 0; i0 < w; i0 += 8 {
		i := min(i0, max(0, w-8))
		_ = full[(k8-1)*w+i+7]
		pack8F32AVX2(&full[i], w, unsafe.Pointer(&src[(r0+i)*ld+c0]), ld, k8)
	}
	if k8 < kc {
		for i := 0; i < w; i++ {
			row := src[(r0+i)*ld+c0+k8 : (r0+i)*ld+c0+kc]
			for k, v := range row {
				dst[(k8+k)*w+i] = v
			}
		}
	}
}
