package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
)

func newBenchKernelsCmd() *cobra.Command {
	var threads int
	var size int
	cmd := &cobra.Command{
		Use:   "kernels",
		Short: "GFLOPS of matmul and matvec for each weight type, and memory read bandwidth",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := kernels.Open("cpu", threads)
			if err != nil {
				return err
			}
			defer be.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "backend %s, %d threads\n", be.Name(), be.Threads())
			gbs := cpuReadBandwidth(be)
			fmt.Fprintf(out, "%-28s %8.1f GB/s\n", "read bandwidth (256 MiB)", gbs)
			for _, t := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0} {
				gf, bw := benchMatMul(be, t, 4096, 4096, 1)
				fmt.Fprintf(out, "%-28s %8.1f GFLOPS %7.1f GB/s\n", fmt.Sprintf("matvec %s 4096x4096", t), gf, bw)
			}
			for _, t := range []kernels.DType{kernels.F32, kernels.F16, kernels.Q8_0, kernels.Q4_0} {
				gf, _ := benchMatMul(be, t, size, size, size)
				fmt.Fprintf(out, "%-28s %8.1f GFLOPS\n", fmt.Sprintf("matmul %s %d^3", t, size), gf)
			}
			return cmd.Context().Err()
		},
	}
	cmd.Flags().IntVarP(&threads, "threads", "t", 0, "compute threads (default: all cores)")
	cmd.Flags().IntVar(&size, "size", 1024, "matmul size (n = rows = cols)")
	return cmd
}

// randomMatrix makes a rows×cols matrix of type t with values in [-1, 1).
func randomMatrix(t kernels.DType, rows, cols int, seed uint64) *kernels.Matrix {
	rng := rand.New(rand.NewPCG(seed, 1))
	row := make([]float32, cols)
	rb, _ := t.RowBytes(cols)
	data := make([]byte, 0, rows*rb)
	for r := 0; r < rows; r++ {
		for i := range row {
			row[i] = rng.Float32()*2 - 1
		}
		data = kernels.Encode(data, t, row)
	}
	m, err := kernels.NewMatrix(t, rows, cols, data)
	if err != nil {
		panic(err)
	}
	return m
}

// benchMatMul times out = x·Wᵀ for n rows of x and returns GFLOPS and the
// weight bytes streamed per second; the best of several runs.
func benchMatMul(be kernels.Backend, t kernels.DType, rows, cols, n int) (gflops, gbs float64) {
	w := randomMatrix(t, rows, cols, 7)
	x := make([]float32, n*cols)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	out := make([]float32, n*rows)
	best := bestTime(func() { be.MatMul(out, w, x, n) }, 300*time.Millisecond)
	flops := 2 * float64(rows) * float64(cols) * float64(n)
	return flops / best.Seconds() / 1e9, float64(len(w.Data)) / best.Seconds() / 1e9
}

// bestTime runs f once to warm up, then repeatedly for at least budget
// (and at least 3 times), returning the fastest run.
func bestTime(f func(), budget time.Duration) time.Duration {
	f()
	best := time.Duration(1<<63 - 1)
	start := time.Now()
	for i := 0; i < 3 || time.Since(start) < budget; i++ {
		t0 := time.Now()
		f()
		best = min(best, time.Since(t0))
	}
	return best
}

// cpuReadBandwidth measures how fast the backend streams a 256 MiB f32
// matrix through a matrix-vector product: the read bandwidth decode is
// bound by. The matrix is far larger than any cache.
func cpuReadBandwidth(be kernels.Backend) float64 {
	const rows, cols = 16384, 4096
	data := make([]byte, rows*cols*4)
	f := kernels.BytesF32(data)
	for i := range f {
		f[i] = float32(i&1023) * 0.001
	}
	w, _ := kernels.NewMatrix(kernels.F32, rows, cols, data)
	x := make([]float32, cols)
	out := make([]float32, rows)
	best := bestTime(func() { be.MatMul(out, w, x, 1) }, 500*time.Millisecond)
	return float64(len(data)) / best.Seconds() / 1e9
}
