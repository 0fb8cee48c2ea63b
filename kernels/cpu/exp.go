package cpu

import "github.com/mycel-net/mycel/kernels"

// expShiftedGeneric sets dst[i] = e^((src[i]−shift)·scale) and returns the
// sum of the dst values. dst may equal src.
func expShiftedGeneric(dst, src []float32, shift, scale float32) float32 {
	dst = dst[:len(src)]
	var s float32
	for i, v := range src {
		e := kernels.Exp32((v - shift) * scale)
		dst[i] = e
		s += e
	}
	return s
}

// expf is kernels.Exp32, under the short name the kernels use.
func expf(x float32) float32 { return kernels.Exp32(x) }
