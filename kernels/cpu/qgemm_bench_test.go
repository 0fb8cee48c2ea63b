package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

// BenchmarkQGKernels times the quantized GEMM's parts on one thread, from
// the caches, in turn, and reports their best times: the tile kernel over
// a packed panel and 16 prepared groups in GOPS (2·32·4·32 per block and
// group), the panel packing and the activation preparation per block.
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
		b.Run(fmt.Sprintf("nb=%d", nb), func(b *testing.B) {
			fs := []func(){
				func() { set.gemm(out, qgRows, panel, nb, xg, ng, 0xffffffff, nil) },
				func() { set.pack4(panel, w, offs, nb) },
				func() { set.prep(xg, xq, xb, nb, 8) },
			}
			best := []time.Duration{time.Hour, time.Hour, time.Hour}
			for b.Loop() {
				for i, f := range fs {
					t0 := time.Now()
					f()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			b.ReportMetric(float64(2*qgRows*qgToks*32*nb*ng)/float64(best[0].Nanoseconds()), "gemm-GOPS")
			b.ReportMetric(float64(best[1].Nanoseconds())/float64(nb), "pack-ns/block")
			b.ReportMetric(float64(best[2].Nanoseconds())/float64(nb), "prep-ns/block")
		})
	}
}
