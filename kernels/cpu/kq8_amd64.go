//go:build amd64 && !noasm

package cpu

// The K-quant integer kernels of kq8_amd64.s: rows consecutive rows of nb
// super-blocks against one row of activations quantized by quantizeQ8K.

//go:noescape
func q2kDotAVX2(out *float32, w *byte, rows, nb int, xk *byte)

//go:noescape
func q3kDotAVX2(out *float32, w *byte, rows, nb int, xk *byte)

//go:noescape
func q4kDotAVX2(out *float32, w *byte, rows, nb int, xk *byte)

//go:noescape
func q5kDotAVX2(out *float32, w *byte, rows, nb int, xk *byte)

//go:noescape
func q6kDotAVX2(out *float32, w *byte, rows, nb int, xk *byte)

// kq8Asm wraps a kernel of kq8_amd64.s for blocks of bb bytes, checking
// the lengths.
func kq8Asm(bb int, k func(out *float32, w *byte, rows, nb int, xk *byte)) func(out []float32, w []byte, nb int, xk []byte) {
	return func(out []float32, w []byte, nb int, xk []byte) {
		if len(out) == 0 || nb <= 0 {
			clear(out)
			return
		}
		_ = w[len(out)*nb*bb-1]
		_ = xk[nb*q8kBlock-1]
		k(&out[0], &w[0], len(out), nb, &xk[0])
	}
}

var (
	matvecQ2KAVX2 = kq8Asm(84, q2kDotAVX2)
	matvecQ3KAVX2 = kq8Asm(110, q3kDotAVX2)
	matvecQ4KAVX2 = kq8Asm(144, q4kDotAVX2)
	matvecQ5KAVX2 = kq8Asm(176, q5kDotAVX2)
	matvecQ6KAVX2 = kq8Asm(210, q6kDotAVX2)
)
