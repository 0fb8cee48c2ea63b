//go:build amd64 && !noasm

package cpu

//go:noescape
func expAVX2(dst, src *float32, n int, shift, scale float32) float32

// expShiftedAVX2 is expShiftedGeneric with the bulk in AVX2 assembly.
func expShiftedAVX2(dst, src []float32, shift, scale float32) float32 {
	dst = dst[:len(src)]
	n := len(src) &^ 7
	var s float32
	if n > 0 {
		s = expAVX2(&dst[0], &src[0], n, shift, scale)
	}
	for i := n; i < len(src); i++ {
		e := expf((src[i] - shift) * scale)
		dst[i] = e
		s += e
	}
	return s
}

// swigluAVX2Go computes silu(gate)·up with the exponentials in AVX2, a
// block at a time through a stack buffer, so that out may alias gate.
func swigluAVX2Go(out, gate, up []float32) {
	var e [256]float32
	for lo := 0; lo < len(gate); lo += len(e) {
		hi := min(lo+len(e), len(gate))
		g, u, o := gate[lo:hi], up[lo:hi], out[lo:hi]
		expShiftedAVX2(e[:len(g)], g, 0, -1)
		for i, x := range g {
			o[i] = x / (1 + e[i]) * u[i]
		}
	}
}
