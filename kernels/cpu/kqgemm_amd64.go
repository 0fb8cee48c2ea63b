//go:build amd64 && !noasm

package cpu

import "golang.org/x/sys/cpu"

//go:noescape
func kqgQuants45AVX512(dst *byte, w *byte, offs *int32, ns, bb, q5 int)

//go:noescape
func kqgQuants6AVX512(dst *byte, w *byte, offs *int32, ns int)

//go:noescape
func kqgQuants23AVX512(dst *byte, w *byte, offs *int32, sc *int32, q3 int)

// kqgQuants45, kqgQuants6 and kqgQuants23 are the quants' packing in use:
// kqgemm_amd64.s where the CPU has AVX-512 (every CPU with the quantized
// GEMM's kernel does).
var kqgQuants45, kqgQuants6, kqgQuants23 = kqgQuants45Generic, kqgQuants6Generic, kqgQuants23Generic

func init() {
	if cpu.X86.HasAVX512F {
		kqgQuants45, kqgQuants6, kqgQuants23 = kqgQuants45Asm, kqgQuants6Asm, kqgQuants23Asm
	}
}

// kqgQuants23Asm checks the lengths and calls the assembly.
func kqgQuants23Asm(dst, w []byte, offs *[qgRows]int32, sc *[16 * qgRows]int32, q3 bool) {
	bb, b := 84, 0
	if q3 {
		bb, b = 110, 1
	}
	_ = dst[8*qgPanelBlock-1]
	qgCheckPack(dst, w, offs, 1, bb)
	kqgQuants23AVX512(&dst[0], &w[0], &offs[0], &sc[0], b)
}

// kqgQuants6Asm checks the lengths and calls the assembly.
func kqgQuants6Asm(dst, w []byte, offs *[qgRows]int32, ns int) {
	if ns <= 0 {
		return
	}
	qgCheckPack(dst[:ns*16*qgPanelBlock], w, offs, ns*2, 105)
	kqgQuants6AVX512(&dst[0], &w[0], &offs[0], ns)
}

// kqgQuants45Asm checks the lengths and calls the assembly.
func kqgQuants45Asm(dst, w []byte, offs *[qgRows]int32, ns int, q5 bool) {
	if ns <= 0 {
		return
	}
	bb := 144
	if q5 {
		bb = 176
	}
	qgCheckPack(dst[:ns*8*qgPanelBlock], w, offs, ns*8, bb/8)
	b := 0
	if q5 {
		b = 1
	}
	kqgQuants45AVX512(&dst[0], &w[0], &offs[0], ns, bb, b)
}
