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
