//go:build amd64 && !noasm

package cpu

import (
	"os"

	"golang.org/x/sys/cpu"

	"github.com/mycel-net/mycel/kernels"
)

// The assembly kernels of quant_amd64.s. Each matvec computes rows
// consecutive rows of nb blocks against one Q8_0 activation row; the caller
// checks the lengths.

//go:noescape
func quantizeQ8AVX512(dst *byte, x *float32, nb int)

//go:noescape
func quantizeQ8x16AVX512(dst *byte, x *float32, ng int)

//go:noescape
func quantizeQ8AVX2(dst *byte, x *float32, nb int)

//go:noescape
func q8MatvecVNNI(out *float32, w *byte, rows, nb int, xq *byte, pfd int)

//go:noescape
func q4MatvecVNNI(out *float32, w *byte, rows, nb int, xq *byte, pfd int)

//go:noescape
func q8GemmVNNI(out *float32, ldo int, w *byte, nb int, xg *byte, pfd int)

//go:noescape
func q8Gemm8VNNI(outA, outB *float32, ldo int, w *byte, nb int, xg *byte, pfd int)

//go:noescape
func q8GemmPrepVNNI(xg *byte, xq *byte, nb int)

//go:noescape
func q4GemmVNNI(out *float32, ldo int, w *byte, nb int, xq *byte)

//go:noescape
func q8GemmAVX2(out *float32, ldo int, w *byte, nb int, xq *byte)

//go:noescape
func q4GemmAVX2(out *float32, ldo int, w *byte, nb int, xq *byte)

//go:noescape
func q8MatvecAVX2(out *float32, w *byte, rows, nb int, xq *byte, pfd int)

//go:noescape
func q4MatvecAVX2(out *float32, w *byte, rows, nb int, xq *byte, pfd int)

// quantSets lists the quantized kernel sets this CPU can run, best first.
func quantSets() []quantKernels {
	var l []quantKernels
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL &&
		cpu.X86.HasAVX512VNNI && cpu.X86.HasF16C && cpu.X86.HasFMA {
		s := quantKernels{name: "avx512", quantize: quantizeQ8Asm512, q8: matvecQ8VNNI, q4: matvecQ4VNNI,
			gemm8: gemmQ8VNNI, gemm4: gemmQ4VNNI, prep8: prepQ8VNNI, gemm8p: gemmQ8PVNNI}
		if cpu.X86.HasAVX512VBMI && cpu.X86.HasAVX512GFNI {
			s.prep4, s.q4x = prepQ4VBMI, matvecQ4VBMI
		}
		if cpu.X86.HasAVX512DQ {
			s.qg = qgVNNI
		}
		s.q2k, s.q3k, s.q4k, s.q5k, s.q6k = matvecQ2KAVX2, matvecQ3KAVX2, matvecQ4KAVX2, matvecQ5KAVX2, matvecQ6KAVX2
		l = append(l, s)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C {
		l = append(l, quantKernels{name: "avx2", quantize: quantizeQ8Asm2, q8: matvecQ8AVX2, q4: matvecQ4AVX2,
			gemm8: gemmQ8AVX2, gemm4: gemmQ4AVX2,
			q2k: matvecQ2KAVX2, q3k: matvecQ3KAVX2, q4k: matvecQ4KAVX2, q5k: matvecQ5KAVX2, q6k: matvecQ6KAVX2})
	}
	return append(l, genericQuant)
}

func init() {
	sets := quantSets()
	pick := sets[0]
	if want := os.Getenv("MYCEL_ISA"); want != "" {
		for _, s := range sets {
			if s.name == want {
				pick = s
			}
		}
	}
	pick.install()
}

func quantizeQ8Asm512(dst []byte, x []float32) {
	nb := len(x) / kernels.QK
	if nb == 0 {
		return
	}
	_ = dst[nb*kernels.Q8_0BlockBytes-1]
	if nb < 16 {
		quantizeQ8AVX512(&dst[0], &x[0], nb)
		return
	}
	// Sixteen blocks at a time, the last sixteen moved back to end at
	// block nb: the blocks they share come out the same.
	ng := nb / 16
	quantizeQ8x16AVX512(&dst[0], &x[0], ng)
	if nb > 16*ng {
		quantizeQ8x16AVX512(&dst[(nb-16)*kernels.Q8_0BlockBytes], &x[(nb-16)*kernels.QK], 1)
	}
}

func quantizeQ8Asm2(dst []byte, x []float32) {
	nb := len(x) / kernels.QK
	if nb == 0 {
		return
	}
	_ = dst[nb*kernels.Q8_0BlockBytes-1]
	quantizeQ8AVX2(&dst[0], &x[0], nb)
}

// checkQuantArgs panics unless w holds len(out) rows of nb blocks of bs
// bytes and xq one Q8_0 row of nb blocks. It reports whether there is work.
func checkQuantArgs(out []float32, w []byte, nb, bs int, xq []byte) bool {
	if len(out) == 0 || nb <= 0 {
		for i := range out {
			out[i] = 0
		}
		return false
	}
	_ = w[len(out)*nb*bs-1]
	_ = xq[nb*kernels.Q8_0BlockBytes-1]
	return true
}

// prefetchDistance is how far ahead of the rows in use the matvecs
// prefetch: enough bytes in flight to cover the memory latency at full
// bandwidth.
var prefetchDistance = 16 << 10

// prefetchAhead returns the matvecs' prefetch distance for rows of rb
// bytes: a whole number of four-row groups, at least one.
func prefetchAhead(rb int) int {
	g := 4 * rb
	return max(1, (prefetchDistance+g-1)/g) * g
}

func matvecQ8VNNI(out []float32, w []byte, nb int, xq []byte) {
	if checkQuantArgs(out, w, nb, kernels.Q8_0BlockBytes, xq) {
		q8MatvecVNNI(&out[0], &w[0], len(out), nb, &xq[0], prefetchAhead(nb*kernels.Q8_0BlockBytes))
	}
}

func matvecQ4VNNI(out []float32, w []byte, nb int, xq []byte) {
	if checkQuantArgs(out, w, nb, kernels.Q4_0BlockBytes, xq) {
		q4MatvecVNNI(&out[0], &w[0], len(out), nb, &xq[0], prefetchAhead(nb*kernels.Q4_0BlockBytes))
	}
}

func matvecQ8AVX2(out []float32, w []byte, nb int, xq []byte) {
	if checkQuantArgs(out, w, nb, kernels.Q8_0BlockBytes, xq) {
		q8MatvecAVX2(&out[0], &w[0], len(out), nb, &xq[0], prefetchAhead(nb*kernels.Q8_0BlockBytes))
	}
}

func matvecQ4AVX2(out []float32, w []byte, nb int, xq []byte) {
	if checkQuantArgs(out, w, nb, kernels.Q4_0BlockBytes, xq) {
		q4MatvecAVX2(&out[0], &w[0], len(out), nb, &xq[0], prefetchAhead(nb*kernels.Q4_0BlockBytes))
	}
}

// gemmQ8VNNI is gemmQ8PVNNI with the preparation of xq done here, into
// new scratch (MatMul prepares once per call into scratch it keeps).
func gemmQ8VNNI(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int) {
	if rows <= 0 || n <= 0 || nb <= 0 {
		return
	}
	if n < 4 {
		gemmQ8PVNNI(out, ldo, w, rows, nb, nil, xq, n)
		return
	}
	xg := alignedScratch(nil, prep8Bytes(nb, n))
	prepQ8VNNI(xg, xq, nb, n)
	gemmQ8PVNNI(out, ldo, w, rows, nb, xg, xq, n)
}

// prepQ8VNNI prepares n ≥ 4 tokens of xq for q8GemmVNNI: group g holds
// tokens 4g..4g+3, the last group tokens n−4..n−1.
func prepQ8VNNI(xg, xq []byte, nb, n int) {
	xb := nb * kernels.Q8_0BlockBytes
	gb := nb * prep8Group
	groups := (n + 3) / 4
	_ = xq[n*xb-1]
	_ = xg[groups*gb-1]
	for g := 0; g < groups; g++ {
		t0 := min(4*g, n-4)
		q8GemmPrepVNNI(&xg[g*gb], &xq[t0*xb], nb)
	}
}

// gemmQ8PVNNI covers rows × n with q8Gemm8VNNI tiles of 4 rows × 8 tokens
// (two prepared groups) and a q8GemmVNNI tile of 4 rows × 4 tokens for an
// odd last group, on xg from prepQ8VNNI, in gemmTiles' order and with its
// overlapping last tiles; fewer than four tokens or rows use the matvec
// on xq.
func gemmQ8PVNNI(out []float32, ldo int, w []byte, rows, nb int, xg, xq []byte, n int) {
	if rows <= 0 || n <= 0 || nb <= 0 {
		return
	}
	rb, xb, gb := nb*kernels.Q8_0BlockBytes, nb*kernels.Q8_0BlockBytes, nb*prep8Group
	_ = out[(n-1)*ldo+rows-1]
	_ = w[rows*rb-1]
	if n < 4 || rows < 4 {
		_ = xq[n*xb-1]
		for t := 0; t < n; t++ {
			matvecQ8VNNI(out[t*ldo:t*ldo+rows], w[:rows*rb], nb, xq[t*xb:(t+1)*xb])
		}
		return
	}
	groups := (n + 3) / 4
	_ = xg[groups*gb-1]
	pfd := prefetchAhead(rb)
	for r := 0; r < rows; r += 4 {
		r0 := min(r, rows-4)
		g := 0
		for ; g+1 < groups; g += 2 {
			t0, t1 := 4*g, min(4*g+4, n-4)
			q8Gemm8VNNI(&out[t0*ldo+r0], &out[t1*ldo+r0], ldo, &w[r0*rb], nb, &xg[g*gb], pfd)
		}
		if g < groups {
			t0 := min(4*g, n-4)
			q8GemmVNNI(&out[t0*ldo+r0], ldo, &w[r0*rb], nb, &xg[g*gb], pfd)
		}
	}
}

func gemmQ4VNNI(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int) {
	gemmTiles(q4GemmVNNI, 4, matvecQ4VNNI, kernels.Q4_0BlockBytes, out, ldo, w, rows, nb, xq, n)
}

func gemmQ8AVX2(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int) {
	gemmTiles(q8GemmAVX2, 2, matvecQ8AVX2, kernels.Q8_0BlockBytes, out, ldo, w, rows, nb, xq, n)
}

func gemmQ4AVX2(out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int) {
	gemmTiles(q4GemmAVX2, 2, matvecQ4AVX2, kernels.Q4_0BlockBytes, out, ldo, w, rows, nb, xq, n)
}

// gemmTiles covers rows × n with tiles of tr rows × 4 tokens. Tiles go
// token-group by token-group within a row group, so the group's weights
// stay in L1 while every token passes over them. When rows or n is not a
// multiple of the tile, the last tile is moved back to overlap the one
// before: it recomputes a few outputs, bit for bit the same, instead of
// streaming the weights again per leftover token. Fewer than four tokens,
// or fewer rows than a tile, use the matvec.
func gemmTiles(tile func(out *float32, ldo int, w *byte, nb int, xq *byte), tr int,
	mv func(out []float32, w []byte, nb int, xq []byte),
	bs int, out []float32, ldo int, w []byte, rows, nb int, xq []byte, n int) {
	if rows <= 0 || n <= 0 || nb <= 0 {
		return
	}
	rb, xb := nb*bs, nb*kernels.Q8_0BlockBytes
	_ = out[(n-1)*ldo+rows-1]
	_ = w[rows*rb-1]
	_ = xq[n*xb-1]
	if n < 4 || rows < tr {
		for t := 0; t < n; t++ {
			mv(out[t*ldo:t*ldo+rows], w[:rows*rb], nb, xq[t*xb:(t+1)*xb])
		}
		return
	}
	for r := 0; r < rows; r += tr {
		r0 := min(r, rows-tr)
		for t := 0; t < n; t += 4 {
			t0 := min(t, n-4)
			tile(&out[t0*ldo+r0], ldo, &w[r0*rb], nb, &xq[t0*xb])
		}
	}
}
