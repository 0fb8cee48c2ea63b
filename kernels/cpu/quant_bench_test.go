package cpu

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

func TestBenchQuantReport(t *testing.T) {
	if testing.Short() || os.Getenv("MYCEL_BENCH_REPORT") == "" {
		t.Skip("set MYCEL_BENCH_REPORT=1 to print BenchQuant's report")
	}
	if err := BenchQuant(os.Stdout, 0); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMatvecQuant reports GB/s of weights for Backend.MatMul with one
// token, per dtype and shape.
func BenchmarkMatvecQuant(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
		for _, s := range quantBenchShapes {
			b.Run(fmt.Sprintf("%s/%dx%d", dt, s[0], s[1]), func(b *testing.B) {
				be := New(0)
				defer be.Close()
				m := quantBenchMatrix(dt, s[0], s[1], 1)
				x := quantBenchActivations(s[1])
				out := make([]float32, s[0])
				b.SetBytes(int64(len(m.Data)))
				for b.Loop() {
					be.MatMul(out, m, x, 1)
				}
			})
		}
	}
}

// BenchmarkPrefillQuant reports GFLOPS-equivalent (2·rows·cols·n) of
// Backend.MatMul with n tokens.
func BenchmarkPrefillQuant(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
		for _, n := range []int{64, 128} {
			rows, cols := 2048, 768
			b.Run(fmt.Sprintf("%s/n=%d/%dx%d", dt, n, rows, cols), func(b *testing.B) {
				be := New(0)
				defer be.Close()
				m := quantBenchMatrix(dt, rows, cols, 1)
				x := quantBenchActivations(n * cols)
				out := make([]float32, n*rows)
				for b.Loop() {
					be.MatMul(out, m, x, n)
				}
				b.ReportMetric(2*float64(rows*cols*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

// BenchmarkDecodeQuant runs the matmuls of one stories110M token.
func BenchmarkDecodeQuant(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
		b.Run(dt.String(), func(b *testing.B) {
			be := New(0)
			defer be.Close()
			tps, bytes := quantBenchDecode(be, dt)
			b.ReportMetric(tps, "tok/s")
			b.ReportMetric(tps*float64(bytes)/1e9, "GB/s")
		})
	}
}

// BenchmarkBatchQuant reports GFLOPS-equivalent of Backend.MatMul with a
// few tokens, as in a batched decode pass.
func BenchmarkBatchQuant(b *testing.B) {
	for _, n := range []int{4, 8} {
		for _, s := range [][2]int{{768, 768}, {2048, 768}, {768, 2048}} {
			rows, cols := s[0], s[1]
			b.Run(fmt.Sprintf("q8_0/n=%d/%dx%d", n, rows, cols), func(b *testing.B) {
				be := New(1)
				defer be.Close()
				m := quantBenchMatrix(kernels.Q8_0, rows, cols, 1)
				x := quantBenchActivations(n * cols)
				out := make([]float32, n*rows)
				for b.Loop() {
					be.MatMul(out, m, x, n)
				}
				b.ReportMetric(2*float64(rows*cols*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}

// quantGEMMShapes are the compute-bound quantized products, as (n, rows,
// cols): prompts of 128 and 512 tokens through stories110M's 768×768 and
// 2048×768 weights, and the forward products of training a
// stories15M-shaped model over 1024 positions (w2, w1/w3 and the head).
var quantGEMMShapes = [][3]int{
	{128, 768, 768}, {128, 2048, 768}, {512, 768, 768}, {512, 2048, 768},
	{1024, 288, 768}, {1024, 768, 288}, {1024, 32000, 288},
}

// BenchmarkGEMMQuant runs, for each shape, MatMul over Q4_0, Q8_0 and f32
// weights in turn, round after round, with 1 and 2 threads, and reports
// each one's best time as GFLOPS (2·n·rows·cols), the Q4_0 and Q8_0 rates
// as a fraction of the int8 dot-product peak of the threads' cores
// (Int8PeakGOPS), and Q4_0 against f32.
func BenchmarkGEMMQuant(b *testing.B) {
	peak := Int8PeakGOPS()
	for _, s := range quantGEMMShapes {
		n, rows, cols := s[0], s[1], s[2]
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("n%d/%dx%d/threads=%d", n, rows, cols, threads), func(b *testing.B) {
				be := New(threads)
				defer be.Close()
				ws := []*kernels.Matrix{
					quantBenchMatrix(kernels.Q4_0, rows, cols, 1),
					quantBenchMatrix(kernels.Q8_0, rows, cols, 1),
					benchMatrix(kernels.F32, rows, cols),
				}
				x := quantBenchActivations(n * cols)
				out := make([]float32, n*rows)
				best := []time.Duration{time.Hour, time.Hour, time.Hour}
				for b.Loop() {
					for i, w := range ws {
						t0 := time.Now()
						be.MatMul(out, w, x, n)
						best[i] = min(best[i], time.Since(t0))
					}
				}
				flop := 2 * float64(n) * float64(rows) * float64(cols)
				gf := func(d time.Duration) float64 { return flop / float64(d.Nanoseconds()) }
				b.ReportMetric(gf(best[0]), "q4-GFLOPS")
				b.ReportMetric(gf(best[1]), "q8-GFLOPS")
				b.ReportMetric(gf(best[2]), "f32-GFLOPS")
				b.ReportMetric(gf(best[0])/gf(best[2]), "q4/f32")
				if peak > 0 {
					b.ReportMetric(gf(best[0])/(peak*float64(be.Threads())), "q4/peak")
					b.ReportMetric(gf(best[1])/(peak*float64(be.Threads())), "q8/peak")
				}
			})
		}
	}
}

func BenchmarkInt8Peak(b *testing.B) {
	var g float64
	for b.Loop() {
		g = Int8PeakGOPS()
	}
	b.ReportMetric(g, "GOPS")
}
