package cpu

import (
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
