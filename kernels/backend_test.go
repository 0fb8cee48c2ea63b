package kernels

import (
	"runtime"
	"strings"
	"testing"
)

func TestCheckThreads(t *testing.T) {
	for _, n := range []int{0, 1, runtime.NumCPU(), MaxThreads()} {
		if err := CheckThreads(n); err != nil {
			t.Errorf("CheckThreads(%d): %v", n, err)
		}
	}
	for _, n := range []int{-1, -5, MaxThreads() + 1, 100000} {
		err := CheckThreads(n)
		if err == nil || !strings.Contains(err.Error(), "give 0 for all") {
			t.Errorf("CheckThreads(%d) = %v, want an error saying what to give", n, err)
		}
	}
	if _, err := Open("none-such", -5); err == nil || !strings.Contains(err.Error(), "-5 threads") {
		t.Errorf("Open with -5 threads: %v, want the thread count refused first", err)
	}
}
