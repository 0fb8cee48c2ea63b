//go:build amd64 && !noasm

#include "textflag.h"

// Packing of W for the GEMM: eight rows at a time, transposed 8×8 block by
// 8×8 block with AVX2 shuffles and converted to float32 on the way:
//
//	for k < kc; j < 8 { dst[k·nr + j] = float32(src[j·stride + k]) }
//
// kc must be a multiple of 8; stride is in elements of the source, nr in
// floats. Registers: SI and R10 point at source rows 0 and 4, R8 is the
// source row stride in bytes and R9 three of them; DI and R12 point at
// destination rows k and k+4, DX is the destination stride in bytes and
// R11 three of them.

#define PACK_SETUP(esize) \
	MOVQ dst+0(FP), DI      \
	MOVQ nr+8(FP), DX       \
	SHLQ $2, DX             \
	MOVQ src+16(FP), SI     \
	MOVQ stride+24(FP), R8  \
	SHLQ $esize, R8         \
	MOVQ kc+32(FP), CX      \
	SHRQ $3, CX             \
	LEAQ (R8)(R8*2), R9     \
	LEAQ (DX)(DX*2), R11    \
	LEAQ (SI)(R8*4), R10

// TRANSPOSE_STORE transposes Y0..Y7 (rows) into columns and stores them at
// the eight destination rows.
#define TRANSPOSE_STORE \
	VUNPCKLPS Y1, Y0, Y8 \
	VUNPCKHPS Y1, Y0, Y9 \
	VUNPCKLPS Y3, Y2, Y10 \
	VUNPCKHPS Y3, Y2, Y11 \
	VUNPCKLPS Y5, Y4, Y12 \
	VUNPCKHPS Y5, Y4, Y13 \
	VUNPCKLPS Y7, Y6, Y14 \
	VUNPCKHPS Y7, Y6, Y15 \
	VSHUFPS $0x44, Y10, Y8, Y0 \
	VSHUFPS $0xEE, Y10, Y8, Y1 \
	VSHUFPS $0x44, Y11, Y9, Y2 \
	VSHUFPS $0xEE, Y11, Y9, Y3 \
	VSHUFPS $0x44, Y14, Y12, Y4 \
	VSHUFPS $0xEE, Y14, Y12, Y5 \
	VSHUFPS $0x44, Y15, Y13, Y6 \
	VSHUFPS $0xEE, Y15, Y13, Y7 \
	LEAQ (DI)(DX*4), R12 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15 \
	VMOVUPS Y8, (DI) \
	VMOVUPS Y9, (DI)(DX*1) \
	VMOVUPS Y10, (DI)(DX*2) \
	VMOVUPS Y11, (DI)(R11*1) \
	VMOVUPS Y12, (R12) \
	VMOVUPS Y13, (R12)(DX*1) \
	VMOVUPS Y14, (R12)(DX*2) \
	VMOVUPS Y15, (R12)(R11*1) \
	LEAQ (R12)(DX*4), DI

#define LOAD8 \
	LD((SI), Y0) \
	LD((SI)(R8*1), Y1) \
	LD((SI)(R8*2), Y2) \
	LD((SI)(R9*1), Y3) \
	LD((R10), Y4) \
	LD((R10)(R8*1), Y5) \
	LD((R10)(R8*2), Y6) \
	LD((R10)(R9*1), Y7)

// func pack8F32AVX2(dst *float32, nr int, src unsafe.Pointer, stride, kc int)
#define LD(m, d) VMOVUPS m, d
TEXT ·pack8F32AVX2(SB), NOSPLIT, $0-40
	PACK_SETUP(2)
	TESTQ CX, CX
	JZ    done

loop:
	LOAD8
	TRANSPOSE_STORE
	ADDQ $32, SI
	ADDQ $32, R10
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

#undef LD

// func pack8F16AVX2(dst *float32, nr int, src unsafe.Pointer, stride, kc int)
#define LD(m, d) VCVTPH2PS m, d
TEXT ·pack8F16AVX2(SB), NOSPLIT, $0-40
	PACK_SETUP(1)
	TESTQ CX, CX
	JZ    done

loop:
	LOAD8
	TRANSPOSE_STORE
	ADDQ $16, SI
	ADDQ $16, R10
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

#undef LD

// func pack8BF16AVX2(dst *float32, nr int, src unsafe.Pointer, stride, kc int)
#define LD(m, d) VPMOVZXWD m, d; VPSLLD $16, d, d
TEXT ·pack8BF16AVX2(SB), NOSPLIT, $0-40
	PACK_SETUP(1)
	TESTQ CX, CX
	JZ    done

loop:
	LOAD8
	TRANSPOSE_STORE
	ADDQ $16, SI
	ADDQ $16, R10
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

#undef LD
