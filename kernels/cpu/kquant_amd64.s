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

DATA kq3<>+0(SB)/4, $3
GLOBL kq3<>(SB), RODATA|NOPTR, $4
DATA kq4<>+0(SB)/4, $4
GLOBL kq4<>(SB), RODATA|NOPTR, $4

// Q2GROUP decodes 16 values: quants (byte >> sh) & 3 of the 16 bytes at
// qoff(SI), d·scale at soff(DX) and dmin·min at soff+64(DX), to ooff(DI).
#define Q2GROUP(qoff, sh, soff, moff, ooff, ooff2) \
	VPMOVZXBD qoff(SI), Y1 \
	VPMOVZXBD (qoff+8)(SI), Y2 \
	VPSRLD $sh, Y1, Y1 \
	VPSRLD $sh, Y2, Y2 \
	VPAND Y15, Y1, Y1 \
	VPAND Y15, Y2, Y2 \
	VCVTDQ2PS Y1, Y1 \
	VCVTDQ2PS Y2, Y2 \
	VBROADCASTSS soff(DX), Y10 \
	VBROADCASTSS moff(DX), Y11 \
	VFMSUB213PS Y11, Y10, Y1 \
	VFMSUB213PS Y11, Y10, Y2 \
	VMOVUPS Y1, ooff(DI) \
	VMOVUPS Y2, ooff2(DI)

// func q2kBlockAVX2(dst *float32, qs *byte, dm *[32]float32)
// dm[t] = d·(scales[t] & 15), dm[16+t] = dmin·(scales[t] >> 4).
TEXT ·q2kBlockAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ qs+8(FP), SI
	MOVQ dm+16(FP), DX
	VPBROADCASTD kq3<>(SB), Y15
	Q2GROUP(0, 0, 0, 64, 0, 32)
	Q2GROUP(16, 0, 4, 68, 64, 96)
	Q2GROUP(0, 2, 8, 72, 128, 160)
	Q2GROUP(16, 2, 12, 76, 192, 224)
	Q2GROUP(0, 4, 16, 80, 256, 288)
	Q2GROUP(16, 4, 20, 84, 320, 352)
	Q2GROUP(0, 6, 24, 88, 384, 416)
	Q2GROUP(16, 6, 28, 92, 448, 480)
	Q2GROUP(32, 0, 32, 96, 512, 544)
	Q2GROUP(48, 0, 36, 100, 576, 608)
	Q2GROUP(32, 2, 40, 104, 640, 672)
	Q2GROUP(48, 2, 44, 108, 704, 736)
	Q2GROUP(32, 4, 48, 112, 768, 800)
	Q2GROUP(48, 4, 52, 116, 832, 864)
	Q2GROUP(32, 6, 56, 120, 896, 928)
	Q2GROUP(48, 6, 60, 124, 960, 992)
	VZEROUPPER
	RET

// Q3GROUP decodes 16 values: quants (byte >> sh) & 3 of the 16 bytes at
// qoff(SI), less 4 where the mask bit Y9 of the hmask bytes at hoff(R8)
// is clear, times d·(scale − 32) at soff(DX), to ooff(DI).
#define Q3GROUP(qoff, hoff, sh, soff, ooff, ooff2) \
	VPMOVZXBD qoff(SI), Y1 \
	VPMOVZXBD (qoff+8)(SI), Y2 \
	VPSRLD $sh, Y1, Y1 \
	VPSRLD $sh, Y2, Y2 \
	VPAND Y15, Y1, Y1 \
	VPAND Y15, Y2, Y2 \
	VPMOVZXBD hoff(R8), Y3 \
	VPMOVZXBD (hoff+8)(R8), Y4 \
	VPAND Y9, Y3, Y3 \
	VPAND Y9, Y4, Y4 \
	VPCMPEQD Y13, Y3, Y3 \
	VPCMPEQD Y13, Y4, Y4 \
	VPAND Y14, Y3, Y3 \
	VPAND Y14, Y4, Y4 \
	VPSUBD Y3, Y1, Y1 \
	VPSUBD Y4, Y2, Y2 \
	VCVTDQ2PS Y1, Y1 \
	VCVTDQ2PS Y2, Y2 \
	VBROADCASTSS soff(DX), Y10 \
	VMULPS Y10, Y1, Y1 \
	VMULPS Y10, Y2, Y2 \
	VMOVUPS Y1, ooff(DI) \
	VMOVUPS Y2, ooff2(DI)

// func q3kBlockAVX2(dst *float32, b *byte, dl *[16]float32)
// b is the block (hmask at 0, qs at 32); dl[t] = d·(scale t − 32).
TEXT ·q3kBlockAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ b+8(FP), R8
	LEAQ 32(R8), SI
	MOVQ dl+16(FP), DX
	VPBROADCASTD kq3<>(SB), Y15
	VPBROADCASTD kq4<>(SB), Y14
	VPXOR Y13, Y13, Y13
	MOVL $1, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(0, 0, 0, 0, 0, 32)
	Q3GROUP(16, 16, 0, 4, 64, 96)
	MOVL $2, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(0, 0, 2, 8, 128, 160)
	Q3GROUP(16, 16, 2, 12, 192, 224)
	MOVL $4, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(0, 0, 4, 16, 256, 288)
	Q3GROUP(16, 16, 4, 20, 320, 352)
	MOVL $8, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(0, 0, 6, 24, 384, 416)
	Q3GROUP(16, 16, 6, 28, 448, 480)
	MOVL $16, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(32, 0, 0, 32, 512, 544)
	Q3GROUP(48, 16, 0, 36, 576, 608)
	MOVL $32, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(32, 0, 2, 40, 640, 672)
	Q3GROUP(48, 16, 2, 44, 704, 736)
	MOVL $64, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(32, 0, 4, 48, 768, 800)
	Q3GROUP(48, 16, 4, 52, 832, 864)
	MOVL $128, AX
	VMOVD AX, X9
	VPBROADCASTD X9, Y9
	Q3GROUP(32, 0, 6, 56, 896, 928)
	Q3GROUP(48, 16, 6, 60, 960, 992)
	VZEROUPPER
	RET

DATA kqlanes<>+0(SB)/4, $0
DATA kqlanes<>+4(SB)/4, $1
DATA kqlanes<>+8(SB)/4, $2
DATA kqlanes<>+12(SB)/4, $3
DATA kqlanes<>+16(SB)/4, $4
DATA kqlanes<>+20(SB)/4, $5
DATA kqlanes<>+24(SB)/4, $6
DATA kqlanes<>+28(SB)/4, $7
GLOBL kqlanes<>(SB), RODATA|NOPTR, $32
DATA kq8<>+0(SB)/4, $8
GLOBL kq8<>(SB), RODATA|NOPTR, $4

// HALF broadcasts the f16 at off(SI) to the eight lanes of ymm.
#define HALF(off, xmm, ymm) \
	MOVWLZX off(SI), AX \
	VMOVD AX, xmm \
	VCVTPH2PS xmm, xmm \
	VBROADCASTSS xmm, ymm

// Q32GROUP decodes values k..k+7 (the low nibbles of the 8 bytes at
// qoff(SI)) and k+16..k+23 (their high nibbles) to lo(DI) and hi(DI);
// FIX adds what the type adds to a quant in Y2 (low) or Y3 (high), and
// OUT turns a quant into a value.
#define Q32GROUP(qoff, lo, hi, FIXLO, FIXHI, OUT) \
	VPMOVZXBD qoff(SI), Y1 \
	VPAND Y15, Y1, Y2 \
	VPSRLD $4, Y1, Y3 \
	FIXLO \
	FIXHI \
	VCVTDQ2PS Y2, Y2 \
	VCVTDQ2PS Y3, Y3 \
	OUT(Y2) \
	OUT(Y3) \
	VMOVUPS Y2, lo(DI) \
	VMOVUPS Y3, hi(DI)

#define NOFIX
#define OUTQ41(y) VFMADD213PS Y11, Y10, y
#define OUTQ50(y) VMULPS Y10, y, y

// The fifth bits of values k (Y8 = k + lane) and k+16 (Y9).
#define FIX5LO \
	VPSRLVD Y8, Y4, Y5 \
	VPAND Y12, Y5, Y5 \
	VPSLLD $4, Y5, Y5 \
	VPOR Y5, Y2, Y2
#define FIX5HI \
	VPSRLVD Y9, Y4, Y5 \
	VPAND Y12, Y5, Y5 \
	VPSLLD $4, Y5, Y5 \
	VPOR Y5, Y3, Y3
#define FIX50LO \
	FIX5LO \
	VPSUBD Y14, Y2, Y2
#define FIX50HI \
	FIX5HI \
	VPSUBD Y14, Y3, Y3

// func q41RowAVX2(dst *float32, row *byte, nb int)
// nb Q4_1 blocks: nibble·d + m.
TEXT ·q41RowAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ row+8(FP), SI
	MOVQ nb+16(FP), CX
	VPBROADCASTD kq15<>(SB), Y15
	TESTQ CX, CX
	JZ   q41done

q41loop:
	HALF(0, X10, Y10)
	HALF(2, X11, Y11)
	Q32GROUP(4, 0, 64, NOFIX, NOFIX, OUTQ41)
	Q32GROUP(12, 32, 96, NOFIX, NOFIX, OUTQ41)
	ADDQ $20, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  q41loop

q41done:
	VZEROUPPER
	RET

// func q50RowAVX2(dst *float32, row *byte, nb int)
// nb Q5_0 blocks: (q − 16)·d.
TEXT ·q50RowAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ row+8(FP), SI
	MOVQ nb+16(FP), CX
	VPBROADCASTD kq15<>(SB), Y15
	VPBROADCASTD kq16<>(SB), Y14
	VPBROADCASTD kq1<>(SB), Y12
	VPBROADCASTD kq8<>(SB), Y13
	TESTQ CX, CX
	JZ   q50done

q50loop:
	HALF(0, X10, Y10)
	VPBROADCASTD 2(SI), Y4
	VMOVDQU kqlanes<>(SB), Y8
	VPADDD Y14, Y8, Y9
	Q32GROUP(6, 0, 64, FIX50LO, FIX50HI, OUTQ50)
	VPADDD Y13, Y8, Y8
	VPADDD Y13, Y9, Y9
	Q32GROUP(14, 32, 96, FIX50LO, FIX50HI, OUTQ50)
	ADDQ $22, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  q50loop

q50done:
	VZEROUPPER
	RET

// func q51RowAVX2(dst *float32, row *byte, nb int)
// nb Q5_1 blocks: q·d + m.
TEXT ·q51RowAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ row+8(FP), SI
	MOVQ nb+16(FP), CX
	VPBROADCASTD kq15<>(SB), Y15
	VPBROADCASTD kq16<>(SB), Y14
	VPBROADCASTD kq1<>(SB), Y12
	VPBROADCASTD kq8<>(SB), Y13
	TESTQ CX, CX
	JZ   q51done

q51loop:
	HALF(0, X10, Y10)
	HALF(2, X11, Y11)
	VPBROADCASTD 4(SI), Y4
	VMOVDQU kqlanes<>(SB), Y8
	VPADDD Y14, Y8, Y9
	Q32GROUP(8, 0, 64, FIX5LO, FIX5HI, OUTQ41)
	VPADDD Y13, Y8, Y8
	VPADDD Y13, Y9, Y9
	Q32GROUP(16, 32, 96, FIX5LO, FIX5HI, OUTQ41)
	ADDQ $24, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  q51loop

q51done:
	VZEROUPPER
	RET
