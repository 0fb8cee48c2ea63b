//go:build unix

package model_test

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// synthWeights writes a synthetic model of a named shape (see
// checkpoints.SynthShapes) to a temporary file and loads it, memory-mapped
// as a real model file is.
func synthWeights(b testing.TB, shape string, dt kernels.DType) *model.Weights {
	b.Helper()
	p := filepath.Join(b.TempDir(), shape+".gguf")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := checkpoints.Synth(f, shape, dt, 1); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	m, err := checkpoints.Load(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m.Weights
}

// cpuTime is the user and system CPU time of the process so far: with one
// compute thread, the work a benchmark did, whatever else the machine ran
// meanwhile (which inflates the wall time on a shared machine).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds the wall and CPU time per position (or row) of a benchmark
// whose b.N iterations did k positions each and used cpu.
func report(b *testing.B, k int, cpu time.Duration, unit string) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*k), "µs/"+unit)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*k), "cpu-µs/"+unit)
}

// BenchmarkForward is the layer stack of a synthetic model on one thread:
// a decode step after 64 cached positions (decode), prompts of 3, 5 and 64
// positions (prefill=N), and one decode step of 4 and of 5 sequences as
// one batch (rows=N, ForwardRows), each at 64 cached positions. It reports
// the wall and CPU time per position (or per row).
//
//	go test -run '^$' -bench Forward ./model/
func BenchmarkForward(b *testing.B) {
	const hist = 64
	for _, tc := range []struct {
		shape string
		dt    kernels.DType
	}{{"stories15M", kernels.F32}, {"stories15M", kernels.Q8_0}, {"stories110M", kernels.Q8_0}, {"stories110M", kernels.Q4_0}} {
		b.Run(tc.shape+"-"+tc.dt.String(), func(b *testing.B) {
			w := synthWeights(b, tc.shape, tc.dt)
			be := openBackend(b, 1)
			e := model.NewEngine(w, be)
			cfg := w.Config
			d := cfg.Dim
			fill := func(x []float32, k int) {
				for j := range x {
					x[j] = float32((j*7+k)%17-8) / 16
				}
			}
			newCache := func() *model.Cache {
				c, err := e.NewCache(0, cfg.Layers, hist+1)
				if err != nil {
					b.Fatal(err)
				}
				x := make([]float32, hist*d)
				fill(x, 1)
				if err := e.Forward(c, x, hist); err != nil {
					b.Fatal(err)
				}
				return c
			}
			b.Run("decode", func(b *testing.B) {
				c := newCache()
				x := make([]float32, d)
				cpu0 := cpuTime()
				for b.Loop() {
					fill(x, 2)
					if err := e.Forward(c, x, 1); err != nil {
						b.Fatal(err)
					}
					c.Truncate(hist)
				}
				report(b, 1, cpuTime()-cpu0, "pos")
			})
			for _, np := range []int{3, 5, hist} {
				b.Run(fmt.Sprintf("prefill=%d", np), func(b *testing.B) {
					c, err := e.NewCache(0, cfg.Layers, np)
					if err != nil {
						b.Fatal(err)
					}
					x := make([]float32, np*d)
					cpu0 := cpuTime()
					for b.Loop() {
						fill(x, 3)
						c.Reset()
						if err := e.Forward(c, x, np); err != nil {
							b.Fatal(err)
						}
					}
					report(b, np, cpuTime()-cpu0, "pos")
				})
			}
			for _, rows := range []int{4, 5} {
				b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
					var cs []*model.Cache
					for range rows {
						cs = append(cs, newCache())
					}
					x := make([]float32, rows*d)
					cpu0 := cpuTime()
					for b.Loop() {
						fill(x, 4)
						if err := e.ForwardRows(cs, x); err != nil {
							b.Fatal(err)
						}
						for _, c := range cs {
							c.Truncate(hist)
						}
					}
					report(b, rows, cpuTime()-cpu0, "row")
				})
			}

		})
	}
}
