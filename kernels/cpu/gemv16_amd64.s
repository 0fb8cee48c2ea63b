//go:build amd64 && !noasm

#include "textflag.h"

// Column-major matrix-vector blocks over a half-precision matrix, the
// inner loop of attention over an f16 KV cache:
//
//	for r := 0; r < rows; r++ {   // rows ≤ 64 (AVX-512), = 32 or 8 (AVX2)
//		y[r] = Σ_{c<cols} x[c] · f32(a[c·lda + r])
//	}
//
// The same scheme as gemv_amd64.s: the accumulators of the whole block
// stay in registers while the loop walks the columns, and each column's
// halves are widened (VCVTPH2PS, exact) as they are loaded, so a column
// of 64 rows is 128 bytes, two cache lines, instead of four.

// func gemv16BlockAVX512(y *float32, a *uint16, lda int, x *float32, cols int, masks uint64)
// masks holds four 16-bit lane masks, one per group of 16 rows. A masked
// lane is neither read (the loads suppress faults there) nor written.
TEXT ·gemv16BlockAVX512(SB), NOSPLIT, $0-48
	MOVQ   y+0(FP), DI
	MOVQ   a+8(FP), SI
	MOVQ   lda+16(FP), R8
	SHLQ   $1, R8
	MOVQ   x+24(FP), BX
	MOVQ   cols+32(FP), DX
	MOVQ   masks+40(FP), AX
	KMOVW  AX, K1
	SHRQ   $16, AX
	KMOVW  AX, K2
	SHRQ   $16, AX
	KMOVW  AX, K3
	SHRQ   $16, AX
	KMOVW  AX, K4
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	LEAQ   (SI)(R8*1), R9 // the odd column
	SHLQ   $1, R8         // two columns per step
	LEAQ   (R8*4), R10    // four steps ahead
	MOVQ   DX, CX
	SHRQ   $1, CX
	JZ     h5odd

	// Two columns per step into two sets of accumulators, so that the
	// FMAs of one step do not wait on those of the step before.
h5loop:
	PREFETCHT0   (SI)(R10*1)
	PREFETCHT0   64(SI)(R10*1)
	PREFETCHT0   (R9)(R10*1)
	PREFETCHT0   64(R9)(R10*1)
	VBROADCASTSS (BX), Z8
	VBROADCASTSS 4(BX), Z13
	VCVTPH2PS.Z  (SI), K1, Z9
	VCVTPH2PS.Z  32(SI), K2, Z10
	VCVTPH2PS.Z  64(SI), K3, Z11
	VCVTPH2PS.Z  96(SI), K4, Z12
	VFMADD231PS  Z8, Z9, Z0
	VFMADD231PS  Z8, Z10, Z1
	VFMADD231PS  Z8, Z11, Z2
	VFMADD231PS  Z8, Z12, Z3
	VCVTPH2PS.Z  (R9), K1, Z9
	VCVTPH2PS.Z  32(R9), K2, Z10
	VCVTPH2PS.Z  64(R9), K3, Z11
	VCVTPH2PS.Z  96(R9), K4, Z12
	VFMADD231PS  Z13, Z9, Z4
	VFMADD231PS  Z13, Z10, Z5
	VFMADD231PS  Z13, Z11, Z6
	VFMADD231PS  Z13, Z12, Z7
	ADDQ         $8, BX
	ADDQ         R8, SI
	ADDQ         R8, R9
	DECQ         CX
	JNZ          h5loop

h5odd:
	TESTQ        $1, DX
	JZ           h5sum
	VBROADCASTSS (BX), Z8
	VCVTPH2PS.Z  (SI), K1, Z9
	VCVTPH2PS.Z  32(SI), K2, Z10
	VCVTPH2PS.Z  64(SI), K3, Z11
	VCVTPH2PS.Z  96(SI), K4, Z12
	VFMADD231PS  Z8, Z9, Z0
	VFMADD231PS  Z8, Z10, Z1
	VFMADD231PS  Z8, Z11, Z2
	VFMADD231PS  Z8, Z12, Z3

h5sum:
	VADDPS  Z4, Z0, Z0
	VADDPS  Z5, Z1, Z1
	VADDPS  Z6, Z2, Z2
	VADDPS  Z7, Z3, Z3
	VMOVUPS Z0, K1, (DI)
	VMOVUPS Z1, K2, 64(DI)
	VMOVUPS Z2, K3, 128(DI)
	VMOVUPS Z3, K4, 192(DI)
	VZEROUPPER
	RET

// func gemv16Block32AVX2(y *float32, a *uint16, lda int, x *float32, cols int)
// Exactly 32 rows; two columns per step into two sets of accumulators.
TEXT ·gemv16Block32AVX2(SB), NOSPLIT, $0-40
	MOVQ   y+0(FP), DI
	MOVQ   a+8(FP), SI
	MOVQ   lda+16(FP), R8
	SHLQ   $1, R8
	MOVQ   x+24(FP), BX
	MOVQ   cols+32(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	LEAQ   (SI)(R8*1), R9
	SHLQ   $1, R8
	MOVQ   DX, CX
	SHRQ   $1, CX
	JZ     h2odd

h2loop:
	VBROADCASTSS (BX), Y8
	VBROADCASTSS 4(BX), Y9
	VCVTPH2PS    (SI), Y10
	VCVTPH2PS    16(SI), Y11
	VCVTPH2PS    32(SI), Y12
	VCVTPH2PS    48(SI), Y13
	VFMADD231PS  Y8, Y10, Y0
	VFMADD231PS  Y8, Y11, Y1
	VFMADD231PS  Y8, Y12, Y2
	VFMADD231PS  Y8, Y13, Y3
	VCVTPH2PS    (R9), Y10
	VCVTPH2PS    16(R9), Y11
	VCVTPH2PS    32(R9), Y12
	VCVTPH2PS    48(R9), Y13
	VFMADD231PS  Y9, Y10, Y4
	VFMADD231PS  Y9, Y11, Y5
	VFMADD231PS  Y9, Y12, Y6
	VFMADD231PS  Y9, Y13, Y7
	ADDQ         $8, BX
	ADDQ         R8, SI
	ADDQ         R8, R9
	DECQ         CX
	JNZ          h2loop

h2odd:
	TESTQ        $1, DX
	JZ           h2sum
	VBROADCASTSS (BX), Y8
	VCVTPH2PS    (SI), Y10
	VCVTPH2PS    16(SI), Y11
	VCVTPH2PS    32(SI), Y12
	VCVTPH2PS    48(SI), Y13
	VFMADD231PS  Y8, Y10, Y0
	VFMADD231PS  Y8, Y11, Y1
	VFMADD231PS  Y8, Y12, Y2
	VFMADD231PS  Y8, Y13, Y3

h2sum:
	VADDPS  Y4, Y0, Y0
	VADDPS  Y5, Y1, Y1
	VADDPS  Y6, Y2, Y2
	VADDPS  Y7, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VZEROUPPER
	RET

// func gemv16Block8AVX2(y *float32, a *uint16, lda int, x *float32, cols int)
// Exactly 8 rows; four columns per step into four accumulators.
TEXT ·gemv16Block8AVX2(SB), NOSPLIT, $0-40
	MOVQ   y+0(FP), DI
	MOVQ   a+8(FP), SI
	MOVQ   lda+16(FP), R8
	SHLQ   $1, R8
	MOVQ   x+24(FP), BX
	MOVQ   cols+32(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	LEAQ   (R8)(R8*2), R9 // three columns
	MOVQ   DX, CX
	SHRQ   $2, CX
	JZ     h8tail

h8loop:
	VBROADCASTSS (BX), Y8
	VBROADCASTSS 4(BX), Y9
	VBROADCASTSS 8(BX), Y10
	VBROADCASTSS 12(BX), Y11
	VCVTPH2PS    (SI), Y12
	VCVTPH2PS    (SI)(R8*1), Y13
	VCVTPH2PS    (SI)(R8*2), Y14
	VCVTPH2PS    (SI)(R9*1), Y15
	VFMADD231PS  Y8, Y12, Y0
	VFMADD231PS  Y9, Y13, Y1
	VFMADD231PS  Y10, Y14, Y2
	VFMADD231PS  Y11, Y15, Y3
	ADDQ         $16, BX
	LEAQ         (SI)(R8*4), SI
	DECQ         CX
	JNZ          h8loop

h8tail:
	ANDQ $3, DX
	JZ   h8sum

h8one:
	VBROADCASTSS (BX), Y8
	VCVTPH2PS    (SI), Y12
	VFMADD231PS  Y8, Y12, Y0
	ADDQ         $4, BX
	ADDQ         R8, SI
	DECQ         DX
	JNZ          h8one

h8sum:
	VADDPS  Y1, Y0, Y0
	VADDPS  Y3, Y2, Y2
	VADDPS  Y2, Y0, Y0
	VMOVUPS Y0, (DI)
	VZEROUPPER
	RET

// func toF16AVX2(dst *uint16, src *float32, n int)
// The stores into an f16 cache; n is a multiple of 8:
//
//	for i := 0; i < n; i++ {
//		dst[i] = kernels.F32ToF16(src[i]) // to nearest, ties to even
//	}
//
// VCVTPS2PH with rounding control 0 is that rounding (it differs from
// F32ToF16 only in the payload bits of a NaN).
TEXT ·toF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   hdone

hloop:
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	DECQ      CX
	JNZ       hloop

hdone:
	VZEROUPPER
	RET
