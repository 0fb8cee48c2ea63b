//go:build openblas && cgo

package cpu

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/kernels/cpu/internal/openblas"
)

// BenchmarkVsOpenBLAS measures this package's GEMM and then OpenBLAS sgemm
// with as many threads, on 1024×1024×1024, best of several runs each, and
// reports both and their ratio. Run it alone:
//
//	go test -tags openblas -run XXX -bench VsOpenBLAS ./kernels/cpu
func BenchmarkVsOpenBLAS(b *testing.B) {
	const n = 1024
	threads := runtime.GOMAXPROCS(0)
	w := randMatrixF(kernels.F32, n, n, 1)
	x := randVecSeed(n*n, 9)
	ours, theirs := make([]float32, n*n), make([]float32, n*n)
	best := func(f func()) float64 {
		f()
		t := math.Inf(1)
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
			start := time.Now()
			f()
			t = min(t, time.Since(start).Seconds())
		}
		return 2 * n * n * n / t / 1e9
	}
	be := New(threads)
	defer be.Close()
	var g1, g2 float64
	for b.Loop() {
		g1 = best(func() { be.MatMul(ours, w, x, n) })
		openblas.SetThreads(threads)
		g2 = best(func() { openblas.SgemmNT(theirs, x, w.F32(), n, n, n) })
	}
	for i := range ours {
		if d := math.Abs(float64(ours[i] - theirs[i])); d > 1e-3 {
			b.Fatalf("[%d]: %v, OpenBLAS %v", i, ours[i], theirs[i])
		}
	}
	b.ReportMetric(g1, "GFLOPS")
	b.ReportMetric(g2, "OpenBLAS-GFLOPS")
	b.ReportMetric(g1/g2, "ratio")
}
