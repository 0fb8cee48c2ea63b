//go:build amd64 && !noasm

package cpu

import "github.com/mycel-net/mycel/kernels"

// The Q8_K rounding of q8k_amd64.s: one block of 256 activations x to
// int8 in dst, returning the block's scale, bit for bit as q8kRoundGo.

//go:noescape
func q8kRound512(dst *byte, x *float32) float32

//go:noescape
func q8kRound256(dst *byte, x *float32) float32

func q8kRoundAsm(k func(dst *byte, x *float32) float32) func(dst []byte, xb []float32) float32 {
	return func(dst []byte, xb []float32) float32 {
		_ = dst[kernels.QKK-1]
		_ = xb[kernels.QKK-1]
		return k(&dst[0], &xb[0])
	}
}

var (
	q8kRoundAVX512 = q8kRoundAsm(q8kRound512)
	q8kRoundAVX2   = q8kRoundAsm(q8kRound256)
)
