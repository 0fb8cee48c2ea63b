//go:build amd64 && !noasm

#include "textflag.h"

// func maxAVX2(x *float32, n int) float32
// The softmax's shift; n is a positive multiple of 8:
//
//	m := x[0]
//	for i := 1; i < n; i++ {
//		m = max(m, x[i])
//	}
//
// Four accumulators take 32 values a step, so the maxima do not wait on
// each other. Unlike Go's max, VMAXPS does not carry a NaN through; a NaN
// score makes the softmax NaN anyway.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	VBROADCASTSS (SI), Y0
	VMOVAPS      Y0, Y1
	VMOVAPS      Y0, Y2
	VMOVAPS      Y0, Y3
	MOVQ         CX, DX
	SHRQ         $5, DX
	JZ           m8

m32:
	VMAXPS (SI), Y0, Y0
	VMAXPS 32(SI), Y1, Y1
	VMAXPS 64(SI), Y2, Y2
	VMAXPS 96(SI), Y3, Y3
	ADDQ   $128, SI
	DECQ   DX
	JNZ    m32

m8:
	ANDQ $31, CX
	SHRQ $3, CX
	JZ   mfold

m8loop:
	VMAXPS (SI), Y0, Y0
	ADDQ   $32, SI
	DECQ   CX
	JNZ    m8loop

mfold:
	VMAXPS       Y1, Y0, Y0
	VMAXPS       Y3, Y2, Y2
	VMAXPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET
