package cpu

import "github.com/mycel-net/mycel/kernels"

// decodeRowsVec, where the CPU has it, decodes the leading columns of a
// strip of W as decodeRows does, bit for bit as decodeCols would, and
// returns how many columns from c0 it did in every row (a multiple of its
// vector width; 0 where it cannot: an F32 matrix, a quantized strip that
// does not start on a half block). Set with the ISA.
var decodeRowsVec func(dst []float32, ld int, w *kernels.Matrix, r0, kc, c0, cnt int) int

// decodeRows sets dst[k·ld + j] = W[r0+k, c0+j] for k < kc and j < cnt:
// kc rows of cnt columns of a weight matrix of any type but F32, decoded
// to float32 as decodeCols decodes them (MatMulT's panels of W). The
// vector decoder does what it can, decodeCols the rest.
func decodeRows(dst []float32, ld int, w *kernels.Matrix, r0, kc, c0, cnt int) {
	done := 0
	if decodeRowsVec != nil && kc > 0 && cnt > 0 {
		done = decodeRowsVec(dst, ld, w, r0, kc, c0, cnt)
	}
	if done == cnt {
		return
	}
	for k := 0; k < kc; k++ {
		decodeCols(dst[k*ld+done:k*ld+cnt], w, r0+k, c0+done)
	}
}
