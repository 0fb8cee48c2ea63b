package cpu

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

var kqgTypes = []kernels.DType{kernels.Q2_K, kernels.Q3_K, kernels.Q4_K, kernels.Q5_K, kernels.Q6_K}

// kqgMatrix is a rows×cols matrix of type dt of random blocks.
func kqgMatrix(dt kernels.DType, rows, cols int, seed uint64) *kernels.Matrix {
	return quantBenchMatrix(dt, rows, cols, seed)
}

// TestKQGemmThreads checks that the K-quants' quantized GEMM gives bitwise
// the same result with 1, 2 and 3 threads, on shapes with a partial last
// panel and a partial last group.
func TestKQGemmThreads(t *testing.T) {
	if qgemmImpl.gemm == nil {
		t.Log("no quantized GEMM kernel on this path: the products go through the float GEMM, which must hold the same")
	}
	for _, dt := range kqgTypes {
		for _, s := range [][3]int{{37, 100, 512}, {13, 33, 256}, {6, 70, 768}, {150, 40, 256}} {
			n, rows, cols := s[0], s[1], s[2]
			m := kqgMatrix(dt, rows, cols, uint64(rows))
			x := randVecSeed(n*cols, uint64(n))
			sameOverThreads(t, m, x, n)
		}
	}
}

// TestKQGemmTwin checks the K-quants' quantized GEMM on each kernel set
// against the Go twin of the tile kernel: the same integer sums, the float
// ones apart by the FMA's single rounding at most.
func TestKQGemmTwin(t *testing.T) {
	saved := qgemmImpl
	defer func() { qgemmImpl = saved }()
	for name, set := range qgSets() {
		if name == "go-twin" {
			continue
		}
		for _, dt := range kqgTypes {
			n, rows, cols := 21, 65, 512
			m := kqgMatrix(dt, rows, cols, 5)
			x := randVecSeed(n*cols, 6)
			b := New(2)
			want, got := make([]float32, n*rows), make([]float32, n*rows)
			qgemmImpl = qgKernels{pack4: qgPack4Generic, pack8: qgPack8Generic, prep: qgPrepGeneric, gemm: qgGemmGeneric}
			b.MatMul(want, m, x, n)
			qgemmImpl = set
			b.MatMul(got, m, x, n)
			b.Close()
			var scale float64
			for _, v := range want {
				scale = math.Max(scale, math.Abs(float64(v)))
			}
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*scale {
					t.Fatalf("%s %s: [%d] = %v, Go twin %v", name, dt, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkKQuantGEMM reports GFLOPS (2·n·rows·cols) of MatMul of 4096×4096
// Q2_K–Q6_K weights on the quantized GEMM and on the float GEMM
// (the integer paths off), with Q4_0's quantized GEMM alongside, all in
// one run, 2 threads, best time.
func BenchmarkKQuantGEMM(b *testing.B) {
	const rows, cols = 4096, 4096
	for _, n := range []int{16, 64, 256} {
		for _, dt := range []kernels.DType{kernels.Q4_0, kernels.Q2_K, kernels.Q3_K, kernels.Q4_K, kernels.Q5_K, kernels.Q6_K} {
			for _, path := range []string{"int8", "float"} {
				if dt == kernels.Q4_0 && path == "float" {
					continue
				}
				b.Run(fmt.Sprintf("n=%d/%s/%s", n, dt, path), func(b *testing.B) {
					defer func() { kq8On = true }()
					kq8On = path == "int8"
					be := New(2)
					defer be.Close()
					m := quantBenchMatrix(dt, rows, cols, 1)
					x := quantBenchActivations(n * cols)
					out := make([]float32, n*rows)
					best := time.Hour
					for b.Loop() {
						t0 := time.Now()
						be.MatMul(out, m, x, n)
						best = min(best, time.Since(t0))
					}
					b.ReportMetric(2*float64(n*rows*cols)/float64(best.Nanoseconds()), "GFLOPS")
				})
			}
		}
	}
}

// TestKQGemmExact checks the K-quants' quantized GEMM on activations that
// its quantization keeps exactly (integers with 127 in every run of 16):
// the result is the float product but for float rounding.
func TestKQGemmExact(t *testing.T) {
	if qgemmImpl.gemm == nil {
		t.Log("no quantized GEMM kernel on this path: the products go through the float GEMM, which must hold the same")
	}
	for _, dt := range kqgTypes {
		n, rows, cols := 11, 40, 512
		m := kqgMatrix(dt, rows, cols, 9)
		x := randVecSeed(n*cols, 10)
		for i := range x {
			x[i] = float32(math.Round(float64(x[i]) * 40))
			x[i] = max(-127, min(127, x[i]))
			if i%16 == 3 {
				x[i] = 127
			}
		}
		b := New(2)
		out := make([]float32, n*rows)
		b.MatMul(out, m, x, n)
		b.Close()
		row := make([]float32, cols)
		for r := range rows {
			m.RowF32(row, r)
			for tok := range n {
				var s, a float64
				for c := range cols {
					s += float64(row[c]) * float64(x[tok*cols+c])
					a += math.Abs(float64(row[c]) * float64(x[tok*cols+c]))
				}
				if d := math.Abs(float64(out[tok*rows+r]) - s); d > 1e-5*a {
					t.Fatalf("%s row %d token %d: %v, want %v", dt, r, tok, out[tok*rows+r], s)
				}
			}
		}
	}
}

// TestKQGPackMatchesTwin checks the K-quants' panel packing in use
// against its Go twin, byte for byte, on full and partial panels.
func TestKQGPackMatchesTwin(t *testing.T) {
	for _, dt := range kqgTypes {
		for _, ns := range []int{1, 2, 5} {
			for _, nr := range []int{32, 7} {
				m := kqgMatrix(dt, nr, ns*kernels.QKK, uint64(ns*nr))
				offs := qgOffsets(nr, ns*dt.BlockBytes())
				size := ns * kernels.QKK / qgSub(dt) * qgPanelBlock
				want, got := alignedScratch(nil, size), alignedScratch(nil, size)
				for i := range got {
					want[i], got[i] = 0xa5, 0xa5
				}
				switch dt {
				case kernels.Q2_K, kernels.Q3_K:
					// Scales of both signs and every size, Q3_K's
					// as its own.
					var sc [16 * qgRows]int32
					for i := range sc {
						sc[i] = int32(i*7%64) - 32
						if dt == kernels.Q2_K {
							sc[i] = int32(i % 16)
						}
					}
					for b := range ns {
						p := 8 * b * qgPanelBlock
						kqgQuants23Generic(want[p:], m.Data[b*dt.BlockBytes():], offs, &sc, dt == kernels.Q3_K)
						kqgQuants23(got[p:], m.Data[b*dt.BlockBytes():], offs, &sc, dt == kernels.Q3_K)
					}
				case kernels.Q6_K:
					kqgQuants6Generic(want, m.Data, offs, ns)
					kqgQuants6(got, m.Data, offs, ns)
				default:
					kqgQuants45Generic(want, m.Data, offs, ns, dt == kernels.Q5_K)
					kqgQuants45(got, m.Data, offs, ns, dt == kernels.Q5_K)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s ns=%d rows=%d: byte %d = %#x, Go twin %#x", dt, ns, nr, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestKQGemmManyReuse checks MatMulMany of K-quant matrices of prompts,
// each taking the activations prepared for the one before where they
// are prepared alike, against MatMul of each: bit for bit.
func TestKQGemmManyReuse(t *testing.T) {
	const n, cols = 37, 512
	ws := []*kernels.Matrix{
		kqgMatrix(kernels.Q2_K, 40, cols, 1), kqgMatrix(kernels.Q3_K, 33, cols, 2),
		kqgMatrix(kernels.Q4_K, 70, cols, 3), kqgMatrix(kernels.Q5_K, 32, cols, 4),
		kqgMatrix(kernels.Q6_K, 9, cols, 5), kqgMatrix(kernels.Q2_K, 65, cols, 6),
	}
	x := randVecSeed(n*cols, 7)
	b := New(2)
	defer b.Close()
	outs := make([][]float32, len(ws))
	for i, w := range ws {
		outs[i] = make([]float32, n*w.Rows)
	}
	b.MatMulMany(outs, ws, x, n)
	for i, w := range ws {
		want := make([]float32, n*w.Rows)
		b.MatMul(want, w, x, n)
		for j := range want {
			if outs[i][j] != want[j] {
				t.Fatalf("matrix %d (%s) [%d] = %v, MatMul %v", i, w.Type, j, outs[i][j], want[j])
			}
		}
	}
}
