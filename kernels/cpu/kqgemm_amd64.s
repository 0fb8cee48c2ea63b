//go:build amd64 && !noasm

#include "textflag.h"

// The quants of a Q4_K or Q5_K panel for the quantized GEMM (kqgemm.go),
// AVX-512: for each super-block, piece c of 32 bytes of nibbles and word a
// of it, one gather of the word from each of 16 rows gives a whole 64-byte
// vector of the panel's block 8b+2c (low nibbles) and one of block 8b+2c+1
// (high nibbles), Q5_K's fifth bits gathered from qh alike.
//
// func kqgQuants45AVX512(dst *byte, w *byte, offs *int32, ns, bb, q5 int)
TEXT ·kqgQuants45AVX512(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ ns+24(FP), CX
	MOVQ bb+32(FP), BX
	MOVQ q5+40(FP), DX
	VMOVDQU32 (R8), Z0
	VMOVDQU32 64(R8), Z1
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z9
	MOVL $0x01010101, AX
	VPBROADCASTD AX, Z10
	TESTQ CX, CX
	JLE   done

block:
	// R11: the super-block's qs, R12: its qh (Q5_K).
	LEAQ 16(SI), R11
	MOVQ SI, R12
	TESTQ DX, DX
	JZ   q4
	LEAQ 48(SI), R11
	LEAQ 16(SI), R12

q4:
	XORQ R13, R13 // c

piece:
	MOVQ  R13, AX
	SHLQ  $1, AX
	MOVQ  AX, X6 // shift 2c of qh
	XORQ  R14, R14 // 4a

word:
	LEAQ       (R11)(R14*1), R15
	KXNORW     K1, K1, K1
	VPGATHERDD (R15)(Z0*1), K1, Z2
	KXNORW     K2, K2, K2
	VPGATHERDD (R15)(Z1*1), K2, Z3
	VPSRLD     $4, Z2, Z4
	VPSRLD     $4, Z3, Z5
	VPANDD     Z9, Z2, Z2
	VPANDD     Z9, Z3, Z3
	VPANDD     Z9, Z4, Z4
	VPANDD     Z9, Z5, Z5
	TESTQ      DX, DX
	JZ         store
	LEAQ       (R12)(R14*1), R15
	KXNORW     K1, K1, K1
	VPGATHERDD (R15)(Z0*1), K1, Z7
	KXNORW     K2, K2, K2
	VPGATHERDD (R15)(Z1*1), K2, Z8
	VPSRLD     X6, Z7, Z7
	VPSRLD     X6, Z8, Z8
	VPANDD     Z10, Z7, Z11
	VPANDD     Z10, Z8, Z12
	VPSLLD     $4, Z11, Z11
	VPSLLD     $4, Z12, Z12
	VPORD      Z11, Z2, Z2
	VPORD      Z12, Z3, Z3
	VPSRLD     $1, Z7, Z7
	VPSRLD     $1, Z8, Z8
	VPANDD     Z10, Z7, Z7
	VPANDD     Z10, Z8, Z8
	VPSLLD     $4, Z7, Z7
	VPSLLD     $4, Z8, Z8
	VPORD      Z7, Z4, Z4
	VPORD      Z8, Z5, Z5

store:
	// word a of both blocks: 128a = 32·(4a)
	MOVQ      R14, AX
	SHLQ      $5, AX
	VMOVDQU32 Z2, (DI)(AX*1)
	VMOVDQU32 Z3, 64(DI)(AX*1)
	VMOVDQU32 Z4, 1152(DI)(AX*1)
	VMOVDQU32 Z5, 1216(DI)(AX*1)
	ADDQ      $4, R14
	CMPQ      R14, $32
	JLT       word

	ADDQ $32, R11
	ADDQ $2304, DI // two blocks
	INCQ R13
	CMPQ R13, $4
	JLT  piece

	ADDQ BX, SI
	DECQ CX
	JNZ  block

done:
	VZEROUPPER
	RET

// The quants of a Q6_K panel: sub-block s of 16 of each super-block is the
// panel's block 16b+s, words 0–3 gathered from ql and qh of 16 rows a
// vector, words 4–7 zero.
//
// func kqgQuants6AVX512(dst *byte, w *byte, offs *int32, ns int)
TEXT ·kqgQuants6AVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ ns+24(FP), CX
	VMOVDQU32 (R8), Z0
	VMOVDQU32 64(R8), Z1
	MOVL $0x0f0f0f0f, AX
	VPBROADCASTD AX, Z9
	MOVL $0x03030303, AX
	VPBROADCASTD AX, Z10
	VPXORD Z13, Z13, Z13
	TESTQ CX, CX
	JLE   done6

block6:
	XORQ R13, R13 // s

sub6:
	// h = s>>3, k = (s>>1)&3, half = s&1
	MOVQ R13, AX
	SHRQ $3, AX           // h
	MOVQ R13, BX
	SHRQ $1, BX
	ANDQ $3, BX           // k
	MOVQ R13, DX
	ANDQ $1, DX           // half
	// R11 = SI + 64h + 32(k&1) + 16half (ql), R12 = SI + 128 + 32h + 16half (qh)
	MOVQ AX, R11
	SHLQ $6, R11
	MOVQ BX, R15
	ANDQ $1, R15
	SHLQ $5, R15
	ADDQ R15, R11
	MOVQ DX, R15
	SHLQ $4, R15
	ADDQ R15, R11
	ADDQ SI, R11
	MOVQ AX, R12
	SHLQ $5, R12
	ADDQ R15, R12
	LEAQ 128(SI)(R12*1), R12
	// X6 = 4(k>>1), X7 = 2k
	MOVQ BX, R15
	SHRQ $1, R15
	SHLQ $2, R15
	MOVQ R15, X6
	MOVQ BX, R15
	SHLQ $1, R15
	MOVQ R15, X7
	XORQ R14, R14 // 4a

word6:
	LEAQ       (R11)(R14*1), R15
	KXNORW     K1, K1, K1
	VPGATHERDD (R15)(Z0*1), K1, Z2
	KXNORW     K2, K2, K2
	VPGATHERDD (R15)(Z1*1), K2, Z3
	LEAQ       (R12)(R14*1), R15
	KXNORW     K1, K1, K1
	VPGATHERDD (R15)(Z0*1), K1, Z4
	KXNORW     K2, K2, K2
	VPGATHERDD (R15)(Z1*1), K2, Z5
	VPSRLD     X6, Z2, Z2
	VPSRLD     X6, Z3, Z3
	VPANDD     Z9, Z2, Z2
	VPANDD     Z9, Z3, Z3
	VPSRLD     X7, Z4, Z4
	VPSRLD     X7, Z5, Z5
	VPANDD     Z10, Z4, Z4
	VPANDD     Z10, Z5, Z5
	VPSLLD     $4, Z4, Z4
	VPSLLD     $4, Z5, Z5
	VPORD      Z4, Z2, Z2
	VPORD      Z5, Z3, Z3
	MOVQ       R14, AX
	SHLQ       $5, AX
	VMOVDQU32  Z2, (DI)(AX*1)
	VMOVDQU32  Z3, 64(DI)(AX*1)
	VMOVDQU32  Z13, 512(DI)(AX*1)
	VMOVDQU32  Z13, 576(DI)(AX*1)
	ADDQ       $4, R14
	CMPQ       R14, $16
	JLT        word6

	ADDQ $1152, DI
	INCQ R13
	CMPQ R13, $16
	JLT  sub6

	ADDQ $210, SI
	DECQ CX
	JNZ  block6

done6:
	VZEROUPPER
	RET

// One j of kqgQuants23AVX512: the quants of block 4h+j, word a, of 32
// rows: (qs word >> 2j) & 3, with Q3_K's high bit (hmask word >> 4h+j
// & Z10) as bit 2, each row's xor 7 where its scale is negative, times
// the scale's absolute value. Z2, Z3: the qs word of rows 0–15 and 16–31;
// Z7, Z8: their hmask word >> 4h; R15: the scales of sub-block 8h + a/4;
// R9: word a of block 4h.
#define Q23J(shq, shh, sco, sco64, dso, dso64) \
	VPSRLD    $shq, Z2, Z4; \
	VPSRLD    $shq, Z3, Z5; \
	VPANDD    Z9, Z4, Z4; \
	VPANDD    Z9, Z5, Z5; \
	VPSRLD    $shh, Z7, Z11; \
	VPSRLD    $shh, Z8, Z12; \
	VPANDD    Z10, Z11, Z11; \
	VPANDD    Z10, Z12, Z12; \
	VPSLLD    $2, Z11, Z11; \
	VPSLLD    $2, Z12, Z12; \
	VPORD     Z11, Z4, Z4; \
	VPORD     Z12, Z5, Z5; \
	VMOVDQU32 sco(R15), Z13; \
	VMOVDQU32 sco64(R15), Z14; \
	VPSRAD    $31, Z13, Z15; \
	VPSRAD    $31, Z14, Z16; \
	VPANDD    Z17, Z15, Z15; \
	VPANDD    Z17, Z16, Z16; \
	VPXORD    Z15, Z4, Z4; \
	VPXORD    Z16, Z5, Z5; \
	VPABSD    Z13, Z13; \
	VPABSD    Z14, Z14; \
	VPMULLD   Z13, Z4, Z4; \
	VPMULLD   Z14, Z5, Z5; \
	VMOVDQU32 Z4, dso(R9); \
	VMOVDQU32 Z5, dso64(R9)

// The quants of one Q2_K or Q3_K super-block of a panel (kqgemm.go): for
// each word a of 4 values and half h, one gather of qs's word from each of
// 16 rows (and, Q3_K, of hmask's, shared by both halves) gives word a of
// the panel's blocks 4h..4h+3; the rows' scales of each sub-block come
// from sc, 32 int32 a sub-block.
//
// func kqgQuants23AVX512(dst *byte, w *byte, offs *int32, sc *int32, q3 int)
TEXT ·kqgQuants23AVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ sc+24(FP), R10
	MOVQ q3+32(FP), DX
	VMOVDQU32 (R8), Z0
	VMOVDQU32 64(R8), Z1
	MOVL $0x03030303, AX
	VPBROADCASTD AX, Z9
	MOVL $0x07070707, AX
	VPBROADCASTD AX, Z17
	VPXORD Z10, Z10, Z10
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	LEAQ 16(SI), R11 // qs
	TESTQ DX, DX
	JZ   q2
	MOVL $0x01010101, AX
	VPBROADCASTD AX, Z10
	LEAQ 32(SI), R11

q2:
	XORQ R14, R14 // 4a

word23:
	TESTQ DX, DX
	JZ    noh
	LEAQ       (SI)(R14*1), AX
	KXNORW     K1, K1, K1
	VPGATHERDD (AX)(Z0*1), K1, Z19
	KXNORW     K2, K2, K2
	VPGATHERDD (AX)(Z1*1), K2, Z20

noh:
	XORQ R13, R13 // h

half23:
	MOVQ       R13, AX
	SHLQ       $5, AX
	ADDQ       R11, AX
	ADDQ       R14, AX
	KXNORW     K1, K1, K1
	VPGATHERDD (AX)(Z0*1), K1, Z2
	KXNORW     K2, K2, K2
	VPGATHERDD (AX)(Z1*1), K2, Z3
	MOVQ       R13, AX
	SHLQ       $2, AX
	MOVQ       AX, X6
	VPSRLD     X6, Z19, Z7
	VPSRLD     X6, Z20, Z8
	// R15 = sc + 128·(8h + a/4)
	MOVQ R13, AX
	SHLQ $3, AX
	MOVQ R14, BX
	SHRQ $4, BX
	ADDQ BX, AX
	SHLQ $7, AX
	LEAQ (R10)(AX*1), R15
	// R9 = dst + 4608h + 128a
	MOVQ  R13, AX
	IMULQ $4608, AX
	MOVQ  R14, BX
	SHLQ  $5, BX
	ADDQ  BX, AX
	LEAQ  (DI)(AX*1), R9
	Q23J(0, 0, 0, 64, 0, 64)
	Q23J(2, 1, 256, 320, 1152, 1216)
	Q23J(4, 2, 512, 576, 2304, 2368)
	Q23J(6, 3, 768, 832, 3456, 3520)
	INCQ R13
	CMPQ R13, $2
	JLT  half23

	ADDQ $4, R14
	CMPQ R14, $32
	JLT  word23

	VZEROUPPER
	RET
