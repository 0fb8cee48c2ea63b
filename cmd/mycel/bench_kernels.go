package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/kernels/cpu"
)

func newBenchKernelsCmd() *cobra.Command {
	var threads int
	cmd := &cobra.Command{
		Use:   "kernels",
		Short: "GFLOPS of matmul and matvec for each weight type, and memory read bandwidth",
		Long: `Times the CPU kernels that bound inference: memory read bandwidth, the
matrix-vector products of decode for every weight type on matrices larger
than the caches, and the matrix-matrix products of prompt processing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if err := cpu.BenchKernels(out, threads); err != nil {
				return err
			}
			fmt.Fprintln(out)
			return cpu.BenchQuant(out, threads)
		},
	}
	threadsFlag(cmd, &threads, "compute threads")
	return cmd
}

// bandwidthMeter measures the sustained read bandwidth of be's threads
// (cpu.SustainedBandwidth) again and again, reusing one buffer.
type bandwidthMeter struct {
	cpu   *cpu.Backend
	owned bool
	buf   []float32
}

func newBandwidthMeter(be kernels.Backend) *bandwidthMeter {
	m := &bandwidthMeter{}
	if c, ok := be.(*cpu.Backend); ok {
		m.cpu = c
	} else {
		m.cpu, m.owned = cpu.New(be.Threads()), true
	}
	return m
}

// measure reads memory for about d and returns GB/s.
func (m *bandwidthMeter) measure(d time.Duration) float64 {
	gbs, buf := cpu.SustainedBandwidth(m.cpu, d, m.buf)
	m.buf = buf
	return gbs
}

func (m *bandwidthMeter) close() {
	m.buf = nil
	if m.owned {
		m.cpu.Close()
	}
}
