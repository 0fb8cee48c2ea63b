//go:build !linux

package work

import (
	"errors"
	"testing"
)

func TestCPUUnsupported(t *testing.T) {
	if _, err := NewCPU(); !errors.Is(err, ErrCPUUnsupported) {
		t.Fatalf("NewCPU: %v, want ErrCPUUnsupported", err)
	}
}
