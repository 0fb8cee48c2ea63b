//go:build !amd64 || noasm

package cpu

// packColsTFast is packColsT: the pure-Go build has no vector transpose.
func packColsTFast(dst, src []float32, ld, r0, c0, kc, w, cnt int) {
	packColsT(dst, src, ld, r0, c0, kc, w, cnt)
}
