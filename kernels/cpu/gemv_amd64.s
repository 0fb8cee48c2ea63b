//go:build amd64 && !noasm

#include "textflag.h"

// Column-major matrix-vector blocks, the attention kernels' inner loop:
//
//	for r := 0; r < rows; r++ {   // rows ≤ 64 (AVX-512) or = 32 (AVX2)
//		y[r] = Σ_{c<cols} x[c] · a[c·lda + r]
//	}
//
// The accumulators for all rows of the block stay in registers while the
// loop walks the columns: one broadcast of x[c] feeds every row, and no
// horizontal sums are needed.
//
// The AVX-512 block prefetches the columns four steps (eight columns)
// ahead: in the attention's key pass the columns are rows of the cache a
// whole cache capacity apart, a strided walk the hardware prefetchers
// follow late; prefetching past the last column is harmless.

// func gemvBlockAVX512(y, a *float32, lda int, x *float32, cols int, masks uint64)
// masks holds four 16-bit lane masks, one per group of 16 rows.
TEXT ·gemvBlockAVX512(SB), NOSPLIT, $0-48
	MOVQ  y+0(FP), DI
	MOVQ  a+8(FP), SI
	MOVQ  lda+16(FP), R8
	SHLQ  $2, R8
	MOVQ  x+24(FP), BX
	MOVQ  cols+32(FP), DX
	MOVQ  masks+40(FP), AX
	KMOVW AX, K1
	SHRQ  $16, AX
	KMOVW AX, K2
	SHRQ  $16, AX
	KMOVW AX, K3
	SHRQ  $16, AX
	KMOVW AX, K4
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
	JZ     gbodd

	// Two columns per step into two sets of accumulators, so that the
	// FMAs of one step do not wait on those of the step before.
gbloop:
	PREFETCHT0   (SI)(R10*1)
	PREFETCHT0   64(SI)(R10*1)
	PREFETCHT0   128(SI)(R10*1)
	PREFETCHT0   192(SI)(R10*1)
	PREFETCHT0   (R9)(R10*1)
	PREFETCHT0   64(R9)(R10*1)
	PREFETCHT0   128(R9)(R10*1)
	PREFETCHT0   192(R9)(R10*1)
	VBROADCASTSS (BX), Z8
	VBROADCASTSS 4(BX), Z13
	VMOVUPS.Z    (SI), K1, Z9
	VMOVUPS.Z    64(SI), K2, Z10
	VMOVUPS.Z    128(SI), K3, Z11
	VMOVUPS.Z    192(SI), K4, Z12
	VFMADD231PS  Z8, Z9, Z0
	VFMADD231PS  Z8, Z10, Z1
	VFMADD231PS  Z8, Z11, Z2
	VFMADD231PS  Z8, Z12, Z3
	VMOVUPS.Z    (R9), K1, Z9
	VMOVUPS.Z    64(R9), K2, Z10
	VMOVUPS.Z    128(R9), K3, Z11
	VMOVUPS.Z    192(R9), K4, Z12
	VFMADD231PS  Z13, Z9, Z4
	VFMADD231PS  Z13, Z10, Z5
	VFMADD231PS  Z13, Z11, Z6
	VFMADD231PS  Z13, Z12, Z7
	ADDQ         $8, BX
	ADDQ         R8, SI
	ADDQ         R8, R9
	DECQ         CX
	JNZ          gbloop

gbodd:
	TESTQ        $1, DX
	JZ           gbsum
	VBROADCASTSS (BX), Z8
	VMOVUPS.Z    (SI), K1, Z9
	VMOVUPS.Z    64(SI), K2, Z10
	VMOVUPS.Z    128(SI), K3, Z11
	VMOVUPS.Z    192(SI), K4, Z12
	VFMADD231PS  Z8, Z9, Z0
	VFMADD231PS  Z8, Z10, Z1
	VFMADD231PS  Z8, Z11, Z2
	VFMADD231PS  Z8, Z12, Z3

gbsum:
	VADDPS Z4, Z0, Z0
	VADDPS Z5, Z1, Z1
	VADDPS Z6, Z2, Z2
	VADDPS Z7, Z3, Z3

gbstore:
	VMOVUPS Z0, K1, (DI)
	VMOVUPS Z1, K2, 64(DI)
	VMOVUPS Z2, K3, 128(DI)
	VMOVUPS Z3, K4, 192(DI)
	VZEROUPPER
	RET

// func gemvBlock32AVX2(y, a *float32, lda int, x *float32, cols int)
// Exactly 32 rows.
TEXT ·gemvBlock32AVX2(SB), NOSPLIT, $0-40
	MOVQ   y+0(FP), DI
	MOVQ   a+8(FP), SI
	MOVQ   lda+16(FP), R8
	SHLQ   $2, R8
	MOVQ   x+24(FP), BX
	MOVQ   cols+32(FP), DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	TESTQ  DX, DX
	JZ     g2store

g2loop:
	VBROADCASTSS (BX), Y8
	VFMADD231PS  (SI), Y8, Y0
	VFMADD231PS  32(SI), Y8, Y1
	VFMADD231PS  64(SI), Y8, Y2
	VFMADD231PS  96(SI), Y8, Y3
	ADDQ         $4, BX
	ADDQ         R8, SI
	DECQ         DX
	JNZ          g2loop

g2store:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VZEROUPPER
	RET
