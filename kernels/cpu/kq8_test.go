package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// randKBlocks makes nb random blocks of type dt with finite f16 scales.
func randKBlocks(r *rand.Rand, dt kernels.DType, nb int) []byte {
	bs := dt.BlockBytes()
	w := make([]byte, nb*bs)
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	for b := range nb {
		for _, o := range kernels.HalfOffsets(dt) {
			h := kernels.F32ToF16(float32(r.Float64()*2-1) / 64)
			binary.LittleEndian.PutUint16(w[b*bs+o:], h)
		}
	}
	return w
}

// TestKQ8Twins checks every kernel set's K-quant dot products against the
// pure-Go twins, bit for bit, including activations with extreme values
// (all ±127 after quantization) that stretch the int16 pair sums.
func TestKQ8Twins(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	twins := map[kernels.DType]func([]float32, []byte, int, []byte){
		kernels.Q2_K: matvecQ2KGeneric, kernels.Q3_K: matvecQ3KGeneric, kernels.Q4_K: matvecQ4KGeneric, kernels.Q5_K: matvecQ5KGeneric, kernels.Q6_K: matvecQ6KGeneric,
	}
	checked := 0
	for _, s := range quantSets() {
		if s.q4k == nil {
			continue
		}
		kern := map[kernels.DType]func([]float32, []byte, int, []byte){
			kernels.Q2_K: s.q2k, kernels.Q3_K: s.q3k, kernels.Q4_K: s.q4k, kernels.Q5_K: s.q5k, kernels.Q6_K: s.q6k,
		}
		for dt, twin := range twins {
			for _, nb := range []int{1, 2, 3, 16} {
				for _, rows := range []int{1, 3, 8} {
					for trial := range 3 {
						w := randKBlocks(r, dt, rows*nb)
						x := make([]float32, nb*kernels.QKK)
						for i := range x {
							x[i] = float32(r.NormFloat64())
							if trial == 2 {
								x[i] = float32(1 - 2*(i%2))
							}
						}
						xk := make([]byte, nb*q8kBlock)
						quantizeQ8K(xk, x)
						got := make([]float32, rows)
						want := make([]float32, rows)
						kern[dt](got, w, nb, xk)
						twin(want, w, nb, xk)
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s %s nb=%d row %d: %v, twin %v", s.name, dt, nb, i, got[i], want[i])
							}
						}
						checked++
					}
				}
			}
		}
	}
	t.Logf("%d products checked", checked)
}

// TestQuantizeQ8K checks the activation blocks: the values within half a
// step of x, the run sums and the scale.
func TestQuantizeQ8K(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, 2*kernels.QKK)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	clear(x[kernels.QKK:]) // a block of zeros
	xk := make([]byte, 2*q8kBlock)
	quantizeQ8K(xk, x)
	for b := range 2 {
		blk := xk[b*q8kBlock:]
		d := q8kD(blk)
		for r := range 16 {
			var s int32
			for i := 16 * r; i < 16*r+16; i++ {
				q := int8(blk[i])
				s += int32(q)
				if e := math.Abs(float64(x[b*kernels.QKK+i]) - float64(q)*float64(d)); e > float64(d)*0.5001 {
					t.Fatalf("block %d value %d: %v quantized to %d·%v", b, i, x[b*kernels.QKK+i], q, d)
				}
			}
			if s != q8kSum(blk, r) {
				t.Fatalf("block %d run %d: sum %d, stored %d", b, r, s, q8kSum(blk, r))
			}
		}
		if b == 1 && d != 0 {
			t.Fatalf("zero block: scale %v", d)
		}
	}
}

// BenchmarkKQuantMatvec reports GB/s of weights of a one-token MatMul of
// Q2_K–Q6_K on the integer path and on the float path (a
// decoded row per product), with Q4_0 alongside.
func BenchmarkKQuantMatvec(b *testing.B) {
	for _, dt := range []kernels.DType{kernels.Q4_0, kernels.Q2_K, kernels.Q3_K, kernels.Q4_K, kernels.Q5_K, kernels.Q6_K} {
		for _, path := range []string{"int8", "float"} {
			if dt == kernels.Q4_0 && path == "float" {
				continue
			}
			for _, n := range []int{1, 4} {
				b.Run(fmt.Sprintf("%s/%s/n=%d", dt, path, n), func(b *testing.B) {
					defer func() { kq8On = true }()
					kq8On = path == "int8"
					be := New(0)
					defer be.Close()
					m := quantBenchMatrix(dt, 4096, 4096, 1)
					x := quantBenchActivations(4096 * n)
					out := make([]float32, 4096*n)
					b.SetBytes(int64(len(m.Data)))
					for b.Loop() {
						be.MatMul(out, m, x, n)
					}
				})
			}
		}
	}
}
