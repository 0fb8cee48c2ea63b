//go:build !amd64 || noasm

package cpu

// qgVNNI: this build has no quantized GEMM kernel.
var qgVNNI qgKernels
