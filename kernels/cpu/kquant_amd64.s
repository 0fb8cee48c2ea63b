//go:build amd64 && !noasm

#include "textflag.h"

// Decoding of Q4_K and Q6_K super-blocks to float32 with AVX2 and FMA
// (kquant.go). The scales come unpacked from Go; each quant is widened
// to an int32 lane, converted and scaled with one rounding: bit for bit
// what kernels.Decode computes (Q4_K: d·sc·q − dmin·m, whose product is
// exact, so the fused multiply-subtract rounds as the separate ones do;
// Q6_K: (d·scale)·(q − 32)).

DATA kq15<>+0(SB)/4, $15
GLOBL kq15<>(SB), RODATA|NOPTR, $4
DATA kq48<>+0(SB)/4, $48
GLOBL kq48<>(SB), RODATA|NOPTR, $4
DATA kq32<>+0(SB)/4, $32
GLOBL kq32<>(SB), RODATA|NOPTR, $4

// Q4GROUP decodes 8 bytes of quants at off(SI): the low nibbles to
// lo(DI) with scale Y10 and min Y12, the high ones to hi(DI) with Y11
// and Y13.
#define Q4GROUP(off, lo, hi) \
	VPMOVZXBD off(SI), Y1 \
	VPAND Y15, Y1, Y2 \
	VPSRLD $4, Y1, Y3 \
	VCVTDQ2PS Y2, Y2 \
	VCVTDQ2PS Y3, Y3 \
	VFMSUB213PS Y12, Y10, Y2 \
	VFMSUB213PS Y13, Y11, Y3 \
	VMOVUPS Y2, lo(DI) \
	VMOVUPS Y3, hi(DI)

// func q4kBlockAVX2(dst *float32, qs *byte, dm *[16]float32)
// dm[j] = d·sc(j), dm[8+j] = dmin·m(j) for the eight sub-blocks.
TEXT ·q4kBlockAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ qs+8(FP), SI
	MOVQ dm+16(FP), DX
	VPBROADCASTD kq15<>(SB), Y15
	MOVQ $4, CX

q4loop:
	VBROADCASTSS 0(DX), Y10
	VBROADCASTSS 4(DX), Y11
	VBROADCASTSS 32(DX), Y12
	VBROADCASTSS 36(DX), Y13
	Q4GROUP(0, 0, 128)
	Q4GROUP(8, 32, 160)
	Q4GROUP(16, 64, 192)
	Q4GROUP(24, 96, 224)
	ADDQ $32, SI
	ADDQ $256, DI
	ADDQ $8, DX
	DECQ CX
	JNZ  q4loop
	VZEROUPPER
	RET

// Q6GROUP decodes values l..l+7 of a half block (l = off): ql at SI, qh
// at R8, d·scale at DX, into DI. Y13 = 15, Y14 = 48, Y15 = 32.
#define Q6GROUP(off, s0, s1, s2, s3, o0, o1, o2, o3) \
	VPMOVZXBD off(SI), Y1 \
	VPMOVZXBD (off+32)(SI), Y2 \
	VPMOVZXBD off(R8), Y3 \
	VPAND Y13, Y1, Y4 \
	VPSLLD $4, Y3, Y5 \
	VPAND Y14, Y5, Y5 \
	VPOR Y5, Y4, Y4 \
	VPSUBD Y15, Y4, Y4 \
	VCVTDQ2PS Y4, Y4 \
	VBROADCASTSS s0(DX), Y6 \
	VMULPS Y6, Y4, Y4 \
	VMOVUPS Y4, o0(DI) \
	VPAND Y13, Y2, Y4 \
	VPSLLD $2, Y3, Y5 \
	VPAND Y14, Y5, Y5 \
	VPOR Y5, Y4, Y4 \
	VPSUBD Y15, Y4, Y4 \
	VCVTDQ2PS Y4, Y4 \
	VBROADCASTSS s1(DX), Y6 \
	VMULPS Y6, Y4, Y4 \
	VMOVUPS Y4, o1(DI) \
	VPSRLD $4, Y1, Y4 \
	VPAND Y14, Y3, Y5 \
	VPOR Y5, Y4, Y4 \
	VPSUBD Y15, Y4, Y4 \
	VCVTDQ2PS Y4, Y4 \
	VBROADCASTSS s2(DX), Y6 \
	VMULPS Y6, Y4, Y4 \
	VMOVUPS Y4, o2(DI) \
	VPSRLD $4, Y2, Y4 \
	VPSRLD $2, Y3, Y5 \
	VPAND Y14, Y5, Y5 \
	VPOR Y5, Y4, Y4 \
	VPSUBD Y15, Y4, Y4 \
	VCVTDQ2PS Y4, Y4 \
	VBROADCASTSS s3(DX), Y6 \
	VMULPS Y6, Y4, Y4 \
	VMOVUPS Y4, o3(DI)

// func q6kBlockAVX2(dst *float32, b *byte, dl *[16]float32)
// dl[i] = d·scales[i].
TEXT ·q6kBlockAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ dl+16(FP), DX
	LEAQ 128(SI), R8
	VPBROADCASTD kq15<>(SB), Y13
	VPBROADCASTD kq48<>(SB), Y14
	VPBROADCASTD kq32<>(SB), Y15
	MOVQ $2, CX

q6loop:
	Q6GROUP(0, 0, 8, 16, 24, 0, 128, 256, 384)
	Q6GROUP(8, 0, 8, 16, 24, 32, 160, 288, 416)
	Q6GROUP(16, 4, 12, 20, 28, 64, 192, 320, 448)
	Q6GROUP(24, 4, 12, 20, 28, 96, 224, 352, 480)
	ADDQ $64, SI
	ADDQ $32, R8
	ADDQ $32, DX
	ADDQ $512, DI
	DECQ CX
	JNZ  q6loop
	VZEROUPPER
	RET
