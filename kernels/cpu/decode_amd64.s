//go:build amd64 && !noasm

#include "textflag.h"

// Row decoding for MatMulT's panels of W (decode.go): kc rows of w, rb
// bytes apart, each decoded into ld floats apart of dst. The quantized
// decoders take the columns as n16 pieces of 16 values from piece hb0
// (a piece is half a block: Q4_0 the low or the high nibbles of its 16
// bytes, Q8_0 16 of its quants); the half-precision ones n8 pieces of 8
// values from the row's start. Every value is float32(q)·d with one
// rounding, or the exact widening: bit for bit what decodeCols computes.
//
// Registers: DI the destination row, SI the source row, DX ld in bytes,
// R8 rb, R9 the rows left, R10 hb0, R11 the pieces, CX the pieces left,
// BX the current piece, AX and R12 scratch.

DATA dec0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL dec0f<>(SB), RODATA|NOPTR, $4
DATA dec8<>+0(SB)/4, $8
GLOBL dec8<>(SB), RODATA|NOPTR, $4

#define DECSETUP \
	MOVQ dst+0(FP), DI  \
	MOVQ ld+8(FP), DX   \
	SHLQ $2, DX         \
	MOVQ w+16(FP), SI   \
	MOVQ rb+24(FP), R8  \
	MOVQ kc+32(FP), R9  \
	MOVQ hb0+40(FP), R10 \
	MOVQ n16+48(FP), R11

// DEC16SETUP is DECSETUP for the half-precision decoders: R11 the pieces
// of 8 values.
#define DEC16SETUP \
	MOVQ dst+0(FP), DI  \
	MOVQ ld+8(FP), DX   \
	SHLQ $2, DX         \
	MOVQ w+16(FP), SI   \
	MOVQ rb+24(FP), R8  \
	MOVQ kc+32(FP), R9  \
	MOVQ n8+40(FP), R11

// func decQ4AVX512(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)
TEXT ·decQ4AVX512(SB), NOSPLIT, $0-56
	DECSETUP
	VPBROADCASTD dec0f<>(SB), X14
	VPBROADCASTD dec8<>(SB), Z13
	TESTQ R9, R9
	JLE   dq4done
	TESTQ R11, R11
	JLE   dq4done

dq4row:
	MOVQ R10, BX
	MOVQ R11, CX
	MOVQ DI, R12

dq4piece:
	// Block BX/2 at 18·(BX/2); the high nibbles for an odd piece.
	MOVQ         BX, AX
	SHRQ         $1, AX
	IMULQ        $18, AX
	VMOVDQU      2(SI)(AX*1), X0
	VPBROADCASTW (SI)(AX*1), Y1
	MOVQ         BX, AX
	ANDQ         $1, AX
	SHLQ         $2, AX
	VMOVQ        AX, X2
	VPSRLW       X2, X0, X0
	VPAND        X14, X0, X0
	VPMOVZXBD    X0, Z0
	VPSUBD       Z13, Z0, Z0
	VCVTDQ2PS    Z0, Z0
	VCVTPH2PS    Y1, Z1
	VMULPS       Z1, Z0, Z0
	VMOVUPS      Z0, (R12)
	ADDQ         $64, R12
	INCQ         BX
	DECQ         CX
	JNZ          dq4piece

	ADDQ R8, SI
	ADDQ DX, DI
	DECQ R9
	JNZ  dq4row

dq4done:
	VZEROUPPER
	RET

// func decQ8AVX512(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)
TEXT ·decQ8AVX512(SB), NOSPLIT, $0-56
	DECSETUP
	TESTQ R9, R9
	JLE   dq8done
	TESTQ R11, R11
	JLE   dq8done

dq8row:
	MOVQ R10, BX
	MOVQ R11, CX
	MOVQ DI, R12

dq8piece:
	// Block BX/2 at 34·(BX/2), its quants from 2 + 16·(BX&1).
	MOVQ         BX, AX
	SHRQ         $1, AX
	IMULQ        $34, AX
	VPBROADCASTW (SI)(AX*1), Y1
	MOVQ         BX, R13
	ANDQ         $1, R13
	SHLQ         $4, R13
	ADDQ         R13, AX
	VPMOVSXBD    2(SI)(AX*1), Z0
	VCVTDQ2PS    Z0, Z0
	VCVTPH2PS    Y1, Z1
	VMULPS       Z1, Z0, Z0
	VMOVUPS      Z0, (R12)
	ADDQ         $64, R12
	INCQ         BX
	DECQ         CX
	JNZ          dq8piece

	ADDQ R8, SI
	ADDQ DX, DI
	DECQ R9
	JNZ  dq8row

dq8done:
	VZEROUPPER
	RET

// func decBF16AVX2(dst *float32, ld int, w *byte, rb, kc, n8 int)
TEXT ·decBF16AVX2(SB), NOSPLIT, $0-48
	DEC16SETUP
	TESTQ R9, R9
	JLE   dbfdone
	TESTQ R11, R11
	JLE   dbfdone

dbfrow:
	XORQ BX, BX
	MOVQ R11, CX

dbfpiece:
	VPMOVZXWD (SI)(BX*2), Y0
	VPSLLD    $16, Y0, Y0
	VMOVUPS   Y0, (DI)(BX*4)
	ADDQ      $8, BX
	DECQ      CX
	JNZ       dbfpiece

	ADDQ R8, SI
	ADDQ DX, DI
	DECQ R9
	JNZ  dbfrow

dbfdone:
	VZEROUPPER
	RET

// func decF16AVX2(dst *float32, ld int, w *byte, rb, kc, n8 int)
TEXT ·decF16AVX2(SB), NOSPLIT, $0-48
	DEC16SETUP
	TESTQ R9, R9
	JLE   dhfdone
	TESTQ R11, R11
	JLE   dhfdone

dhfrow:
	XORQ BX, BX
	MOVQ R11, CX

dhfpiece:
	VCVTPH2PS (SI)(BX*2), Y0
	VMOVUPS   Y0, (DI)(BX*4)
	ADDQ      $8, BX
	DECQ      CX
	JNZ       dhfpiece

	ADDQ R8, SI
	ADDQ DX, DI
	DECQ R9
	JNZ  dhfrow

dhfdone:
	VZEROUPPER
	RET

// func decQ4AVX2(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)
//
// Each piece as two vectors of 8.
TEXT ·decQ4AVX2(SB), NOSPLIT, $0-56
	DECSETUP
	VPBROADCASTD dec0f<>(SB), X14
	VPBROADCASTD dec8<>(SB), Y13
	TESTQ R9, R9
	JLE   dq4adone
	TESTQ R11, R11
	JLE   dq4adone

dq4arow:
	MOVQ R10, BX
	MOVQ R11, CX
	MOVQ DI, R12

dq4apiece:
	MOVQ         BX, AX
	SHRQ         $1, AX
	IMULQ        $18, AX
	VMOVDQU      2(SI)(AX*1), X0
	VPBROADCASTW (SI)(AX*1), X1
	VCVTPH2PS    X1, Y1
	MOVQ         BX, AX
	ANDQ         $1, AX
	SHLQ         $2, AX
	VMOVQ        AX, X2
	VPSRLW       X2, X0, X0
	VPAND        X14, X0, X0
	VPMOVZXBD    X0, Y3
	VPSRLDQ      $8, X0, X0
	VPMOVZXBD    X0, Y4
	VPSUBD       Y13, Y3, Y3
	VPSUBD       Y13, Y4, Y4
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VMULPS       Y1, Y3, Y3
	VMULPS       Y1, Y4, Y4
	VMOVUPS      Y3, (R12)
	VMOVUPS      Y4, 32(R12)
	ADDQ         $64, R12
	INCQ         BX
	DECQ         CX
	JNZ          dq4apiece

	ADDQ R8, SI
	ADDQ DX, DI
	DECQ R9
	JNZ  dq4arow

dq4adone:
	VZEROUPPER
	RET

// func decQ8AVX2(dst *float32, ld int, w *byte, rb, kc, hb0, n16 int)
TEXT ·decQ8AVX2(SB), NOSPLIT, $0-56
	DECSETUP
	TESTQ R9, R9
	JLE   dq8adone
	TESTQ R11, R11
	JLE   dq8adone

dq8arow:
	MOVQ R10, BX
	MOVQ R11, CX
	MOVQ DI, R12

dq8apiece:
	MOVQ         BX, AX
	SHRQ         $1, AX
	IMULQ        $34, AX
	VPBROADCASTW (SI)(AX*1), X1
	VCVTPH2PS    X1, Y1
	MOVQ         BX, R13
	ANDQ         $1, R13
	SHLQ         $4, R13
	ADDQ         R13, AX
	VPMOVSXBD    2(SI)(AX*1), Y3
	VPMOVSXBD    10(SI)(AX*1), Y4
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VMULPS       Y1, Y3, Y3
	VMULPS       Y1, Y4, Y4
	VMOVUPS      Y3, (R12)
	VMOVUPS      Y4, 32(R12)
	ADDQ         $64, R12
	INCQ         BX
	DECQ         CX
	JNZ          dq8apiece

	ADDQ R8, SI
	ADDQ DX, DI
	DECQ R9
	JNZ  dq8arow

dq8adone:
	VZEROUPPER
	RET
