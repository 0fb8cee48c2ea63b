//go:build openblas && cgo

// Package openblas calls OpenBLAS's sgemm, only to measure the GEMM of
// package cpu against it. Build with -tags openblas after installing
// libopenblas-dev. Its threads busy-wait after each call and slow any Go
// kernel running beside them: measure it last.
package openblas

// #cgo LDFLAGS: -lopenblas
// #include <cblas.h>
import "C"

// SetThreads sets the number of OpenBLAS threads.
func SetThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

// SgemmNT sets out[m×n] = x[m×k] · wᵀ for a row-major w of n rows of k.
func SgemmNT(out, x, w []float32, m, n, k int) {
	_, _, _ = out[m*n-1], x[m*k-1], w[n*k-1]
	C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasTrans, C.blasint(m), C.blasint(n), C.blasint(k),
		1, (*C.float)(&x[0]), C.blasint(k), (*C.float)(&w[0]), C.blasint(k), 0, (*C.float)(&out[0]), C.blasint(n))
}
