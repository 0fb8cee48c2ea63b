package cpu

import (
	"testing"

	"github.com/mycel-net/mycel/kernels/kerneltest"
)

// TestConformance runs the kerneltest suite on every code path this CPU
// and build support, with one and with two threads.
func TestConformance(t *testing.T) {
	defer setISA(isa)
	for _, name := range supportedISAs() {
		for _, threads := range []int{1, 2} {
			t.Run(name+"/"+string(rune('0'+threads)), func(t *testing.T) {
				if !setISA(name) {
					t.Fatalf("setISA(%q) failed", name)
				}
				b := New(threads)
				defer b.Close()
				kerneltest.TestBackend(t, b)
			})
		}
	}
}
