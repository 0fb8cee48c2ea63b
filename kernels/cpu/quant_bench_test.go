package cpu

import (
	"fmt"
	"os"
	"testing"

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
