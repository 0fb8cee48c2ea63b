package cpu

import (
	"strings"
	"testing"
)

func TestBenchKernels(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	var sb strings.Builder
	if err := BenchKernels(&sb, 0); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + sb.String())
	if !strings.Contains(sb.String(), "gemm f32 1024x1024x1024") {
		t.Errorf("missing rows:\n%s", sb.String())
	}
}
