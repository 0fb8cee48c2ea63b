//go:build amd64 && !noasm

#include "textflag.h"

// The quantized GEMM with AVX-512 VNNI (layouts in qgemm.go).

DATA qg0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL qg0f<>(SB), RODATA|NOPTR, $4
DATA qg80<>+0(SB)/4, $0x80808080
GLOBL qg80<>(SB), RODATA|NOPTR, $4

// Token t's byte offset in the preparation's gather is t·xb.
DATA qgiota<>+0(SB)/8, $0x0000000100000000
DATA qgiota<>+8(SB)/8, $0x0000000300000002
DATA qgiota<>+16(SB)/8, $0x0000000500000004
DATA qgiota<>+24(SB)/8, $0x0000000700000006
GLOBL qgiota<>(SB), RODATA|NOPTR, $32

// vpermd indexes that put the tokens' sums (0, 2, 4, 6 in lane 0 and 1,
// 3, 5, 7 in lane 2) in order.
DATA qgtokperm<>+0(SB)/8, $0x0000000800000000
DATA qgtokperm<>+8(SB)/8, $0x0000000900000001
DATA qgtokperm<>+16(SB)/8, $0x0000000a00000002
DATA qgtokperm<>+24(SB)/8, $0x0000000b00000003
GLOBL qgtokperm<>(SB), RODATA|NOPTR, $32

// ---------------------------------------------------------------------------
// Weight panels. Row i = 4L+m of the panel goes to 128-bit lane L of Z_m
// (16 bytes of its block's quants at disp), then a 4×4 transpose of
// dwords within each lane (vpunpck*) leaves dword j of row i at dword i
// of V_j: Z8-Z11 hold V_0-V_3. R8 points to the 16 int32 row offsets, SI
// to the block of row 0 (offsets added), AX is scratch.

#define QGLD(o, lane, z, disp) \
	MOVLQSX      o(R8), AX \
	VINSERTI32X4 $lane, disp(SI)(AX*1), z, z

#define QGLOADROWS(disp) \
	MOVLQSX      0(R8), AX         \
	VMOVDQU      disp(SI)(AX*1), X0 \
	QGLD(16, 1, Z0, disp)                \
	QGLD(32, 2, Z0, disp)                \
	QGLD(48, 3, Z0, disp)                \
	MOVLQSX      4(R8), AX         \
	VMOVDQU      disp(SI)(AX*1), X1 \
	QGLD(20, 1, Z1, disp)                \
	QGLD(36, 2, Z1, disp)                \
	QGLD(52, 3, Z1, disp)                \
	MOVLQSX      8(R8), AX         \
	VMOVDQU      disp(SI)(AX*1), X2 \
	QGLD(24, 1, Z2, disp)                \
	QGLD(40, 2, Z2, disp)                \
	QGLD(56, 3, Z2, disp)                \
	MOVLQSX      12(R8), AX        \
	VMOVDQU      disp(SI)(AX*1), X3 \
	QGLD(28, 1, Z3, disp)                \
	QGLD(44, 2, Z3, disp)                \
	QGLD(60, 3, Z3, disp)

#define QGTRANSPOSE \
	VPUNPCKLDQ  Z1, Z0, Z4  \
	VPUNPCKHDQ  Z1, Z0, Z5  \
	VPUNPCKLDQ  Z3, Z2, Z6  \
	VPUNPCKHDQ  Z3, Z2, Z7  \
	VPUNPCKLQDQ Z6, Z4, Z8  \
	VPUNPCKHQDQ Z6, Z4, Z9  \
	VPUNPCKLQDQ Z7, Z5, Z10 \
	VPUNPCKHQDQ Z7, Z5, Z11

// QGSCALES gathers the 16 rows' f16 scales at (SI) and stores them as
// float32 at 512(DI). Z31 holds the row offsets.
#define QGSCALES \
	KXNORW     K1, K1, K1            \
	VPGATHERDD (SI)(Z31*1), K1, Z12  \
	VPMOVDW    Z12, Y12              \
	VCVTPH2PS  Y12, Z12              \
	VMOVUPS    Z12, 512(DI)

// QG4STORE stores the low nibbles of v at off(DI) and the high ones 256
// bytes further.
#define QG4STORE(v, off) \
	VPANDD    Z30, v, Z12    \
	VMOVDQU64 Z12, off(DI)   \
	VPSRLW    $4, v, Z13     \
	VPANDD    Z30, Z13, Z13  \
	VMOVDQU64 Z13, (off+256)(DI)

// func qgPack4VNNI(dst *byte, w *byte, offs *int32, nb int)
TEXT ·qgPack4VNNI(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ nb+24(FP), CX
	VMOVDQU32    (R8), Z31
	VPBROADCASTD qg0f<>(SB), Z30
	TESTQ CX, CX
	JLE   qgp4done

qgp4loop:
	QGLOADROWS(2)
	QGTRANSPOSE
	QG4STORE(Z8, 0)
	QG4STORE(Z9, 64)
	QG4STORE(Z10, 128)
	QG4STORE(Z11, 192)
	QGSCALES
	ADDQ $18, SI
	ADDQ $576, DI
	DECQ CX
	JNZ  qgp4loop

qgp4done:
	VZEROUPPER
	RET

// QG8STORE stores v xor 0x80 at off(DI).
#define QG8STORE(v, off) \
	VPXORD    Z30, v, Z12 \
	VMOVDQU64 Z12, off(DI)

// func qgPack8VNNI(dst *byte, w *byte, offs *int32, nb int)
TEXT ·qgPack8VNNI(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ nb+24(FP), CX
	VMOVDQU32    (R8), Z31
	VPBROADCASTD qg80<>(SB), Z30
	TESTQ CX, CX
	JLE   qgp8done

qgp8loop:
	QGLOADROWS(2)
	QGTRANSPOSE
	QG8STORE(Z8, 0)
	QG8STORE(Z9, 64)
	QG8STORE(Z10, 128)
	QG8STORE(Z11, 192)
	QGLOADROWS(18)
	QGTRANSPOSE
	QG8STORE(Z8, 256)
	QG8STORE(Z9, 320)
	QG8STORE(Z10, 384)
	QG8STORE(Z11, 448)
	QGSCALES
	ADDQ $34, SI
	ADDQ $576, DI
	DECQ CX
	JNZ  qgp8loop

qgp8done:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// func qgPrepVNNI(dst *byte, xq *byte, xb, nb, m int)
//
// Eight Q8_0 rows at SI, R8-R14 (xb bytes apart), BX the block offset.
// Z0-Z3 hold tokens 0-1, 2-3, 4-5, 6-7 of a block; Z4-Z7 their m·Σq in
// groups of four bytes, reduced to one int32 per token in Y14 (see
// qgtokperm); Y28 the tokens' offsets for the scale gather.
TEXT ·qgPrepVNNI(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ xq+8(FP), SI
	MOVQ xb+16(FP), DX
	MOVQ nb+24(FP), CX
	MOVQ m+32(FP), AX
	VPBROADCASTB AX, Z29
	VPBROADCASTD DX, Y28
	VPMULLD      qgiota<>(SB), Y28, Y28
	VMOVDQU32    qgtokperm<>(SB), Y27
	VPXORD       Z15, Z15, Z15
	LEAQ (SI)(DX*1), R8
	LEAQ (R8)(DX*1), R9
	LEAQ (R9)(DX*1), R10
	LEAQ (R10)(DX*1), R11
	LEAQ (R11)(DX*1), R12
	LEAQ (R12)(DX*1), R13
	LEAQ (R13)(DX*1), R14
	XORQ BX, BX
	TESTQ CX, CX
	JLE   qgprepdone

qgpreploop:
	VMOVDQU      2(SI)(BX*1), Y0
	VINSERTI64X4 $1, 2(R8)(BX*1), Z0, Z0
	VMOVDQU      2(R9)(BX*1), Y1
	VINSERTI64X4 $1, 2(R10)(BX*1), Z1, Z1
	VMOVDQU      2(R11)(BX*1), Y2
	VINSERTI64X4 $1, 2(R12)(BX*1), Z2, Z2
	VMOVDQU      2(R13)(BX*1), Y3
	VINSERTI64X4 $1, 2(R14)(BX*1), Z3, Z3
	VMOVDQU64    Z0, (DI)
	VMOVDQU64    Z1, 64(DI)
	VMOVDQU64    Z2, 128(DI)
	VMOVDQU64    Z3, 192(DI)
	VPXORD       Z4, Z4, Z4
	VPXORD       Z5, Z5, Z5
	VPXORD       Z6, Z6, Z6
	VPXORD       Z7, Z7, Z7
	VPDPBUSD     Z0, Z29, Z4
	VPDPBUSD     Z1, Z29, Z5
	VPDPBUSD     Z2, Z29, Z6
	VPDPBUSD     Z3, Z29, Z7

	// Per 128-bit lane, the sums of Z4-Z7's four dwords, in that order.
	VPUNPCKLDQ  Z5, Z4, Z8
	VPUNPCKHDQ  Z5, Z4, Z9
	VPADDD      Z9, Z8, Z8
	VPUNPCKLDQ  Z7, Z6, Z10
	VPUNPCKHDQ  Z7, Z6, Z11
	VPADDD      Z11, Z10, Z10
	VPUNPCKLQDQ Z10, Z8, Z12
	VPUNPCKHQDQ Z10, Z8, Z13
	VPADDD      Z13, Z12, Z12
	// Each token's two lanes added: lane 0 tokens 0, 2, 4, 6, lane 2
	// tokens 1, 3, 5, 7; then in order and negated.
	VSHUFI32X4 $0xb1, Z12, Z12, Z13
	VPADDD     Z13, Z12, Z12
	VPERMD     Z12, Z27, Z14
	VPSUBD     Y14, Y15, Y14
	VMOVDQU32  Y14, 256(DI)

	LEAQ       (SI)(BX*1), AX
	KXNORB     K1, K1, K1
	VPGATHERDD (AX)(Y28*1), K1, Y16
	VPMOVDW    Y16, X16
	VCVTPH2PS  X16, Y16
	VMOVUPS    Y16, 288(DI)

	ADDQ $34, BX
	ADDQ $320, DI
	DECQ CX
	JNZ  qgpreploop

qgprepdone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// func qgGemmVNNI(out *float32, ldo int, panel *byte, nb int, xg *byte, ng int, mask int, pf *byte, pfn int)
//
// Registers: DX the group's output, R8 ldo in bytes, R9 the panel, R10
// nb, SI the prepared activations, R11 the groups left, DI the panel's
// block, CX the blocks left, K1 the row mask, R12 the next line to
// prefetch and R13 the end of the prefetch range: one cache line a block,
// the weights of the next panel, so that packing it finds them in the
// cache. Z0-Z7 one block's weights
// (vector j: bytes 4j..4j+3 of each row), Z8 its d_w, Z9-Z15 scratch,
// Z16-Z23 the tokens' int32 sums of the block, Z24-Z31 their float sums.

// QGDOT multiplies weight vector w by bytes o..o+3 of each token.
#define QGDOT(o, w) \
	VPDPBUSD.BCST (o)(SI), w, Z16       \
	VPDPBUSD.BCST (o+32)(SI), w, Z17    \
	VPDPBUSD.BCST (o+64)(SI), w, Z18    \
	VPDPBUSD.BCST (o+96)(SI), w, Z19    \
	VPDPBUSD.BCST (o+128)(SI), w, Z20   \
	VPDPBUSD.BCST (o+160)(SI), w, Z21   \
	VPDPBUSD.BCST (o+192)(SI), w, Z22   \
	VPDPBUSD.BCST (o+224)(SI), w, Z23

// QGACC adds token t's block, int32 sums in s, to its float sums acc.
#define QGACC(t, s, tmp, acc) \
	VCVTDQ2PS     s, s                  \
	VMULPS.BCST   (288+4*t)(SI), Z8, tmp \
	VFMADD231PS   tmp, s, acc

TEXT ·qgGemmVNNI(SB), NOSPLIT, $0-72
	MOVQ pf+56(FP), R12
	MOVQ pfn+64(FP), R13
	ADDQ R12, R13
	MOVQ out+0(FP), DX
	MOVQ ldo+8(FP), R8
	SHLQ $2, R8
	MOVQ panel+16(FP), R9
	MOVQ nb+24(FP), R10
	MOVQ xg+32(FP), SI
	MOVQ ng+40(FP), R11
	MOVQ mask+48(FP), AX
	KMOVW AX, K1
	TESTQ R11, R11
	JLE   qggdone
	TESTQ R10, R10
	JLE   qggdone

qgggroup:
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31
	MOVQ R9, DI
	MOVQ R10, CX

qggblock:
	CMPQ         R12, R13
	JAE          qggnopf
	PREFETCHT0   (R12)
	ADDQ         $64, R12

qggnopf:
	VMOVDQU64    (DI), Z0
	VMOVDQU64    64(DI), Z1
	VMOVDQU64    128(DI), Z2
	VMOVDQU64    192(DI), Z3
	VMOVDQU64    256(DI), Z4
	VMOVDQU64    320(DI), Z5
	VMOVDQU64    384(DI), Z6
	VMOVDQU64    448(DI), Z7
	VMOVUPS      512(DI), Z8
	VPBROADCASTD 256(SI), Z16
	VPBROADCASTD 260(SI), Z17
	VPBROADCASTD 264(SI), Z18
	VPBROADCASTD 268(SI), Z19
	VPBROADCASTD 272(SI), Z20
	VPBROADCASTD 276(SI), Z21
	VPBROADCASTD 280(SI), Z22
	VPBROADCASTD 284(SI), Z23
	QGDOT(0, Z0)
	QGDOT(4, Z1)
	QGDOT(8, Z2)
	QGDOT(12, Z3)
	QGDOT(16, Z4)
	QGDOT(20, Z5)
	QGDOT(24, Z6)
	QGDOT(28, Z7)
	QGACC(0, Z16, Z9, Z24)
	QGACC(1, Z17, Z10, Z25)
	QGACC(2, Z18, Z11, Z26)
	QGACC(3, Z19, Z12, Z27)
	QGACC(4, Z20, Z13, Z28)
	QGACC(5, Z21, Z14, Z29)
	QGACC(6, Z22, Z15, Z30)
	QGACC(7, Z23, Z9, Z31)
	ADDQ $576, DI
	ADDQ $320, SI
	DECQ CX
	JNZ  qggblock

	MOVQ    DX, AX
	VMOVUPS Z24, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z25, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z26, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z27, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z28, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z29, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z30, K1, (AX)
	ADDQ    R8, AX
	VMOVUPS Z31, K1, (AX)
	LEAQ    (DX)(R8*8), DX
	DECQ    R11
	JNZ     qgggroup

qggdone:
	VZEROUPPER
	RET
