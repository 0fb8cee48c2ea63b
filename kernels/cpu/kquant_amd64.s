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

DATA kq16<>+0(SB)/4, $16
GLOBL kq16<>(SB), RODATA|NOPTR, $4
DATA kq1<>+0(SB)/4, $1
GLOBL kq1<>(SB), RODATA|NOPTR, $4
DATA kq2<>+0(SB)/4, $2
GLOBL kq2<>(SB), RODATA|NOPTR, $4

// Q5GROUP is Q4GROUP with the fifth bits: those of qh bytes off(R8)
// selected by the masks Y8 (low nibbles) and Y9 (high) add 16 (Y14).
#define Q5GROUP(off, lo, hi) \
	VPMOVZXBD off(SI), Y1 \
	VPMOVZXBD off(R8), Y4 \
	VPAND Y15, Y1, Y2 \
	VPSRLD $4, Y1, Y3 \
	VPAND Y8, Y4, Y5 \
	VPCMPEQD Y8, Y5, Y5 \
	VPAND Y14, Y5, Y5 \
	VPOR Y5, Y2, Y2 \
	VPAND Y9, Y4, Y6 \
	VPCMPEQD Y9, Y6, Y6 \
	VPAND Y14, Y6, Y6 \
	VPOR Y6, Y3, Y3 \
	VCVTDQ2PS Y2, Y2 \
	VCVTDQ2PS Y3, Y3 \
	VFMSUB213PS Y12, Y10, Y2 \
	VFMSUB213PS Y13, Y11, Y3 \
	VMOVUPS Y2, lo(DI) \
	VMOVUPS Y3, hi(DI)

// func q5kBlockAVX2(dst *float32, qs, qh *byte, dm *[16]float32)
// As q4kBlockAVX2, with the Q5_K high bits qh.
TEXT ·q5kBlockAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ qs+8(FP), SI
	MOVQ qh+16(FP), R8
	MOVQ dm+24(FP), DX
	VPBROADCASTD kq15<>(SB), Y15
	VPBROADCASTD kq16<>(SB), Y14
	VPBROADCASTD kq1<>(SB), Y8
	VPBROADCASTD kq2<>(SB), Y9
	MOVQ $4, CX

q5loop:
	VBROADCASTSS 0(DX), Y10
	VBROADCASTSS 4(DX), Y11
	VBROADCASTSS 32(DX), Y12
	VBROADCASTSS 36(DX), Y13
	Q5GROUP(0, 0, 128)
	Q5GROUP(8, 32, 160)
	Q5GROUP(16, 64, 192)
	Q5GROUP(24, 96, 224)
	ADDQ $32, SI
	ADDQ $256, DI
	ADDQ $8, DX
	VPSLLD $2, Y8, Y8
	VPSLLD $2, Y9, Y9
	DECQ CX
	JNZ  q5loop
	VZEROUPPER
	RET

DATA kqnib<>+0(SB)/4, $0x0f0f0f0f
GLOBL kqnib<>(SB), RODATA|NOPTR, $4

// IQ4RUN decodes the 16-byte run at off(SI) (32 values: its low nibbles,
// then its high ones) through the codebook X7, scaled by Y0, to DI.
#define IQ4RUN(off) \
	VMOVDQU off(SI), X1 \
	VPAND X6, X1, X2 \
	VPSRLW $4, X1, X3 \
	VPAND X6, X3, X3 \
	VPSHUFB X2, X7, X2 \
	VPSHUFB X3, X7, X3 \
	VPMOVSXBD X2, Y4 \
	VPSRLDQ $8, X2, X2 \
	VPMOVSXBD X2, Y5 \
	VCVTDQ2PS Y4, Y4 \
	VCVTDQ2PS Y5, Y5 \
	VMULPS Y0, Y4, Y4 \
	VMULPS Y0, Y5, Y5 \
	VMOVUPS Y4, 0(DI) \
	VMOVUPS Y5, 32(DI) \
	VPMOVSXBD X3, Y4 \
	VPSRLDQ $8, X3, X3 \
	VPMOVSXBD X3, Y5 \
	VCVTDQ2PS Y4, Y4 \
	VCVTDQ2PS Y5, Y5 \
	VMULPS Y0, Y4, Y4 \
	VMULPS Y0, Y5, Y5 \
	VMOVUPS Y4, 64(DI) \
	VMOVUPS Y5, 96(DI)

// func iq4nlRowAVX2(dst *float32, row *byte, nb int, book *[16]int8)
// nb IQ4_NL blocks of row: d (f16) times the codebook entries.
TEXT ·iq4nlRowAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ row+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ book+24(FP), AX
	VMOVDQU (AX), X7
	VPBROADCASTD kqnib<>(SB), X6
	TESTQ CX, CX
	JZ   nldone

nlloop:
	MOVWLZX (SI), AX
	VMOVD AX, X0
	VCVTPH2PS X0, X0
	VBROADCASTSS X0, Y0
	IQ4RUN(2)
	ADDQ $18, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  nlloop

nldone:
	VZEROUPPER
	RET

// func iq4xsBlockAVX2(dst *float32, qs *byte, dl *[8]float32, book *[16]int8)
// One IQ4_XS block: sub-block s's 16 bytes at qs+16s scaled by dl[s].
TEXT ·iq4xsBlockAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ qs+8(FP), SI
	MOVQ dl+16(FP), DX
	MOVQ book+24(FP), AX
	VMOVDQU (AX), X7
	VPBROADCASTD kqnib<>(SB), X6
	MOVQ $8, CX

xsloop:
	VBROADCASTSS (DX), Y0
	IQ4RUN(0)
	ADDQ $16, SI
	ADDQ $128, DI
	ADDQ $4, DX
	DECQ CX
	JNZ  xsloop
	VZEROUPPER
	RET
