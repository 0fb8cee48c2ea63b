package cpu

import (
	"fmt"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// BenchmarkAttention is one decode step's attention over every layer of a
// stories110M-shaped model (12 layers of 12 heads of 64) at position 191
// of a 256-position cache, with float32 and with half-precision caches.
// The bytes are the cache bytes read; twelve layers' caches (19 MB in
// f32) outgrow the L2 cache, as in a decode step.
func BenchmarkAttention(b *testing.B) {
	const layers, heads, hd, capacity, pos = 12, 12, 64, 256, 191
	p := kernels.AttnParams{Heads: heads, KVHeads: heads, HeadDim: hd, Pos0: pos, N: 1, Cap: capacity, Scale: 0.125}
	q := randVecSeed(heads*hd, 1)
	out := make([]float32, heads*hd)
	read := int64(2 * heads * hd * (pos + 1))
	for _, threads := range []int{1, 2} {
		be := New(threads)
		b.Run(fmt.Sprintf("f32/threads=%d", threads), func(b *testing.B) {
			kc, vc := make([][]float32, layers), make([][]float32, layers)
			for l := range kc {
				kc[l], vc[l] = randVecSeed(p.KVSize(), uint64(2*l)), randVecSeed(p.KVSize(), uint64(2*l+1))
			}
			b.SetBytes(layers * read * 4)
			for b.Loop() {
				for l := range kc {
					be.Attention(out, q, kc[l], vc[l], p)
				}
			}
		})
		b.Run(fmt.Sprintf("f16/threads=%d", threads), func(b *testing.B) {
			kc, vc := make([][]uint16, layers), make([][]uint16, layers)
			for l := range kc {
				kc[l], vc[l] = make([]uint16, p.KVSize()), make([]uint16, p.KVSize())
				toF16Generic(kc[l], randVecSeed(p.KVSize(), uint64(2*l)))
				toF16Generic(vc[l], randVecSeed(p.KVSize(), uint64(2*l+1)))
			}
			b.SetBytes(layers * read * 2)
			for b.Loop() {
				for l := range kc {
					be.Attention16(out, q, kc[l], vc[l], p)
				}
			}
		})
		be.Close()
	}
}
