package cpu

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

// BenchQuant measures the quantized kernels on this machine with the given
// number of threads (0: GOMAXPROCS) and writes a report to w: the memory
// read bandwidth, the throughput of Q8_0 and Q4_0 matvecs in GB/s of
// weights, a stories110M-shaped decode in tokens/s with its share of the
// bandwidth bound, and prefill in GFLOPS-equivalent (2·rows·cols·tokens),
// with one core's int8 peak; then a matvec and a prefill of each of the
// other block types.
// It takes a few seconds and about 400 MB of memory.
func BenchQuant(w io.Writer, threads int) error {
	b := New(threads)
	defer b.Close()
	bw := ReadBandwidth(b) * 1e9
	fmt.Fprintf(w, "quantized kernels: cpu/%s, %d threads\n", quantISA, b.Threads())
	fmt.Fprintf(w, "read bandwidth (256 MB): %.1f GB/s\n", bw/1e9)
	if peak := Int8PeakGOPS(); peak > 0 {
		fmt.Fprintf(w, "int8 peak (vpdpbusd from registers): %.0f GOPS a core, %.0f on %d threads\n", peak, peak*float64(b.Threads()), b.Threads())
	}
	for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
		fmt.Fprintf(w, "%s matvec (n=1, one matrix, cache-resident where it fits the L3):\n", dt)
		for _, s := range quantBenchShapes {
			gbs := quantBenchMatMul(b, dt, s[0], s[1], 1)
			fmt.Fprintf(w, "  %5dx%-5d %7.1f GB/s  %5.2fx bandwidth\n", s[0], s[1], gbs/1e9, gbs/bw)
		}
		tps, bytes := quantBenchDecode(b, dt)
		gbs := tps * float64(bytes)
		fmt.Fprintf(w, "  stories110M decode: %.0f tok/s, %.1f GB/s of weights (%.0f MB/token), %.0f%% of the bandwidth bound\n",
			tps, gbs/1e9, float64(bytes)/1e6, 100*gbs/bw)
		for _, n := range []int{64, 128} {
			for _, s := range [][2]int{{2048, 768}, {4096, 4096}} {
				gbs := quantBenchMatMul(b, dt, s[0], s[1], n)
				flops := gbs / float64(quantBenchBytes(dt, s[0], s[1])) * 2 * float64(s[0]*s[1]*n)
				fmt.Fprintf(w, "  prefill n=%-3d %5dx%-5d %7.1f GFLOPS\n", n, s[0], s[1], flops/1e9)
			}
		}
	}
	prompts := "the float GEMM"
	if KQuantPromptsInt8() {
		prompts = "the quantized GEMM"
	}
	fmt.Fprintf(w, "K-quants on int8 activations (prefill on %s):\n", prompts)
	quantBenchTypes(w, b, bw, []kernels.DType{kernels.Q2_K, kernels.Q3_K, kernels.Q4_K, kernels.Q5_K, kernels.Q6_K})
	fmt.Fprintf(w, "block types on float activations (a decoded row per matvec, the float GEMM for prefill):\n")
	quantBenchTypes(w, b, bw, []kernels.DType{kernels.Q4_1, kernels.Q5_0, kernels.Q5_1, kernels.IQ4_NL, kernels.IQ4_XS})
	return nil
}

// quantBenchTypes writes a 4096×4096 matvec's GB/s and a 64-token
// prefill's GFLOPS for each of dts.
func quantBenchTypes(w io.Writer, b *Backend, bw float64, dts []kernels.DType) {
	for _, dt := range dts {
		const rows, cols, n = 4096, 4096, 64
		gbs := quantBenchMatMul(b, dt, rows, cols, 1)
		pre := quantBenchMatMul(b, dt, rows, cols, n)
		flops := pre / float64(quantBenchBytes(dt, rows, cols)) * 2 * float64(rows*cols*n)
		fmt.Fprintf(w, "  %-6s matvec %dx%d %6.1f GB/s %5.2fx bandwidth; prefill n=%d %7.1f GFLOPS\n",
			dt, rows, cols, gbs/1e9, gbs/bw, n, flops/1e9)
	}
}

// quantBenchShapes are the matvec shapes BenchQuant reports (rows x cols).
var quantBenchShapes = [][2]int{{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}, {4096, 4096}}

func quantBenchBytes(dt kernels.DType, rows, cols int) int {
	rb, _ := dt.RowBytes(cols)
	return rows * rb
}

// quantBenchMatrix makes a rows×cols matrix of random quants with modest scales.
func quantBenchMatrix(dt kernels.DType, rows, cols int, seed uint64) *kernels.Matrix {
	data := make([]byte, quantBenchBytes(dt, rows, cols))
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], r.Uint64())
	}
	bs := dt.BlockBytes()
	for i := 0; i < len(data); i += bs {
		for _, o := range kernels.HalfOffsets(dt) {
			binary.LittleEndian.PutUint16(data[i+o:], kernels.F32ToF16(0.01+float32(r.Float64())*0.01))
		}
	}
	m, err := kernels.NewMatrix(dt, rows, cols, data)
	if err != nil {
		panic(err)
	}
	return m
}

func quantBenchActivations(n int) []float32 {
	r := rand.New(rand.NewPCG(7, 7))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// quantBenchTime returns f's time per call: the fastest batch of calls
// (each batch at least 200 µs) seen in about 300 ms. The minimum is the
// robust statistic on a machine shared with other work.
func quantBenchTime(f func()) time.Duration {
	f()
	k := 1
	for {
		start := time.Now()
		for range k {
			f()
		}
		if time.Since(start) >= 200*time.Microsecond {
			break
		}
		k *= 2
	}
	best := time.Duration(1 << 62)
	deadline := time.Now().Add(300 * time.Millisecond)
	for n := 0; n < 5 || time.Now().Before(deadline); n++ {
		start := time.Now()
		for range k {
			f()
		}
		best = min(best, time.Since(start)/time.Duration(k))
	}
	return best
}

// quantBenchMatMul returns the bytes of weights per second of Backend.MatMul
// with n tokens.
func quantBenchMatMul(b *Backend, dt kernels.DType, rows, cols, n int) float64 {
	m := quantBenchMatrix(dt, rows, cols, uint64(rows*cols))
	x := quantBenchActivations(n * cols)
	out := make([]float32, n*rows)
	t := quantBenchTime(func() { b.MatMul(out, m, x, n) })
	return float64(len(m.Data)) / t.Seconds()
}

// quantBenchDecode runs the matmuls of one stories110M token (dim 768, hidden
// 2048, 12 layers, vocab 32000) and returns tokens/s and weight bytes per
// token.
func quantBenchDecode(b *Backend, dt kernels.DType) (float64, int) {
	const dim, hidden, layers, vocab = 768, 2048, 12, 32000
	var ms []*kernels.Matrix
	seed := uint64(100)
	add := func(rows, cols int) {
		ms = append(ms, quantBenchMatrix(dt, rows, cols, seed))
		seed++
	}
	for range layers {
		for range 4 {
			add(dim, dim)
		}
		add(hidden, dim)
		add(hidden, dim)
		add(dim, hidden)
	}
	add(vocab, dim)
	bytes := 0
	for _, m := range ms {
		bytes += len(m.Data)
	}
	x := quantBenchActivations(hidden)
	out := make([]float32, vocab)
	t := quantBenchTime(func() {
		for _, m := range ms {
			b.MatMul(out, m, x, 1)
		}
	})
	return 1 / t.Seconds(), bytes
}
