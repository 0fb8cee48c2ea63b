//go:build amd64 && !noasm

package cpu

import "github.com/mycel-net/mycel/kernels"

//go:noescape
func q4PrepVBMI(dst *byte, xq *byte, ng int)

//go:noescape
func q4MatvecVBMI(out *float32, w *byte, rows, nb int, xp *byte, pfd int)

// prepQ4VBMI is prepQ4Generic with the whole groups in assembly.
func prepQ4VBMI(dst, xq []byte, nb int) {
	if nb <= 0 {
		return
	}
	_ = dst[q4PrepBytes(nb)-1]
	_ = xq[nb*kernels.Q8_0BlockBytes-1]
	ng := nb / 4
	if ng > 0 {
		q4PrepVBMI(&dst[0], &xq[0], ng)
	}
	if nb > 4*ng {
		prepQ4Generic(dst[ng*q4PrepGroup:], xq[4*ng*kernels.Q8_0BlockBytes:], nb-4*ng)
	}
}

func matvecQ4VBMI(out []float32, w []byte, nb int, xp []byte) {
	if len(out) == 0 || nb <= 0 {
		clear(out)
		return
	}
	_ = w[len(out)*nb*kernels.Q4_0BlockBytes-1]
	_ = xp[q4PrepBytes(nb)-1]
	q4MatvecVBMI(&out[0], &w[0], len(out), nb, &xp[0], prefetchAhead(nb*kernels.Q4_0BlockBytes))
}
