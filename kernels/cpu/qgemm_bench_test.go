package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// BenchmarkQGKernels times the quantized GEMM's parts on one thread, from
// the caches: the tile kernel over a packed panel and prepared groups, the
// panel packing and the activation preparation, in GOPS of the products
// they serve (2·16·8·32 per block and group for the tiles).
func BenchmarkQGKernels(b *testing.B) {
	set := quantSets()[0].qg
	if set.gemm == nil {
		b.Skip("no quantized GEMM kernel")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, nb := range []int{9, 24, 64} {
		const ng = 16
		w := randQuantMatrix(r, kernels.Q4_0, qgRows, nb, false)
		xb := nb * kernels.Q8_0BlockBytes
		xq := make([]byte, 0, ng*qgToks*xb)
		for range ng * qgToks {
			xq = append(xq, randXQ(r, nb, false)...)
		}
		panel := alignedScratch(nil, nb*qgPanelBlock)
		offs := qgOffsets(qgRows, nb*kernels.Q4_0BlockBytes)
		set.pack4(panel, w, offs, nb)
		xg := alignedScratch(nil, ng*nb*qgGroupBlock)
		for g := 0; g < ng; g++ {
			set.prep(xg[g*nb*qgGroupBlock:], xq[g*qgToks*xb:], xb, nb, 8)
		}
		out := make([]float32, ng*qgToks*qgRows)
		b.Run(fmt.Sprintf("gemm/nb=%d", nb), func(b *testing.B) {
			for b.Loop() {
				set.gemm(out, qgRows, panel, nb, xg, ng, 0xffff, nil)
			}
			b.ReportMetric(float64(2*qgRows*qgToks*32*nb*ng)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOPS")
		})
		b.Run(fmt.Sprintf("pack4/nb=%d", nb), func(b *testing.B) {
			for b.Loop() {
				set.pack4(panel, w, offs, nb)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nb), "ns/block")
		})
		b.Run(fmt.Sprintf("prep/nb=%d", nb), func(b *testing.B) {
			for b.Loop() {
				set.prep(xg, xq, xb, nb, 8)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nb), "ns/block")
		})
	}
}
