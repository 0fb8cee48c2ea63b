package cpu

import (
	"fmt"
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

func benchMatrix(dt kernels.DType, rows, cols int) *kernels.Matrix {
	return randMatrixF(dt, rows, cols, 1)
}

// BenchmarkBandwidth reads a 512 MB buffer on every thread's share: the
// DRAM read ceiling the matvecs are measured against.
func BenchmarkBandwidth(b *testing.B) {
	be := New(0)
	defer be.Close()
	buf := make([]float32, 128<<20)
	for i := range buf {
		buf[i] = 1
	}
	b.SetBytes(int64(len(buf) * 4))
	b.ResetTimer()
	for b.Loop() {
		readAll(be, buf)
	}
	b.ReportMetric(float64(len(buf)*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// TestSustainedBandwidth checks that the sustained read bandwidth is a
// plausible rate, measured over at least the window asked for, and that
// the buffer is reused.
func TestSustainedBandwidth(t *testing.T) {
	be := New(2)
	defer be.Close()
	start := time.Now()
	gbs, buf := SustainedBandwidth(be, 50*time.Millisecond, nil)
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("measured for %s, asked for at least 50ms", took)
	}
	// A 256 MB read rate below 0.1 GB/s or above 10 TB/s is a broken
	// measurement, not a machine.
	if math.IsNaN(gbs) || gbs < 0.1 || gbs > 10000 {
		t.Errorf("bandwidth %v GB/s", gbs)
	}
	gbs2, buf2 := SustainedBandwidth(be, time.Millisecond, buf)
	if &buf2[0] != &buf[0] {
		t.Error("the buffer was not reused")
	}
	if gbs2 < 0.1 || gbs2 > 10000 {
		t.Errorf("second measurement %v GB/s", gbs2)
	}
}

// BenchmarkBandwidthMatVec runs the f32 matvec over a 512 MB matrix.
func BenchmarkBandwidthMatVec(b *testing.B) {
	benchMatMul(b, kernels.F32, 8192, 16384, 1)
}

func BenchmarkMatVec(b *testing.B) {
	for _, s := range [][2]int{{4096, 4096}, {768, 768}, {2048, 768}, {768, 2048}, {32000, 768}} {
		for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
			b.Run(fmt.Sprintf("%s/%dx%d", dt, s[0], s[1]), func(b *testing.B) {
				benchMatMul(b, dt, s[0], s[1], 1)
			})
		}
	}
}

func BenchmarkGEMM(b *testing.B) {
	for _, s := range [][3]int{{1024, 1024, 1024}, {128, 768, 768}, {128, 2048, 768}, {128, 768, 2048}, {128, 32000, 768}} {
		for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16} {
			b.Run(fmt.Sprintf("%s/n%d/%dx%d", dt, s[0], s[1], s[2]), func(b *testing.B) {
				benchMatMul(b, dt, s[1], s[2], s[0])
			})
		}
	}
}

func benchMatMul(b *testing.B, dt kernels.DType, rows, cols, n int) {
	be := New(0)
	defer be.Close()
	// Enough copies of the weights to overflow the caches, as in a model.
	copies := max(1, (256<<20)/max(1, rows*cols*dt.BlockBytes()/dt.BlockLen()))
	if n > 1 {
		copies = 1
	}
	ws := make([]*kernels.Matrix, copies)
	for i := range ws {
		ws[i] = benchMatrix(dt, rows, cols)
	}
	x := randVecSeed(n*cols, 5)
	out := make([]float32, n*rows)
	be.MatMul(out, ws[0], x, n)
	b.SetBytes(int64(len(ws[0].Data)))
	b.ResetTimer()
	i := 0
	for b.Loop() {
		be.MatMul(out, ws[i], x, n)
		i++
		if i == len(ws) {
			i = 0
		}
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(2*float64(n)*float64(rows)*float64(cols)*float64(b.N)/sec/1e9, "GFLOPS")
	_ = unsafe.Sizeof(0)
}
