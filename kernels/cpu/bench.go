package cpu

import (
	"fmt"
	"io"
	"math/rand/v2"
	"text/tabwriter"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

// KernelResult is one measurement of BenchKernels.
type KernelResult struct {
	Name   string
	GFLOPS float64 // 0 where it does not apply
	GBps   float64 // bytes read per second / 1e9; 0 where it does not apply
	Nanos  float64 // time per call
}

// MeasureKernels times the kernels that bound inference speed on this CPU
// with the given number of threads (0: GOMAXPROCS): DRAM read bandwidth,
// the f32/f16/bf16 matvec of decode on a matrix larger than the caches,
// the f32 GEMM of prefill, and the pool's round trip. It takes a few
// seconds.
func MeasureKernels(threads int) []KernelResult {
	b := New(threads)
	defer b.Close()
	var res []KernelResult

	gbs, ns := readBandwidth(b)
	res = append(res, KernelResult{Name: "read bandwidth (256 MB)", GBps: gbs, Nanos: ns})

	for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
		// Several copies, so that each call reads from DRAM.
		ws := make([]*kernels.Matrix, max(2, (192<<20)/(4096*4096*dt.BlockBytes())))
		for i := range ws {
			ws[i] = randMatrixF(dt, 4096, 4096, 1)
		}
		x := randVecSeed(4096, 1)
		out := make([]float32, 4096)
		i := 0
		ns := timeIt(func() {
			b.MatMul(out, ws[i%len(ws)], x, 1)
			i++
		})
		res = append(res, KernelResult{Name: "matvec " + dt.String() + " 4096x4096",
			GFLOPS: 2 * 4096 * 4096 / ns, GBps: float64(len(ws[0].Data)) / ns, Nanos: ns})
	}

	for _, s := range [][3]int{{1024, 1024, 1024}, {128, 768, 768}, {128, 2048, 768}} {
		n, rows, cols := s[0], s[1], s[2]
		w := randMatrixF(kernels.F32, rows, cols, 1)
		x := randVecSeed(n*cols, 2)
		out := make([]float32, n*rows)
		ns := timeIt(func() { b.MatMul(out, w, x, n) })
		res = append(res, KernelResult{Name: fmt.Sprintf("gemm f32 %dx%dx%d", n, rows, cols),
			GFLOPS: 2 * float64(n*rows*cols) / ns, Nanos: ns})
	}

	var c emptyTask
	ns = timeIt(func() { b.pool.run(&c, 2*b.pool.threads, 1) })
	res = append(res, KernelResult{Name: "pool round trip", Nanos: ns})
	return res
}

// BenchKernels runs MeasureKernels and writes a table of the results.
func BenchKernels(w io.Writer, threads int) error {
	b := New(threads)
	name, n := b.Name(), b.Threads()
	b.Close()
	res := MeasureKernels(threads)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s, %d threads\t GFLOPS\t GB/s\t time\t\n", name, n)
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t %s\t %s\t %s\t\n", r.Name, orDash(r.GFLOPS), orDash(r.GBps),
			time.Duration(r.Nanos*float64(time.Nanosecond)).Round(time.Nanosecond))
	}
	return tw.Flush()
}

func orDash(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// timeIt returns the best time of f in ns over about half a second.
func timeIt(f func()) float64 {
	f()
	best := time.Duration(1 << 62)
	start := time.Now()
	for reps := 0; reps < 3 || time.Since(start) < 500*time.Millisecond; reps++ {
		t0 := time.Now()
		f()
		best = min(best, time.Since(t0))
		if reps > 100000 {
			break
		}
	}
	return float64(best.Nanoseconds())
}

type emptyTask struct{}

func (emptyTask) run(_, _, _ int) {}

// randMatrixF makes a rows×cols matrix of type dt with values in
// [-scale, scale) from a fixed seed.
func randMatrixF(dt kernels.DType, rows, cols int, scale float32) *kernels.Matrix {
	r := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = (2*r.Float32() - 1) * scale
	}
	m, err := kernels.NewMatrix(dt, rows, cols, kernels.Encode(nil, dt, v))
	if err != nil {
		panic(err)
	}
	return m
}

func randVecSeed(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = 2*r.Float32() - 1
	}
	return v
}

// ReadBandwidth measures how fast b's threads read memory, in GB/s: the
// best of repeated sums over a 256 MB buffer, far larger than the caches.
// Decode reads every weight once per token, so this bounds its speed.
func ReadBandwidth(b *Backend) float64 {
	gbs, _ := readBandwidth(b)
	return gbs
}

// SustainedBandwidth measures how fast b's threads read memory over at
// least d, in GB/s: the bytes of back-to-back sums over a 256 MB buffer
// divided by their whole time. Where ReadBandwidth keeps the fastest pass
// (a few milliseconds), this is an average over a window as long as a
// decode run, the fair baseline for a decode rate averaged over that run.
// buf may be nil, or a buffer from an earlier call to reuse.
func SustainedBandwidth(b *Backend, d time.Duration, buf []float32) (gbs float64, reuse []float32) {
	if len(buf) != bandwidthFloats {
		buf = bandwidthBuffer()
		readAll(b, buf) // fault the pages in
	}
	var bytes float64
	start := time.Now()
	for time.Since(start) < d || bytes == 0 {
		readAll(b, buf)
		bytes += float64(len(buf) * 4)
	}
	return bytes / float64(time.Since(start).Nanoseconds()), buf
}

// bandwidthFloats is the size of the bandwidth benchmarks' buffer: 256 MB,
// far larger than the caches.
const bandwidthFloats = 64 << 20

func bandwidthBuffer() []float32 {
	buf := make([]float32, bandwidthFloats)
	for i := range buf {
		buf[i] = 1
	}
	return buf
}

func readBandwidth(b *Backend) (gbs, ns float64) {
	buf := bandwidthBuffer()
	ns = timeIt(func() { readAll(b, buf) })
	return float64(len(buf)*4) / ns, ns
}

// readTask sums a buffer in chunks, one partial sum per worker.
type readTask struct {
	buf  []float32
	sums []float32
}

const readChunk = 1 << 16

func (t *readTask) run(worker, lo, hi int) {
	for c := lo; c < hi; c++ {
		s := t.buf[c*readChunk : (c+1)*readChunk]
		t.sums[worker] += readSum(s)
	}
}

// readAll reads every byte of buf once, split over the backend's threads.
func readAll(b *Backend, buf []float32) float32 {
	t := &readTask{buf: buf, sums: make([]float32, b.pool.threads)}
	b.pool.run(t, len(buf)/readChunk, 1)
	var s float32
	for _, v := range t.sums {
		s += v
	}
	return s
}
