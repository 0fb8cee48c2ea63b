package cpu

import (
	"math"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/kernels/kerneltest"
)

// TestTrainerDeterminism checks, on every code path, that the backward
// kernels give bitwise the same results with 1, 2 and 3 threads.
func TestTrainerDeterminism(t *testing.T) {
	defer setISA(isa)
	for _, name := range supportedISAs() {
		t.Run(name, func(t *testing.T) {
			if !setISA(name) {
				t.Fatalf("setISA(%q) failed", name)
			}
			kerneltest.TestTrainerDeterminism(t, func(threads int) (kernels.Backend, error) { return New(threads), nil })
		})
	}
}

// TestPackColsTTwins checks the vector packing of MatMulT's dy against
// packColsT, bit for bit, for the panel widths of every micro-kernel and
// depths on both sides of a multiple of 8, with a guard after the panel's
// padding.
func TestPackColsTTwins(t *testing.T) {
	forEachISA(t, func(t *testing.T) {
		src := randVecSeed(40*300, 9)
		for _, w := range []int{4, 6, 12} {
			for _, kc := range []int{1, 7, 8, 9, 64, 255, 256} {
				for _, r0 := range []int{0, 5, 32, 36} {
					for _, c0 := range []int{0, 3, 44} {
						cnt := max(0, min(w, 40-r0))
						buf := make([]float32, w*kc+panelPad+1)
						buf[len(buf)-1] = 42
						got := buf[: w*kc : w*kc+panelPad]
						want := make([]float32, w*kc)
						packColsTFast(got, src, 300, r0, c0, kc, w, cnt)
						packColsT(want, src, 300, r0, c0, kc, w, cnt)
						if !bitsEqualF32(got, want) || buf[len(buf)-1] != 42 {
							t.Fatalf("w=%d kc=%d r0=%d c0=%d: differs from packColsT", w, kc, r0, c0)
						}
					}
				}
			}
		}
	})
}

func bitsEqualF32(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

// TestGemmByDepth checks that gemmRun's depth-by-depth streaming of a
// large A gives bitwise what packing all of A first gives, for the
// products of training over several depth blocks, with 1, 2 and 3
// threads.
func TestGemmByDepth(t *testing.T) {
	defer func(v int) { gemmStreamA = v }(gemmStreamA)
	forEachISA(t, func(t *testing.T) {
		run := func(threads int) [][]float32 {
			b := New(threads)
			defer b.Close()
			var outs [][]float32
			for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.Q4_0} {
				w := randMatrixF(dt, 600, 96, 1)
				dy := randVecSeed(70*600, 3)
				dx := randVecSeed(70*96, 4)
				b.MatMulT(dx, w, dy, 70, true)
				outs = append(outs, dx)
			}
			dw := randVecSeed(40*50, 5)
			b.MatMulGrad(dw, randVecSeed(700*40, 6), randVecSeed(700*50, 7), 700, 40, 50)
			outs = append(outs, dw)
			p := kernels.AttnParams{Heads: 2, KVHeads: 1, HeadDim: 16, N: 520, Scale: 0.25}
			q, k, v := randVecSeed(520*32, 8), randVecSeed(520*16, 9), randVecSeed(520*16, 10)
			dq, dk, dv := make([]float32, 520*32), make([]float32, 520*16), make([]float32, 520*16)
			b.AttentionBackward(dq, dk, dv, randVecSeed(520*32, 11), q, k, v, p)
			return append(outs, dq, dk, dv)
		}
		gemmStreamA = 8 << 20
		want := run(1)
		gemmStreamA = 0
		for _, threads := range []int{1, 2, 3} {
			for i, got := range run(threads) {
				if !bitsEqualF32(got, want[i]) {
					t.Errorf("threads=%d: product %d differs when streamed by depth", threads, i)
				}
			}
		}
	})
}
