//go:build amd64 && !noasm

package cpu

//go:noescape
func maxAVX2(x *float32, n int) float32

// maxF32AVX2 is maxF32Generic with the AVX2 kernel for all but the last
// len(x)%8 values.
func maxF32AVX2(x []float32) float32 {
	n8 := len(x) &^ 7
	if n8 == 0 {
		return maxF32Generic(x)
	}
	m := maxAVX2(&x[0], n8)
	for _, v := range x[n8:] {
		m = max(m, v)
	}
	return m
}
