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
GLOBL qgiota<>(SB), RODATA|NOPTR, $16

// vpermd indexes that put the tokens' sums (0, 2 in lane 0 and 1, 3 in
// lane 2) in order.
DATA qgtokperm<>+0(SB)/8, $0x0000000800000000
DATA qgtokperm<>+8(SB)/8, $0x0000000900000001
GLOBL qgtokperm<>(SB), RODATA|NOPTR, $16

// ---------------------------------------------------------------------------
// Weight panels, 16 rows at a time: row i = 4L+m of the half goes to
// 128-bit lane L of Z_m (16 bytes of its block's quants at disp), then a
// 4×4 transpose of dwords within each lane (vpunpck*) leaves dword j of
// row i at dword i of V_j: Z8-Z11 hold V_0-V_3. ob points to the half's
// 16 int32 row offsets, SI to the block of row 0 (offsets added), AX is
// scratch.

#define QGLD(o, lane, z, disp, ob) \
	MOVLQSX      o(ob), AX \
	VINSERTI32X4 $lane, disp(SI)(AX*1), z, z

#define QGLOADROWS(disp, ob) \
	MOVLQSX      0(ob), AX          \
	VMOVDQU      disp(SI)(AX*1), X0 \
	QGLD(16, 1, Z0, disp, ob)       \
	QGLD(32, 2, Z0, disp, ob)       \
	QGLD(48, 3, Z0, disp, ob)       \
	MOVLQSX      4(ob), AX          \
	VMOVDQU      disp(SI)(AX*1), X1 \
	QGLD(20, 1, Z1, disp, ob)       \
	QGLD(36, 2, Z1, disp, ob)       \
	QGLD(52, 3, Z1, disp, ob)       \
	MOVLQSX      8(ob), AX          \
	VMOVDQU      disp(SI)(AX*1), X2 \
	QGLD(24, 1, Z2, disp, ob)       \
	QGLD(40, 2, Z2, disp, ob)       \
	QGLD(56, 3, Z2, disp, ob)       \
	MOVLQSX      12(ob), AX         \
	VMOVDQU      disp(SI)(AX*1), X3 \
	QGLD(28, 1, Z3, disp, ob)       \
	QGLD(44, 2, Z3, disp, ob)       \
	QGLD(60, 3, Z3, disp, ob)

#define QGTRANSPOSE \
	VPUNPCKLDQ  Z1, Z0, Z4  \
	VPUNPCKHDQ  Z1, Z0, Z5  \
	VPUNPCKLDQ  Z3, Z2, Z6  \
	VPUNPCKHDQ  Z3, Z2, Z7  \
	VPUNPCKLQDQ Z6, Z4, Z8  \
	VPUNPCKHQDQ Z6, Z4, Z9  \
	VPUNPCKLQDQ Z7, Z5, Z10 \
	VPUNPCKHQDQ Z7, Z5, Z11

// QGSCALES gathers the f16 scales at (SI) of the 16 rows whose offsets
// are in idx and stores them as float32 at off(DI).
#define QGSCALES(idx, off) \
	KXNORW     K1, K1, K1           \
	VPGATHERDD (SI)(idx*1), K1, Z12 \
	VPMOVDW    Z12, Y12             \
	VCVTPH2PS  Y12, Z12             \
	VMOVUPS    Z12, off(DI)

// QG4STORE stores the low nibbles of v at off(DI) and the high ones 512
// bytes further (values 16 on of the block).
#define QG4STORE(v, off) \
	VPANDD    Z30, v, Z12   \
	VMOVDQU64 Z12, off(DI)  \
	VPSRLW    $4, v, Z13    \
	VPANDD    Z30, Z13, Z13 \
	VMOVDQU64 Z13, (off+512)(DI)

// QG4HALF packs the Q4_0 rows of one half (offsets at ob) into the
// vectors at 64h.
#define QG4HALF(ob, h) \
	QGLOADROWS(2, ob)        \
	QGTRANSPOSE              \
	QG4STORE(Z8, 64*h)       \
	QG4STORE(Z9, 128+64*h)   \
	QG4STORE(Z10, 256+64*h)  \
	QG4STORE(Z11, 384+64*h)

// func qgPack4VNNI(dst *byte, w *byte, offs *int32, nb int)
TEXT ·qgPack4VNNI(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ nb+24(FP), CX
	LEAQ 64(R8), R9
	VMOVDQU32    (R8), Z31
	VMOVDQU32    (R9), Z29
	VPBROADCASTD qg0f<>(SB), Z30
	TESTQ CX, CX
	JLE   qgp4done

qgp4loop:
	QG4HALF(R8, 0)
	QG4HALF(R9, 1)
	QGSCALES(Z31, 1024)
	QGSCALES(Z29, 1088)
	ADDQ $18, SI
	ADDQ $1152, DI
	DECQ CX
	JNZ  qgp4loop

qgp4done:
	VZEROUPPER
	RET

// QG8STORE stores v xor 0x80 at off(DI).
#define QG8STORE(v, off) \
	VPXORD    Z30, v, Z12 \
	VMOVDQU64 Z12, off(DI)

// QG8HALF packs the Q8_0 rows of one half (offsets at ob) into the
// vectors at 64h.
#define QG8HALF(ob, h) \
	QGLOADROWS(2, ob)        \
	QGTRANSPOSE              \
	QG8STORE(Z8, 64*h)       \
	QG8STORE(Z9, 128+64*h)   \
	QG8STORE(Z10, 256+64*h)  \
	QG8STORE(Z11, 384+64*h)  \
	QGLOADROWS(18, ob)       \
	QGTRANSPOSE              \
	QG8STORE(Z8, 512+64*h)   \
	QG8STORE(Z9, 640+64*h)   \
	QG8STORE(Z10, 768+64*h)  \
	QG8STORE(Z11, 896+64*h)

// func qgPack8VNNI(dst *byte, w *byte, offs *int32, nb int)
TEXT ·qgPack8VNNI(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ nb+24(FP), CX
	LEAQ 64(R8), R9
	VMOVDQU32    (R8), Z31
	VMOVDQU32    (R9), Z29
	VPBROADCASTD qg80<>(SB), Z30
	TESTQ CX, CX
	JLE   qgp8done

qgp8loop:
	QG8HALF(R8, 0)
	QG8HALF(R9, 1)
	QGSCALES(Z31, 1024)
	QGSCALES(Z29, 1088)
	ADDQ $34, SI
	ADDQ $1152, DI
	DECQ CX
	JNZ  qgp8loop

qgp8done:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// func qgPrepVNNI(dst *byte, xq *byte, xb, nb, m int)
//
// Four Q8_0 rows at SI, R8-R10 (xb bytes apart), BX the block offset. Z0
// holds tokens 0-1 of a block, Z1 tokens 2-3; Z4 and Z5 their m·Σq in
// groups of four bytes, reduced to one int32 per token in X14 (see
// qgtokperm); X28 the tokens' offsets for the scale gather.
TEXT ·qgPrepVNNI(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ xq+8(FP), SI
	MOVQ xb+16(FP), DX
	MOVQ nb+24(FP), CX
	MOVQ m+32(FP), AX
	VPBROADCASTB AX, Z29
	VPBROADCASTD DX, X28
	VPMULLD      qgiota<>(SB), X28, X28
	VMOVDQU32    qgtokperm<>(SB), X27
	VPXORD       Z15, Z15, Z15
	LEAQ (SI)(DX*1), R8
	LEAQ (R8)(DX*1), R9
	LEAQ (R9)(DX*1), R10
	XORQ BX, BX
	TESTQ CX, CX
	JLE   qgprepdone

qgpreploop:
	VMOVDQU      2(SI)(BX*1), Y0
	VINSERTI64X4 $1, 2(R8)(BX*1), Z0, Z0
	VMOVDQU      2(R9)(BX*1), Y1
	VINSERTI64X4 $1, 2(R10)(BX*1), Z1, Z1
	VMOVDQU64    Z0, (DI)
	VMOVDQU64    Z1, 64(DI)
	VPXORD       Z4, Z4, Z4
	VPXORD       Z5, Z5, Z5
	VPDPBUSD     Z0, Z29, Z4
	VPDPBUSD     Z1, Z29, Z5

	// Per 128-bit lane, the sums of Z4's and Z5's four dwords in dwords
	// 0 and 1; each token's two lanes added (lane 0: tokens 0 and 2,
	// lane 2: tokens 1 and 3); then in order and negated.
	VPUNPCKLDQ Z5, Z4, Z8
	VPUNPCKHDQ Z5, Z4, Z9
	VPADDD     Z9, Z8, Z8
	VPSHUFD    $0x4e, Z8, Z9
	VPADDD     Z9, Z8, Z8
	VSHUFI32X4 $0xb1, Z8, Z8, Z9
	VPADDD     Z9, Z8, Z8
	VPERMD     Z8, Z27, Z14
	VPSUBD     X14, X15, X14
	VMOVDQU32  X14, 128(DI)

	LEAQ       (SI)(BX*1), AX
	KXNORB     K1, K1, K1
	VPGATHERDD (AX)(X28*1), K1, X16
	VPMOVDW    X16, X16
	VCVTPH2PS  X16, X16
	VMOVUPS    X16, 144(DI)

	ADDQ $34, BX
	ADDQ $160, DI
	DECQ CX
	JNZ  qgpreploop

qgprepdone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// func qgGemmVNNI(out *float32, ldo int, panel *byte, nb int, xg *byte, ng int, mask int, pf *byte, pfn int)
//
// Each of the 8 sums of a block (4 tokens × 2 halves of the rows) runs as
// two chains of four vpdpbusd, bytes 0-15 and 16-31 of the block, added
// at the end: 16 independent chains keep both vpdpbusd pipes busy where 8
// chains of eight, at four cycles each, left them idle a quarter of the
// time. vpdpbusd, the multiplies and the FMAs share two pipes; loads run
// at two a cycle: the block's 64 vpdpbusd, 8 multiplies and 8 FMAs take
// 40 cycles and its 58 loads 29.
//
// Registers: DX the group's output, R8 ldo in bytes, R9 the panel, R10
// nb, SI the prepared activations, R11 the groups left, DI the panel's
// block, CX the blocks left, K1 and K2 the masks of rows 0-15 and 16-31,
// R12 the next line to prefetch and R13 the end of the prefetch range: one
// cache line a block, the weights of the next panel, so that packing it
// finds them in the cache. Z0-Z3 the four tokens' int32 sums of bytes
// 0-15 of the block over rows 0-15, Z4-Z7 over rows 16-31, Z16-Z23 the
// same of bytes 16-31; Z8-Z11 and Z12-Z15 the float sums; Z24 and Z25 a
// pair of weight vectors, Z26-Z29 the tokens' broadcast activations, Z30
// and Z31 d_w.

// QGJ multiplies bytes 4j..4j+3 of the block's rows (the vectors at
// 128j, 64 bytes apart) and of each token, into a0-a3 (rows 0-15) and
// b0-b3 (rows 16-31).
#define QGJ(j, a0, a1, a2, a3, b0, b1, b2, b3) \
	VMOVDQU64    (128*j)(DI), Z24    \
	VMOVDQU64    (128*j+64)(DI), Z25 \
	VPBROADCASTD (4*j)(SI), Z26      \
	VPBROADCASTD (32+4*j)(SI), Z27   \
	VPBROADCASTD (64+4*j)(SI), Z28   \
	VPBROADCASTD (96+4*j)(SI), Z29   \
	VPDPBUSD     Z26, Z24, a0        \
	VPDPBUSD     Z26, Z25, b0        \
	VPDPBUSD     Z27, Z24, a1        \
	VPDPBUSD     Z27, Z25, b1        \
	VPDPBUSD     Z28, Z24, a2        \
	VPDPBUSD     Z28, Z25, b2        \
	VPDPBUSD     Z29, Z24, a3        \
	VPDPBUSD     Z29, Z25, b3

#define QGJLO(j) QGJ(j, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)
#define QGJHI(j) QGJ(j, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23)

// QGACC adds token t's block, int32 sums in slo and shi plus s2lo and
// s2hi, to its float sums.
#define QGACC(t, slo, shi, s2lo, s2hi, alo, ahi) \
	VPADDD       s2lo, slo, slo     \
	VPADDD       s2hi, shi, shi     \
	VCVTDQ2PS    slo, slo           \
	VCVTDQ2PS    shi, shi           \
	VBROADCASTSS (144+4*t)(SI), Z26 \
	VMULPS       Z26, Z30, s2lo     \
	VMULPS       Z26, Z31, s2hi     \
	VFMADD231PS  s2lo, slo, alo     \
	VFMADD231PS  s2hi, shi, ahi

// QGCORR starts token t's int32 sums from its correction.
#define QGCORR(t, slo, shi) \
	VPBROADCASTD (128+4*t)(SI), slo \
	VMOVDQA64    slo, shi

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
	SHRQ  $16, AX
	KMOVW AX, K2
	TESTQ R11, R11
	JLE   qggdone
	TESTQ R10, R10
	JLE   qggdone

qgggroup:
	// The output lines of the group after next: a large output (the
	// logits of a vocabulary) misses the caches, and each store would
	// wait for its line to be read. (A line read with no other core
	// holding it comes exclusive: the stores then need no more.)
	LEAQ       (DX)(R8*8), AX
	PREFETCHT0 (AX)
	PREFETCHT0 64(AX)
	ADDQ       R8, AX
	PREFETCHT0 (AX)
	PREFETCHT0 64(AX)
	ADDQ       R8, AX
	PREFETCHT0 (AX)
	PREFETCHT0 64(AX)
	ADDQ       R8, AX
	PREFETCHT0 (AX)
	PREFETCHT0 64(AX)
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	MOVQ R9, DI
	MOVQ R10, CX

qggblock:
	CMPQ       R12, R13
	JAE        qggnopf
	PREFETCHT0 (R12)
	ADDQ       $64, R12

qggnopf:
	QGCORR(0, Z0, Z4)
	QGCORR(1, Z1, Z5)
	QGCORR(2, Z2, Z6)
	QGCORR(3, Z3, Z7)
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	QGJLO(0)
	QGJHI(4)
	QGJLO(1)
	QGJHI(5)
	QGJLO(2)
	QGJHI(6)
	QGJLO(3)
	QGJHI(7)
	VMOVUPS 1024(DI), Z30
	VMOVUPS 1088(DI), Z31
	QGACC(0, Z0, Z4, Z16, Z20, Z8, Z12)
	QGACC(1, Z1, Z5, Z17, Z21, Z9, Z13)
	QGACC(2, Z2, Z6, Z18, Z22, Z10, Z14)
	QGACC(3, Z3, Z7, Z19, Z23, Z11, Z15)
	ADDQ $1152, DI
	ADDQ $160, SI
	DECQ CX
	JNZ  qggblock

	MOVQ    DX, AX
	VMOVUPS Z8, K1, (AX)
	VMOVUPS Z12, K2, 64(AX)
	ADDQ    R8, AX
	VMOVUPS Z9, K1, (AX)
	VMOVUPS Z13, K2, 64(AX)
	ADDQ    R8, AX
	VMOVUPS Z10, K1, (AX)
	VMOVUPS Z14, K2, 64(AX)
	ADDQ    R8, AX
	VMOVUPS Z11, K1, (AX)
	VMOVUPS Z15, K2, 64(AX)
	LEAQ    (DX)(R8*4), DX
	DECQ    R11
	JNZ     qgggroup

qggdone:
	VZEROUPPER
	RET
