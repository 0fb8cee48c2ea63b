//go:build linux

package cpu

import (
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// endOfPage returns an n-byte slice that ends where an inaccessible page
// begins, so a kernel reading past its input faults.
func endOfPage(t *testing.T, n int) []byte {
	t.Helper()
	ps := syscall.Getpagesize()
	size := (n+ps-1)/ps*ps + ps
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip("mmap:", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[size-ps:], syscall.PROT_NONE); err != nil {
		t.Skip("mprotect:", err)
	}
	return mem[size-ps-n : size-ps : size-ps]
}

// TestQuantNoOverread runs every kernel on inputs that end at an
// inaccessible page.
func TestQuantNoOverread(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, set := range quantSets() {
		for _, nb := range []int{1, 2, 3, 5} {
			for _, rows := range []int{1, 3, 4, 5, 8} {
				n := 5
				x := kernels.BytesF32(endOfPage(t, nb*kernels.QK*4))
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				xq := endOfPage(t, n*nb*kernels.Q8_0BlockBytes)
				for tok := 0; tok < n; tok++ {
					set.quantize(xq[tok*nb*34:(tok+1)*nb*34], x)
				}
				for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
					w := endOfPage(t, rows*nb*dt.BlockBytes())
					copy(w, randQuantMatrix(r, dt, rows, nb, false))
					out := make([]float32, n*rows)
					mv, gemm := set.q8, set.gemm8
					if dt == kernels.Q4_0 {
						mv, gemm = set.q4, set.gemm4
					}
					mv(out[:rows], w, nb, xq[(n-1)*nb*34:])
					if gemm != nil {
						gemm(out, rows, w, rows, nb, xq, n)
					}
				}
			}
		}
	}
}

// TestQ4PrepNoOverread runs the prepared Q4_0 kernels on weights, Q8_0
// rows and prepared rows that end at an inaccessible page, with whole and
// partial last groups.
func TestQ4PrepNoOverread(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, set := range q4xSets() {
		for _, nb := range []int{1, 2, 3, 4, 5, 8, 9} {
			for _, rows := range []int{1, 3, 4, 5, 8} {
				xq := endOfPage(t, nb*kernels.Q8_0BlockBytes)
				copy(xq, randXQ(r, nb, false))
				xp := endOfPage(t, q4PrepBytes(nb))
				set.prep4(xp, xq, nb)
				w := endOfPage(t, rows*nb*kernels.Q4_0BlockBytes)
				copy(w, randQuantMatrix(r, kernels.Q4_0, rows, nb, false))
				out := make([]float32, rows)
				set.q4x(out, w, nb, xp)
			}
		}
	}
}
