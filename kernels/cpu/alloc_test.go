package cpu

import (
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// A warm backend allocates nothing per call, on any path.
func TestNoAllocs(t *testing.T) {
	defer setISA(isa)
	for _, name := range supportedISAs() {
		setISA(name)
		b := New(2)
		x := randVecSeed(64*768, 1)
		out := make([]float32, 64*768)
		for _, dt := range []kernels.DType{kernels.F32, kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0} {
			w := randMatrixF(dt, 768, 768, 1)
			for _, n := range []int{1, 3, 64} {
				b.MatMul(out, w, x, n)
				if a := testing.AllocsPerRun(5, func() { b.MatMul(out, w, x, n) }); a != 0 {
					t.Errorf("%s: MatMul %s n=%d: %v allocations", name, dt, n, a)
				}
			}
		}
		q := randVecSeed(8*256, 2)
		kv := randVecSeed(300*64, 3)
		p := kernels.AttnParams{Heads: 8, KVHeads: 2, HeadDim: 32, Pos0: 200, N: 8, Cap: 300, Scale: 0.17}
		o := make([]float32, 8*256)
		b.Attention(o, q, kv, kv, p)
		if a := testing.AllocsPerRun(5, func() { b.StoreKV(kv, kv, q[:8*64], q[:8*64], p) }); a != 0 {
			t.Errorf("%s: StoreKV: %v allocations", name, a)
		}
		if a := testing.AllocsPerRun(5, func() { b.Attention(o, q, kv, kv, p) }); a != 0 {
			t.Errorf("%s: Attention: %v allocations", name, a)
		}
		kv16 := make([]uint16, 300*64)
		b.StoreKV16(kv16, kv16, q[:8*64], q[:8*64], p)
		b.Attention16(o, q, kv16, kv16, p)
		if a := testing.AllocsPerRun(5, func() { b.StoreKV16(kv16, kv16, q[:8*64], q[:8*64], p) }); a != 0 {
			t.Errorf("%s: StoreKV16: %v allocations", name, a)
		}
		if a := testing.AllocsPerRun(5, func() { b.Attention16(o, q, kv16, kv16, p) }); a != 0 {
			t.Errorf("%s: Attention16: %v allocations", name, a)
		}
		wn := randVecSeed(768, 4)
		if a := testing.AllocsPerRun(5, func() { b.RMSNorm(out[:768*4], x[:768*4], wn, 1e-5) }); a != 0 {
			t.Errorf("%s: RMSNorm: %v allocations", name, a)
		}
		rp := kernels.RopeParams{Heads: 12, HeadDim: 64, Pos0: 17, Theta: 10000}
		if a := testing.AllocsPerRun(5, func() { b.RoPE(out[:768*4], rp) }); a != 0 {
			t.Errorf("%s: RoPE: %v allocations", name, a)
		}
		if a := testing.AllocsPerRun(5, func() { b.SwiGLU(out[:2048], x[:2048], x[2048:4096]); b.Add(out[:768], x[:768]) }); a != 0 {
			t.Errorf("%s: SwiGLU/Add: %v allocations", name, a)
		}
		b.Close()
	}
}
