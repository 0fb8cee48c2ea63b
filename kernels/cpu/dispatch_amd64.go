//go:build amd64 && !noasm

package cpu

import (
	"golang.org/x/sys/cpu"

	"github.com/mycel-net/mycel/kernels"
)

// supportedISAs lists the code paths this CPU can run, fastest first; "go"
// is always last.
func supportedISAs() []string {
	x := cpu.X86
	var s []string
	avx2 := x.HasAVX2 && x.HasFMA && x.HasF16C
	if avx2 && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL {
		s = append(s, "avx512")
	}
	if avx2 {
		s = append(s, "avx2")
	}
	return append(s, "go")
}

// setISA installs the float kernels of one code path. It reports false,
// and changes nothing, if the CPU cannot run it.
func setISA(name string) bool {
	ok := false
	for _, s := range supportedISAs() {
		ok = ok || s == name
	}
	if !ok {
		return false
	}
	setGeneric()
	isa = name
	switch name {
	case "avx512":
		setAVX2Elementwise()
		matvecF32 = matvecF32AVX512
		matvecF16 = matvecF16AVX512
		matvecBF16 = matvecBF16AVX512
		gemvCM = gemvCMAVX512
		gemvCM16 = gemvCM16AVX512
		gemmImpl = gemmShape{12, 32, gemm12x32AVX512}
		decodeRowsVec = decodeRowsAVX512
		q8kRound = q8kRoundAVX512
	case "avx2":
		setAVX2Elementwise()
		matvecF32 = matvecF32AVX2
		matvecF16 = matvecF16AVX2
		matvecBF16 = matvecBF16AVX2
		gemvCM = gemvCMAVX2
		gemvCM16 = gemvCM16AVX2
		gemmImpl = gemmShape{6, 16, gemm6x16AVX2}
		decodeRowsVec = decodeRowsAVX2
		q8kRound = q8kRoundAVX2
	}
	return true
}

func setAVX2Elementwise() {
	pack8 = pack8AVX2
	dotF32 = dotF32AVX2
	sumSquares = sumSquaresAVX2
	scaleMul = scaleMulAVX2Go
	addTo = addToAVX2Go
	axpy = axpyAVX2Go
	expShifted = expShiftedAVX2
	swiglu = swigluAVX2Go
	toF16 = toF16F16C
	maxF32 = maxF32AVX2
	vecDecoders[kernels.Q4_1] = decodeQ4_1AVX2
	vecDecoders[kernels.Q5_0] = decodeQ5_0AVX2
	vecDecoders[kernels.Q5_1] = decodeQ5_1AVX2
	vecDecoders[kernels.Q2_K] = decodeQ2KAVX2
	vecDecoders[kernels.Q3_K] = decodeQ3KAVX2
	vecDecoders[kernels.Q4_K] = decodeQ4KAVX2
	vecDecoders[kernels.Q5_K] = decodeQ5KAVX2
	vecDecoders[kernels.Q6_K] = decodeQ6KAVX2
	vecDecoders[kernels.IQ4_NL] = decodeIQ4NLAVX2
	vecDecoders[kernels.IQ4_XS] = decodeIQ4XSAVX2
}
