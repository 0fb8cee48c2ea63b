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
