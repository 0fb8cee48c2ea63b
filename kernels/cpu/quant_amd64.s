//go:build amd64 && !noasm

#include "textflag.h"

// PFD is how far ahead (bytes) the one-row matvec loops prefetch.
#define PFD 1024

// Constants shared by the quantized kernels.
DATA q8c80<>+0(SB)/4, $0x80808080
GLOBL q8c80<>(SB), RODATA|NOPTR, $4
DATA q8c08<>+0(SB)/4, $0x08080808
GLOBL q8c08<>(SB), RODATA|NOPTR, $4
DATA q8c0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL q8c0f<>(SB), RODATA|NOPTR, $4
DATA q8ones16<>+0(SB)/4, $0x00010001
GLOBL q8ones16<>(SB), RODATA|NOPTR, $4
DATA q8absmask<>+0(SB)/4, $0x7fffffff
GLOBL q8absmask<>(SB), RODATA|NOPTR, $4
DATA q8signmask<>+0(SB)/4, $0x80000000
GLOBL q8signmask<>(SB), RODATA|NOPTR, $4
DATA q8half<>+0(SB)/4, $0x3f000000
GLOBL q8half<>(SB), RODATA|NOPTR, $4
DATA q8one<>+0(SB)/4, $0x3f800000
GLOBL q8one<>(SB), RODATA|NOPTR, $4
DATA q8f127<>+0(SB)/4, $0x42fe0000
GLOBL q8f127<>(SB), RODATA|NOPTR, $4

// Per-qword right shifts that move the high nibbles of a Q4_0 block,
// broadcast to both 128-bit lanes, into the upper lane's low nibbles.
DATA q4shift<>+0(SB)/8, $0
DATA q4shift<>+8(SB)/8, $0
DATA q4shift<>+16(SB)/8, $4
DATA q4shift<>+24(SB)/8, $4
GLOBL q4shift<>(SB), RODATA|NOPTR, $32

// vpermd indexes that undo the lane interleaving of vpackssdw+vpacksswb.
DATA q8packperm<>+0(SB)/4, $0
DATA q8packperm<>+4(SB)/4, $4
DATA q8packperm<>+8(SB)/4, $1
DATA q8packperm<>+12(SB)/4, $5
DATA q8packperm<>+16(SB)/4, $2
DATA q8packperm<>+20(SB)/4, $6
DATA q8packperm<>+24(SB)/4, $3
DATA q8packperm<>+28(SB)/4, $7
GLOBL q8packperm<>(SB), RODATA|NOPTR, $32

// ---------------------------------------------------------------------------
// Activation quantization.
//
// Per block of 32 values: amax = max|x|, d = amax/127, id = d != 0 ? 1/d : 0,
// q = roundHalfAway(x·id) saturated to int8, scale stored as f16(d) rounded
// to nearest even. Rounding half away from zero is t = trunc(p), plus
// sign(p) where |p − t| ≥ 0.5 (p − t is exact).

// QSCALE leaves id broadcast in Y6 (low lanes) given amax in X2[0], and
// writes f16(d) to (DI). Clobbers X3-X5, X7, AX.
#define QSCALE \
	VDIVSS    X10, X2, X4      \
	VCVTPS2PH $0, X4, X5       \
	VMOVD     X5, AX           \
	MOVW      AX, (DI)         \
	VDIVSS    X4, X11, X3      \
	VXORPS    X7, X7, X7       \
	VCMPSS    $4, X7, X4, X7   \
	VANDPS    X7, X3, X6

// func quantizeQ8AVX512(dst *byte, x *float32, nb int)
TEXT ·quantizeQ8AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nb+16(FP), CX
	VBROADCASTSS q8absmask<>(SB), Z31
	VBROADCASTSS q8half<>(SB), Z30
	VBROADCASTSS q8one<>(SB), Z29
	VBROADCASTSS q8signmask<>(SB), Z28
	VMOVSS       q8f127<>(SB), X10
	VMOVSS       q8one<>(SB), X11

q8a512loop:
	TESTQ CX, CX
	JEQ   q8a512done
	VMOVUPS        (SI), Z0
	VMOVUPS        64(SI), Z1
	VANDPS         Z31, Z0, Z2
	VANDPS         Z31, Z1, Z3
	VMAXPS         Z3, Z2, Z2
	VEXTRACTF64X4  $1, Z2, Y3
	VMAXPS         Y3, Y2, Y2
	VEXTRACTF128   $1, Y2, X3
	VMAXPS         X3, X2, X2
	VMOVHLPS       X2, X2, X3
	VMAXPS         X3, X2, X2
	VPSHUFD        $1, X2, X3
	VMAXSS         X3, X2, X2
	QSCALE
	VBROADCASTSS   X6, Z6
	VMULPS         Z6, Z0, Z0
	VMULPS         Z6, Z1, Z1

	VRNDSCALEPS    $11, Z0, Z2
	VSUBPS         Z2, Z0, Z3
	VANDPS         Z31, Z3, Z3
	VCMPPS         $13, Z30, Z3, K1
	VANDPS         Z28, Z0, Z4
	VORPS          Z29, Z4, Z4
	VADDPS         Z4, Z2, K1, Z2
	VCVTTPS2DQ     Z2, Z2
	VPMOVSDB       Z2, X2
	VMOVDQU        X2, 2(DI)

	VRNDSCALEPS    $11, Z1, Z2
	VSUBPS         Z2, Z1, Z3
	VANDPS         Z31, Z3, Z3
	VCMPPS         $13, Z30, Z3, K1
	VANDPS         Z28, Z1, Z4
	VORPS          Z29, Z4, Z4
	VADDPS         Z4, Z2, K1, Z2
	VCVTTPS2DQ     Z2, Z2
	VPMOVSDB       Z2, X2
	VMOVDQU        X2, 18(DI)

	ADDQ $128, SI
	ADDQ $34, DI
	DECQ CX
	JMP  q8a512loop

q8a512done:
	VZEROUPPER
	RET

// QROUND2 rounds p in r half away from zero and converts it to int32.
// Needs Y12 = absmask, Y13 = 0.5, Y14 = 1.0, Y15 = signmask. Clobbers Y3-Y5.
#define QROUND2(r) \
	VROUNDPS  $11, r, Y3    \
	VSUBPS    Y3, r, Y4     \
	VANDPS    Y12, Y4, Y4   \
	VCMPPS    $13, Y13, Y4, Y4 \
	VANDPS    Y15, r, Y5    \
	VORPS     Y14, Y5, Y5   \
	VANDPS    Y4, Y5, Y5    \
	VADDPS    Y5, Y3, Y3    \
	VCVTTPS2DQ Y3, r

// func quantizeQ8AVX2(dst *byte, x *float32, nb int)
TEXT ·quantizeQ8AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nb+16(FP), CX
	VBROADCASTSS q8absmask<>(SB), Y12
	VBROADCASTSS q8half<>(SB), Y13
	VBROADCASTSS q8one<>(SB), Y14
	VBROADCASTSS q8signmask<>(SB), Y15
	VMOVSS       q8f127<>(SB), X10
	VMOVSS       q8one<>(SB), X11
	VMOVDQU      q8packperm<>(SB), Y9

q8a2loop:
	TESTQ CX, CX
	JEQ   q8a2done
	VMOVUPS      (SI), Y0
	VMOVUPS      32(SI), Y1
	VANDPS       Y12, Y0, Y2
	VANDPS       Y12, Y1, Y3
	VMAXPS       Y3, Y2, Y2
	VMOVUPS      64(SI), Y3
	VANDPS       Y12, Y3, Y3
	VMAXPS       Y3, Y2, Y2
	VMOVUPS      96(SI), Y3
	VANDPS       Y12, Y3, Y3
	VMAXPS       Y3, Y2, Y2
	VEXTRACTF128 $1, Y2, X3
	VMAXPS       X3, X2, X2
	VMOVHLPS     X2, X2, X3
	VMAXPS       X3, X2, X2
	VPSHUFD      $1, X2, X3
	VMAXSS       X3, X2, X2
	QSCALE
	VBROADCASTSS X6, Y6

	VMULPS  Y6, Y0, Y0
	QROUND2(Y0)
	VMULPS  Y6, Y1, Y1
	QROUND2(Y1)
	VMULPS  64(SI), Y6, Y2
	QROUND2(Y2)
	VMULPS  96(SI), Y6, Y7
	QROUND2(Y7)
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y7, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD    Y0, Y9, Y0
	VMOVDQU   Y0, 2(DI)

	ADDQ $128, SI
	ADDQ $34, DI
	DECQ CX
	JMP  q8a2loop

q8a2done:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Horizontal sums shared by the matvecs.

// HSUM4 reduces Y8-Y11 to four floats stored at (DX).
#define HSUM4 \
	VHADDPS      Y9, Y8, Y8   \
	VHADDPS      Y11, Y10, Y10 \
	VHADDPS      Y10, Y8, Y8  \
	VEXTRACTF128 $1, Y8, X9   \
	VADDPS       X9, X8, X8   \
	VMOVUPS      X8, (DX)

// HSUM1 reduces Y8 to one float stored at (DX).
#define HSUM1 \
	VEXTRACTF128 $1, Y8, X9 \
	VADDPS       X9, X8, X8 \
	VHADDPS      X8, X8, X8 \
	VHADDPS      X8, X8, X8 \
	VMOVSS       X8, (DX)

// ---------------------------------------------------------------------------
// AVX2 matvecs (no VNNI). Q8_0 uses the sign trick: vpmaddubsw(|w|,
// qx·sign(w)) then vpmaddwd by ones; |w| ≤ 128 and |qx| ≤ 127 keep the
// int16 pair sums below 2^15. Q4_0 multiplies the unsigned nibbles
// directly and subtracts the int16 pair sums of 8·qx.
// Y12 holds int16 ones.

#define Q8AVX2ROW(ptr, acc) \
	VMOVDQU      2(ptr)(BX*1), Y4 \
	VPSIGNB      Y4, Y4, Y5       \
	VPSIGNB      Y4, Y0, Y4       \
	VPMADDUBSW   Y4, Y5, Y4       \
	VPMADDWD     Y12, Y4, Y4      \
	VCVTDQ2PS    Y4, Y4           \
	VPBROADCASTW (ptr)(BX*1), X6  \
	VCVTPH2PS    X6, Y6           \
	VMULPS       Y1, Y6, Y6       \
	VFMADD231PS  Y6, Y4, acc

#define Q8AVX2XBLOCK \
	VMOVDQU      2(SI)(BX*1), Y0 \
	VPBROADCASTW (SI)(BX*1), X1   \
	VCVTPH2PS    X1, Y1

// func q8MatvecAVX2(out *float32, w *byte, rows, nb int, xq *byte)
TEXT ·q8MatvecAVX2(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DX
	MOVQ w+8(FP), DI
	MOVQ rows+16(FP), R8
	MOVQ nb+24(FP), R10
	MOVQ xq+32(FP), SI
	MOVQ  pfd+40(FP), R9
	IMULQ $34, R10
	VPBROADCASTD q8ones16<>(SB), Y12

q8a4rows:
	CMPQ R8, $4
	JLT  q8a1rows
	LEAQ (DI)(R10*1), R11
	LEAQ (R11)(R10*1), R12
	LEAQ (R12)(R10*1), R13
	LEAQ (DI)(R9*1), R14
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	XORQ BX, BX

q8a4blk:
	PREFETCHT0 (R14)(BX*4)
	PREFETCHT0 64(R14)(BX*4)
	PREFETCHT0 128(R14)(BX*4)
	Q8AVX2XBLOCK
	Q8AVX2ROW(DI, Y8)
	Q8AVX2ROW(R11, Y9)
	Q8AVX2ROW(R12, Y10)
	Q8AVX2ROW(R13, Y11)
	ADDQ $34, BX
	CMPQ BX, R10
	JLT  q8a4blk

	HSUM4
	ADDQ $16, DX
	LEAQ (R13)(R10*1), DI
	SUBQ $4, R8
	JMP  q8a4rows

q8a1rows:
	TESTQ R8, R8
	JEQ   q8adone
	VXORPS Y8, Y8, Y8
	XORQ BX, BX

q8a1blk:
	PREFETCHT0 PFD(DI)(BX*1)
	Q8AVX2XBLOCK
	Q8AVX2ROW(DI, Y8)
	ADDQ $34, BX
	CMPQ BX, R10
	JLT  q8a1blk

	HSUM1
	ADDQ $4, DX
	ADDQ R10, DI
	DECQ R8
	JMP  q8a1rows

q8adone:
	VZEROUPPER
	RET

#define Q4AVX2ROW(ptr, acc) \
	VBROADCASTI128 2(ptr)(AX*1), Y4 \
	VPSRLVQ      Y14, Y4, Y4      \
	VPAND        Y13, Y4, Y4      \
	VPMADDUBSW   Y0, Y4, Y4       \
	VPSUBW       Y2, Y4, Y4       \
	VPMADDWD     Y12, Y4, Y4      \
	VCVTDQ2PS    Y4, Y4           \
	VPBROADCASTW (ptr)(AX*1), X6  \
	VCVTPH2PS    X6, Y6           \
	VMULPS       Y1, Y6, Y6       \
	VFMADD231PS  Y6, Y4, acc

#define Q4AVX2XBLOCK \
	VMOVDQU      2(SI)(BX*1), Y0 \
	VPBROADCASTW (SI)(BX*1), X1   \
	VCVTPH2PS    X1, Y1           \
	VPMADDUBSW   Y0, Y15, Y2

// func q4MatvecAVX2(out *float32, w *byte, rows, nb int, xq *byte)
TEXT ·q4MatvecAVX2(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DX
	MOVQ w+8(FP), DI
	MOVQ rows+16(FP), R8
	MOVQ nb+24(FP), R10
	MOVQ xq+32(FP), SI
	MOVQ  pfd+40(FP), R9
	IMULQ $18, R10
	VPBROADCASTD q8ones16<>(SB), Y12
	VPBROADCASTD q8c0f<>(SB), Y13
	VMOVDQU      q4shift<>(SB), Y14
	VPBROADCASTD q8c08<>(SB), Y15

q4a4rows:
	CMPQ R8, $4
	JLT  q4a1rows
	LEAQ (DI)(R10*1), R11
	LEAQ (R11)(R10*1), R12
	LEAQ (R12)(R10*1), R13
	LEAQ (DI)(R9*1), R14
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	XORQ AX, AX
	XORQ BX, BX

q4a4blk:
	PREFETCHT0 (R14)(AX*4)
	PREFETCHT0 64(R14)(AX*4)
	Q4AVX2XBLOCK
	Q4AVX2ROW(DI, Y8)
	Q4AVX2ROW(R11, Y9)
	Q4AVX2ROW(R12, Y10)
	Q4AVX2ROW(R13, Y11)
	ADDQ $34, BX
	ADDQ $18, AX
	CMPQ AX, R10
	JLT  q4a4blk

	HSUM4
	ADDQ $16, DX
	LEAQ (R13)(R10*1), DI
	SUBQ $4, R8
	JMP  q4a4rows

q4a1rows:
	TESTQ R8, R8
	JEQ   q4adone
	VXORPS Y8, Y8, Y8
	XORQ AX, AX
	XORQ BX, BX

q4a1blk:
	PREFETCHT0 PFD(DI)(AX*1)
	Q4AVX2XBLOCK
	Q4AVX2ROW(DI, Y8)
	ADDQ $34, BX
	ADDQ $18, AX
	CMPQ AX, R10
	JLT  q4a1blk

	HSUM1
	ADDQ $4, DX
	ADDQ R10, DI
	DECQ R8
	JMP  q4a1rows

q4adone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Prefill tiles with AVX-512 VNNI (Q4_0 here; Q8_0 has its own tile below,
// with the tokens in the lanes): 4 rows × 4 tokens over nb blocks, so each
// weight block is loaded once for four tokens and each activation block
// once for four rows. Two blocks share a 512-bit vector (lanes 0-7 the
// first, 8-15 the second); an odd last block runs with the upper half zero.
//
// out[t·ldo + r] = Σ_b d_w[r,b]·d_x[t,b]·Σ_j qw·qx for r, t < 4.
//
// Registers: rows at DI, R11, R12, R13 and R14 the next row group; tokens
// at SI, R8, R9, R10; BX the activation offset (34 bytes per block), AX
// the Q4_0 weight offset, CX the last block's activation offset. Z0-Z3 qx
// of the four tokens, Z4-Z7 their d_x, Z8-Z11 their offset corrections,
// Z12 the weights, Z13 d_w, Z14 the int32 products, Z15 the offset
// constant, Z16-Z31 the 16 sums (Z16+4r+t).

DATA q4shift512<>+0(SB)/8, $0
DATA q4shift512<>+8(SB)/8, $0
DATA q4shift512<>+16(SB)/8, $4
DATA q4shift512<>+24(SB)/8, $4
DATA q4shift512<>+32(SB)/8, $0
DATA q4shift512<>+40(SB)/8, $0
DATA q4shift512<>+48(SB)/8, $4
DATA q4shift512<>+56(SB)/8, $4
GLOBL q4shift512<>(SB), RODATA|NOPTR, $64

// GCORR sets c to −(Σ of the offset constant times q), per int32 lane.
#define GCORR(q, c) \
	VPXORD   Z14, Z14, Z14 \
	VPDPBUSD q, Z15, Z14   \
	VPXORD   c, c, c       \
	VPSUBD   Z14, c, c

// GXTOK2 loads blocks b, b+1 of one token: qx into zq, d_x into zd.
#define GXTOK2(ptr, yq, zq, zd, zc) \
	VMOVDQU      2(ptr)(BX*1), yq          \
	VINSERTI64X4 $1, 36(ptr)(BX*1), zq, zq \
	VPBROADCASTW (ptr)(BX*1), Y14          \
	VPBROADCASTW 34(ptr)(BX*1), X13        \
	VINSERTI128  $1, X13, Y14, Y14         \
	VCVTPH2PS    Y14, zd                   \
	GCORR(zq, zc)

// GXTOK1 loads block b alone; VEX loads clear the upper halves.
#define GXTOK1(ptr, yq, zq, yd, zc) \
	VMOVDQU      2(ptr)(BX*1), yq \
	VPBROADCASTW (ptr)(BX*1), X14 \
	VCVTPH2PS    X14, yd          \
	GCORR(zq, zc)

#define GQ8W2(ptr) \
	VMOVDQU      2(ptr)(BX*1), Y12          \
	VINSERTI64X4 $1, 36(ptr)(BX*1), Z12, Z12 \
	VPXORD       Z15, Z12, Z12              \
	VPBROADCASTW (ptr)(BX*1), Y13           \
	VPBROADCASTW 34(ptr)(BX*1), X14         \
	VINSERTI128  $1, X14, Y13, Y13          \
	VCVTPH2PS    Y13, Z13

#define GQ8W1(ptr) \
	VPXOR        2(ptr)(BX*1), Y15, Y12 \
	VPBROADCASTW (ptr)(BX*1), X13       \
	VCVTPH2PS    X13, Y13

#define GQ4W2(ptr) \
	VBROADCASTI128 2(ptr)(AX*1), Y12           \
	VBROADCASTI128 20(ptr)(AX*1), Y14          \
	VINSERTI64X4   $1, Y14, Z12, Z12           \
	VPSRLVQ        q4shift512<>(SB), Z12, Z12  \
	VPANDD.BCST    q8c0f<>(SB), Z12, Z12       \
	VPBROADCASTW   (ptr)(AX*1), Y13            \
	VPBROADCASTW   18(ptr)(AX*1), X14          \
	VINSERTI128    $1, X14, Y13, Y13           \
	VCVTPH2PS      Y13, Z13

#define GQ4W1(ptr) \
	VBROADCASTI128 2(ptr)(AX*1), Y12      \
	VPSRLVQ        q4shift<>(SB), Y12, Y12 \
	VPANDD.BCST    q8c0f<>(SB), Y12, Y12   \
	VPBROADCASTW   (ptr)(AX*1), X13        \
	VCVTPH2PS      X13, Y13

// GPAIR accumulates the current row (Z12, Z13) times one token.
#define GPAIR(q, d, c, acc) \
	VMOVDQA64   c, Z14      \
	VPDPBUSD    q, Z12, Z14 \
	VCVTDQ2PS   Z14, Z14    \
	VMULPS      d, Z14, Z14 \
	VFMADD231PS Z13, Z14, acc

#define GROW4(a0, a1, a2, a3) \
	GPAIR(Z0, Z4, Z8, a0)  \
	GPAIR(Z1, Z5, Z9, a1)  \
	GPAIR(Z2, Z6, Z10, a2) \
	GPAIR(Z3, Z7, Z11, a3)

#define GTOKS2 \
	GXTOK2(SI, Y0, Z0, Z4, Z8)  \
	GXTOK2(R8, Y1, Z1, Z5, Z9)  \
	GXTOK2(R9, Y2, Z2, Z6, Z10) \
	GXTOK2(R10, Y3, Z3, Z7, Z11)

#define GTOKS1 \
	GXTOK1(SI, Y0, Z0, Y4, Z8)  \
	GXTOK1(R8, Y1, Z1, Y5, Z9)  \
	GXTOK1(R9, Y2, Z2, Y6, Z10) \
	GXTOK1(R10, Y3, Z3, Y7, Z11)

// GROWS runs the four rows with the weight loader wl.
#define GROWS(wl) \
	wl(DI)                     \
	GROW4(Z16, Z17, Z18, Z19)  \
	wl(R11)                    \
	GROW4(Z20, Z21, Z22, Z23)  \
	wl(R12)                    \
	GROW4(Z24, Z25, Z26, Z27)  \
	wl(R13)                    \
	GROW4(Z28, Z29, Z30, Z31)

#define GZERO \
	VPXORD Z16, Z16, Z16 \
	VPXORD Z17, Z17, Z17 \
	VPXORD Z18, Z18, Z18 \
	VPXORD Z19, Z19, Z19 \
	VPXORD Z20, Z20, Z20 \
	VPXORD Z21, Z21, Z21 \
	VPXORD Z22, Z22, Z22 \
	VPXORD Z23, Z23, Z23 \
	VPXORD Z24, Z24, Z24 \
	VPXORD Z25, Z25, Z25 \
	VPXORD Z26, Z26, Z26 \
	VPXORD Z27, Z27, Z27 \
	VPXORD Z28, Z28, Z28 \
	VPXORD Z29, Z29, Z29 \
	VPXORD Z30, Z30, Z30 \
	VPXORD Z31, Z31, Z31

// GFOLD sets the low register r to the sum of z's halves (y: its lower
// half; r must differ from y).
#define GFOLD(z, y, r) \
	VEXTRACTF64X4 $1, z, r \
	VADDPS        y, r, r

// GSTORE reduces token t's sums (rows 0-3) and stores them at (DX).
#define GSTORE(z0, y0, z1, y1, z2, y2, z3, y3) \
	GFOLD(z0, y0, Y8)  \
	GFOLD(z1, y1, Y9)  \
	GFOLD(z2, y2, Y10) \
	GFOLD(z3, y3, Y11) \
	HSUM4

// GSTOREALL stores the 16 sums; CX holds ldo in bytes.
#define GSTOREALL \
	GSTORE(Z16, Y16, Z20, Y20, Z24, Y24, Z28, Y28) \
	ADDQ CX, DX                                    \
	GSTORE(Z17, Y17, Z21, Y21, Z25, Y25, Z29, Y29) \
	ADDQ CX, DX                                    \
	GSTORE(Z18, Y18, Z22, Y22, Z26, Y26, Z30, Y30) \
	ADDQ CX, DX                                    \
	GSTORE(Z19, Y19, Z23, Y23, Z27, Y27, Z31, Y31)

// GPTRS sets the token pointers from SI with stride CX, the row pointers
// from DI with stride rb, and R14 to the next row group.
#define GPTRS(rb) \
	LEAQ (SI)(CX*1), R8   \
	LEAQ (R8)(CX*1), R9   \
	LEAQ (R9)(CX*1), R10  \
	LEAQ (DI)(rb*1), R11  \
	LEAQ (R11)(rb*1), R12 \
	LEAQ (R12)(rb*1), R13 \
	LEAQ (R13)(rb*1), R14

// ---------------------------------------------------------------------------
// The Q8_0 prefill tile with the tokens in the lanes: 4 rows × 4 tokens,
// one block at a time, on activations prepared once per MatMul by
// q8GemmPrepVNNI. The 128-bit lane t of a vector belongs to token t. Per
// block of four tokens the preparation holds four 64-byte vectors:
//
//	+0   quants 0-15 of each token's block (lane t: token t)
//	+64  quants 16-31
//	+128 −128·Σqx over the bytes that meet each int32 lane (exact offset
//	     correction for the weights' +128)
//	+192 d_x[t] at lane 4r+t (r = 0..3)
//
// Each half of a row's block is broadcast to the four lanes (xor 0x80:
// unsigned), so two vpdpbusd give every token's 32 products of the block
// in its lane's four int32 (8 each, starting from the correction: the sum
// stays exact), and one conversion, one scale and one fma per row and
// block cover the four tokens. Z3 = d_w[r]·d_x[t] at lane 4r+t; Z20-Z23
// pick row r's d_w·d_x for the lanes of each token. At the end, each
// token's four int32 lanes are summed per row and token t's four rows
// stored at out+t·ldo.
//
// Like the matvecs, the tile prefetches as one linear stream the rows pfd
// bytes ahead (a whole number of four-row groups), far enough to cover
// the memory latency when the weights come from memory.
//
// Registers: rows at DI, R11, R12, R13 and R14 the prefetch stream; SI the
// prepared block; BX the weights' block offset (34 bytes a block), CX the
// end; AX, DX scratch for the scales. Z0-Z2 the prepared quants and
// correction, Z15 the offset constant, Z16-Z19 the row sums (token t at
// lanes 4t..4t+3).

DATA q8gidx0<>+0(SB)/8, $0x0000000000000000
DATA q8gidx0<>+8(SB)/8, $0x0000000000000000
DATA q8gidx0<>+16(SB)/8, $0x0000000100000001
DATA q8gidx0<>+24(SB)/8, $0x0000000100000001
DATA q8gidx0<>+32(SB)/8, $0x0000000200000002
DATA q8gidx0<>+40(SB)/8, $0x0000000200000002
DATA q8gidx0<>+48(SB)/8, $0x0000000300000003
DATA q8gidx0<>+56(SB)/8, $0x0000000300000003
GLOBL q8gidx0<>(SB), RODATA|NOPTR, $64

DATA q8gidx1<>+0(SB)/8, $0x0000000400000004
DATA q8gidx1<>+8(SB)/8, $0x0000000400000004
DATA q8gidx1<>+16(SB)/8, $0x0000000500000005
DATA q8gidx1<>+24(SB)/8, $0x0000000500000005
DATA q8gidx1<>+32(SB)/8, $0x0000000600000006
DATA q8gidx1<>+40(SB)/8, $0x0000000600000006
DATA q8gidx1<>+48(SB)/8, $0x0000000700000007
DATA q8gidx1<>+56(SB)/8, $0x0000000700000007
GLOBL q8gidx1<>(SB), RODATA|NOPTR, $64

DATA q8gidx2<>+0(SB)/8, $0x0000000800000008
DATA q8gidx2<>+8(SB)/8, $0x0000000800000008
DATA q8gidx2<>+16(SB)/8, $0x0000000900000009
DATA q8gidx2<>+24(SB)/8, $0x0000000900000009
DATA q8gidx2<>+32(SB)/8, $0x0000000a0000000a
DATA q8gidx2<>+40(SB)/8, $0x0000000a0000000a
DATA q8gidx2<>+48(SB)/8, $0x0000000b0000000b
DATA q8gidx2<>+56(SB)/8, $0x0000000b0000000b
GLOBL q8gidx2<>(SB), RODATA|NOPTR, $64

DATA q8gidx3<>+0(SB)/8, $0x0000000c0000000c
DATA q8gidx3<>+8(SB)/8, $0x0000000c0000000c
DATA q8gidx3<>+16(SB)/8, $0x0000000d0000000d
DATA q8gidx3<>+24(SB)/8, $0x0000000d0000000d
DATA q8gidx3<>+32(SB)/8, $0x0000000e0000000e
DATA q8gidx3<>+40(SB)/8, $0x0000000e0000000e
DATA q8gidx3<>+48(SB)/8, $0x0000000f0000000f
DATA q8gidx3<>+56(SB)/8, $0x0000000f0000000f
GLOBL q8gidx3<>(SB), RODATA|NOPTR, $64

DATA q8gidxt<>+0(SB)/8, $0x0000000100000000
DATA q8gidxt<>+8(SB)/8, $0x0000000300000002
DATA q8gidxt<>+16(SB)/8, $0x0000000100000000
DATA q8gidxt<>+24(SB)/8, $0x0000000300000002
DATA q8gidxt<>+32(SB)/8, $0x0000000100000000
DATA q8gidxt<>+40(SB)/8, $0x0000000300000002
DATA q8gidxt<>+48(SB)/8, $0x0000000100000000
DATA q8gidxt<>+56(SB)/8, $0x0000000300000002
GLOBL q8gidxt<>(SB), RODATA|NOPTR, $64


// GVROW accumulates one row's block into acc (idx: the row's scale index).
#define GVROW(ptr, idx, acc) \
	VBROADCASTI32X4 2(ptr)(BX*1), Z7  \
	VBROADCASTI32X4 18(ptr)(BX*1), Z8 \
	VPXORD          Z15, Z7, Z7       \
	VPXORD          Z15, Z8, Z8       \
	VMOVDQA64       Z2, Z9            \
	VPDPBUSD        Z0, Z7, Z9        \
	VPDPBUSD        Z1, Z8, Z9        \
	VCVTDQ2PS       Z9, Z9            \
	VPERMPS         Z3, idx, Z10      \
	VFMADD231PS     Z10, Z9, acc

// GVF16x4 packs the f16 scales at (p0..p3)(BX) into AX (DX scratch).
#define GVF16x4(p0, p1, p2, p3) \
	MOVWLZX (p0)(BX*1), AX \
	MOVWLZX (p1)(BX*1), DX \
	SHLL    $16, DX        \
	ORL     DX, AX         \
	MOVWLZX (p2)(BX*1), DX \
	SHLQ    $32, DX        \
	ORQ     DX, AX         \
	MOVWLZX (p3)(BX*1), DX \
	SHLQ    $48, DX        \
	ORQ     DX, AX

// func q8GemmPrepVNNI(xg *byte, xq *byte, nb int)
// Prepares the four tokens at xq (nb blocks each, consecutive) into xg
// (nb·256 bytes, 64-byte aligned).
TEXT ·q8GemmPrepVNNI(SB), NOSPLIT, $0-24
	MOVQ  xg+0(FP), DI
	MOVQ  xq+8(FP), SI
	MOVQ  nb+16(FP), CX
	IMULQ $34, CX
	LEAQ  (SI)(CX*1), R8
	LEAQ  (R8)(CX*1), R9
	LEAQ  (R9)(CX*1), R10
	VPBROADCASTD q8c80<>(SB), Z15
	VMOVDQU32    q8gidxt<>(SB), Z24
	VPXORD       Z26, Z26, Z26
	XORQ         BX, BX

q8vprep:
	VMOVDQU      2(SI)(BX*1), Y5
	VINSERTI64X4 $1, 2(R8)(BX*1), Z5, Z5
	VMOVDQU      2(R9)(BX*1), Y6
	VINSERTI64X4 $1, 2(R10)(BX*1), Z6, Z6
	VSHUFI64X2   $0x88, Z6, Z5, Z0
	VSHUFI64X2   $0xdd, Z6, Z5, Z1
	VMOVDQA64    Z0, (DI)
	VMOVDQA64    Z1, 64(DI)
	VPXORD       Z4, Z4, Z4
	VPDPBUSD     Z0, Z15, Z4
	VPDPBUSD     Z1, Z15, Z4
	VPSUBD       Z4, Z26, Z2
	VMOVDQA64    Z2, 128(DI)
	GVF16x4(SI, R8, R9, R10)
	VMOVQ        AX, X4
	VCVTPH2PS    X4, X4
	VPERMPS      Z4, Z24, Z5
	VMOVAPS      Z5, 192(DI)
	ADDQ         $256, DI
	ADDQ         $34, BX
	CMPQ         BX, CX
	JLT          q8vprep
	VZEROUPPER
	RET

// func q8GemmVNNI(out *float32, ldo int, w *byte, nb int, xg *byte, pfd int)
TEXT ·q8GemmVNNI(SB), NOSPLIT, $0-48
	MOVQ  w+16(FP), DI
	MOVQ  nb+24(FP), CX
	MOVQ  xg+32(FP), SI
	MOVQ  pfd+40(FP), R14
	IMULQ $34, CX
	LEAQ  (DI)(CX*1), R11
	LEAQ  (R11)(CX*1), R12
	LEAQ  (R12)(CX*1), R13
	ADDQ  DI, R14
	VPBROADCASTD q8c80<>(SB), Z15
	VMOVDQU32    q8gidx0<>(SB), Z20
	VMOVDQU32    q8gidx1<>(SB), Z21
	VMOVDQU32    q8gidx2<>(SB), Z22
	VMOVDQU32    q8gidx3<>(SB), Z23
	VPXORD       Z16, Z16, Z16
	VPXORD       Z17, Z17, Z17
	VPXORD       Z18, Z18, Z18
	VPXORD       Z19, Z19, Z19
	XORQ         BX, BX

q8vblk:
	PREFETCHT0 (R14)(BX*4)
	PREFETCHT0 64(R14)(BX*4)
	PREFETCHT0 128(R14)(BX*4)

	// Z3 = d_w[r]·d_x[t] at lane 4r+t.
	GVF16x4(DI, R11, R12, R13)
	VMOVQ     AX, X4
	VCVTPH2PS X4, X4
	VPERMPS   Z4, Z20, Z5
	VMULPS    192(SI), Z5, Z3
	VMOVDQA64 (SI), Z0
	VMOVDQA64 64(SI), Z1
	VMOVDQA64 128(SI), Z2

	GVROW(DI, Z20, Z16)
	GVROW(R11, Z21, Z17)
	GVROW(R12, Z22, Z18)
	GVROW(R13, Z23, Z19)

	ADDQ $256, SI
	ADDQ $34, BX
	CMPQ BX, CX
	JLT  q8vblk

	// Sum each token's four lanes per row: Z8 lane t = rows 0-3 of token t.
	VUNPCKLPS Z17, Z16, Z5
	VUNPCKHPS Z17, Z16, Z6
	VADDPS    Z6, Z5, Z5
	VUNPCKLPS Z19, Z18, Z6
	VUNPCKHPS Z19, Z18, Z7
	VADDPS    Z7, Z6, Z6
	VUNPCKLPD Z6, Z5, Z8
	VUNPCKHPD Z6, Z5, Z9
	VADDPS    Z9, Z8, Z8

	MOVQ ldo+8(FP), CX
	SHLQ $2, CX
	MOVQ out+0(FP), DX
	VMOVUPS       X8, (DX)
	ADDQ          CX, DX
	VEXTRACTF32X4 $1, Z8, (DX)
	ADDQ          CX, DX
	VEXTRACTF32X4 $2, Z8, (DX)
	ADDQ          CX, DX
	VEXTRACTF32X4 $3, Z8, (DX)
	VZEROUPPER
	RET

// The same tile for 8 tokens: two prepared groups of four (B at nb·256
// bytes after A) share each row's broadcast weights and d_w. Registers as
// in q8GemmVNNI, and R8 the offset of group B, Z11-Z13 its quants and
// correction, Z14 its d_w·d_x, Z24-Z27 its row sums.

// GVROW2 accumulates one row's block for both groups.
#define GVROW2(ptr, idx, accA, accB) \
	VBROADCASTI32X4 2(ptr)(BX*1), Z7  \
	VBROADCASTI32X4 18(ptr)(BX*1), Z8 \
	VPXORD          Z15, Z7, Z7       \
	VPXORD          Z15, Z8, Z8       \
	VMOVDQA64       Z2, Z9            \
	VPDPBUSD        Z0, Z7, Z9        \
	VPDPBUSD        Z1, Z8, Z9        \
	VMOVDQA64       Z13, Z28          \
	VPDPBUSD        Z11, Z7, Z28      \
	VPDPBUSD        Z12, Z8, Z28      \
	VCVTDQ2PS       Z9, Z9            \
	VPERMPS         Z3, idx, Z10      \
	VFMADD231PS     Z10, Z9, accA     \
	VCVTDQ2PS       Z28, Z28          \
	VPERMPS         Z14, idx, Z29     \
	VFMADD231PS     Z29, Z28, accB

// GVSUM sets Z8 lane t to the sums of rows 0-3 (a0-a3) of token t.
#define GVSUM(a0, a1, a2, a3) \
	VUNPCKLPS a1, a0, Z5 \
	VUNPCKHPS a1, a0, Z6 \
	VADDPS    Z6, Z5, Z5 \
	VUNPCKLPS a3, a2, Z6 \
	VUNPCKHPS a3, a2, Z7 \
	VADDPS    Z7, Z6, Z6 \
	VUNPCKLPD Z6, Z5, Z8 \
	VUNPCKHPD Z6, Z5, Z9 \
	VADDPS    Z9, Z8, Z8

// GVSTORE stores Z8's four lanes at DX, DX+CX, DX+2CX, DX+3CX.
#define GVSTORE \
	VMOVUPS       X8, (DX)   \
	ADDQ          CX, DX     \
	VEXTRACTF32X4 $1, Z8, (DX) \
	ADDQ          CX, DX     \
	VEXTRACTF32X4 $2, Z8, (DX) \
	ADDQ          CX, DX     \
	VEXTRACTF32X4 $3, Z8, (DX)

// func q8Gemm8VNNI(outA, outB *float32, ldo int, w *byte, nb int, xg *byte, pfd int)
TEXT ·q8Gemm8VNNI(SB), NOSPLIT, $0-56
	MOVQ  w+24(FP), DI
	MOVQ  nb+32(FP), CX
	MOVQ  xg+40(FP), SI
	MOVQ  pfd+48(FP), R14
	MOVQ  CX, R8
	SHLQ  $8, R8
	IMULQ $34, CX
	LEAQ  (DI)(CX*1), R11
	LEAQ  (R11)(CX*1), R12
	LEAQ  (R12)(CX*1), R13
	ADDQ  DI, R14
	VPBROADCASTD q8c80<>(SB), Z15
	VMOVDQU32    q8gidx0<>(SB), Z20
	VMOVDQU32    q8gidx1<>(SB), Z21
	VMOVDQU32    q8gidx2<>(SB), Z22
	VMOVDQU32    q8gidx3<>(SB), Z23
	VPXORD       Z16, Z16, Z16
	VPXORD       Z17, Z17, Z17
	VPXORD       Z18, Z18, Z18
	VPXORD       Z19, Z19, Z19
	VPXORD       Z24, Z24, Z24
	VPXORD       Z25, Z25, Z25
	VPXORD       Z26, Z26, Z26
	VPXORD       Z27, Z27, Z27
	XORQ         BX, BX

q8v8blk:
	PREFETCHT0 (R14)(BX*4)
	PREFETCHT0 64(R14)(BX*4)
	PREFETCHT0 128(R14)(BX*4)

	GVF16x4(DI, R11, R12, R13)
	VMOVQ     AX, X4
	VCVTPH2PS X4, X4
	VPERMPS   Z4, Z20, Z5
	VMULPS    192(SI), Z5, Z3
	VMULPS    192(SI)(R8*1), Z5, Z14
	VMOVDQA64 (SI), Z0
	VMOVDQA64 64(SI), Z1
	VMOVDQA64 128(SI), Z2
	VMOVDQA64 (SI)(R8*1), Z11
	VMOVDQA64 64(SI)(R8*1), Z12
	VMOVDQA64 128(SI)(R8*1), Z13

	GVROW2(DI, Z20, Z16, Z24)
	GVROW2(R11, Z21, Z17, Z25)
	GVROW2(R12, Z22, Z18, Z26)
	GVROW2(R13, Z23, Z19, Z27)

	ADDQ $256, SI
	ADDQ $34, BX
	CMPQ BX, CX
	JLT  q8v8blk

	MOVQ ldo+16(FP), CX
	SHLQ $2, CX
	GVSUM(Z16, Z17, Z18, Z19)
	MOVQ outA+0(FP), DX
	GVSTORE
	GVSUM(Z24, Z25, Z26, Z27)
	MOVQ outB+8(FP), DX
	GVSTORE
	VZEROUPPER
	RET

// func q4GemmVNNI(out *float32, ldo int, w *byte, nb int, xq *byte)
TEXT ·q4GemmVNNI(SB), NOSPLIT, $0-40
	MOVQ  out+0(FP), DX
	MOVQ  w+16(FP), DI
	MOVQ  nb+24(FP), CX
	MOVQ  xq+32(FP), SI
	MOVQ  CX, AX
	IMULQ $34, CX
	IMULQ $18, AX
	GPTRS(AX)
	SUBQ  $34, CX
	VPBROADCASTD q8c08<>(SB), Z15
	GZERO
	XORQ  AX, AX
	XORQ  BX, BX
	CMPQ  BX, CX
	JGE   q4gtail

q4gpair:
	PREFETCHT0 (R14)(AX*4)
	PREFETCHT0 64(R14)(AX*4)
	PREFETCHT0 128(R14)(AX*4)
	GTOKS2
	GROWS(GQ4W2)
	ADDQ $68, BX
	ADDQ $36, AX
	CMPQ BX, CX
	JLT  q4gpair

q4gtail:
	CMPQ BX, CX
	JNE  q4gstore
	GTOKS1
	GROWS(GQ4W1)

q4gstore:
	MOVQ ldo+8(FP), CX
	SHLQ $2, CX
	GSTOREALL
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Matvecs with AVX-512 VNNI, four rows per pass sharing the activation
// loads, two blocks per 512-bit vector (the prefill tiles' loaders above,
// with one token).
//
// vpdpbusd multiplies unsigned by signed bytes. Q8_0 weights are offset by
// +128 (xor 0x80) and the block's 128·Σqx is subtracted; Q4_0 nibbles are
// unsigned already and 8·Σqx is subtracted. The integer sums stay exact;
// each block's int32 lanes are scaled by d_w·d_x and accumulate in floats.
//
// Four interleaved row streams defeat the hardware prefetcher, so each
// pass prefetches as one linear stream the rows pfd bytes ahead (at least
// the next four-row group; far enough to cover the memory latency).
//
// Registers: DI, R11-R13 the rows, R14 the prefetch stream (DI+pfd, R9),
// R10 the row bytes,
// R8 the rows left, SI the activations, BX their offset, AX the Q4_0
// weight offset, CX the last block's activation offset; Z0 qx, Z1 d_x,
// Z2 the offset correction, Z8-Z11 the row sums, Z12-Z15 as in the tiles.

// MQ4W2 and MQ4W1 are GQ4W2 and GQ4W1 with the shifts in Z3 and the
// nibble mask in Z4 (the matvecs have the registers to spare).
#define MQ4W2(ptr) \
	VBROADCASTI128 2(ptr)(AX*1), Y12  \
	VBROADCASTI128 20(ptr)(AX*1), Y14 \
	VINSERTI64X4   $1, Y14, Z12, Z12  \
	VPSRLVQ        Z3, Z12, Z12       \
	VPANDD         Z4, Z12, Z12       \
	VPBROADCASTW   (ptr)(AX*1), Y13   \
	VPBROADCASTW   18(ptr)(AX*1), X14 \
	VINSERTI128    $1, X14, Y13, Y13  \
	VCVTPH2PS      Y13, Z13

#define MQ4W1(ptr) \
	VBROADCASTI128 2(ptr)(AX*1), Y12 \
	VPSRLVQ        Y3, Y12, Y12      \
	VPAND          Y4, Y12, Y12      \
	VPBROADCASTW   (ptr)(AX*1), X13  \
	VCVTPH2PS      X13, Y13

// MROW accumulates the current row (Z12, Z13) into acc.
#define MROW(acc) GPAIR(Z0, Z1, Z2, acc)

// MFOLD adds the upper half of z into its lower half y.
#define MFOLD(z, y) \
	VEXTRACTF64X4 $1, z, Y12 \
	VADDPS        Y12, y, y

#define MFOLD4 \
	MFOLD(Z8, Y8)   \
	MFOLD(Z9, Y9)   \
	MFOLD(Z10, Y10) \
	MFOLD(Z11, Y11)

// MROWS4 runs the four rows with the weight loader wl.
#define MROWS4(wl) \
	wl(DI)     \
	MROW(Z8)   \
	wl(R11)    \
	MROW(Z9)   \
	wl(R12)    \
	MROW(Z10)  \
	wl(R13)    \
	MROW(Z11)

// func q8MatvecVNNI(out *float32, w *byte, rows, nb int, xq *byte)
TEXT ·q8MatvecVNNI(SB), NOSPLIT, $0-48
	MOVQ  out+0(FP), DX
	MOVQ  w+8(FP), DI
	MOVQ  rows+16(FP), R8
	MOVQ  nb+24(FP), R10
	MOVQ  xq+32(FP), SI
	MOVQ  pfd+40(FP), R9
	IMULQ $34, R10
	LEAQ  -34(R10), CX
	VPBROADCASTD q8c80<>(SB), Z15

q8v4rows:
	CMPQ R8, $4
	JLT  q8v1rows
	LEAQ (DI)(R10*1), R11
	LEAQ (R11)(R10*1), R12
	LEAQ (R12)(R10*1), R13
	LEAQ (DI)(R9*1), R14
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	XORQ BX, BX
	CMPQ BX, CX
	JGE  q8v4tail

q8v4pair:
	PREFETCHT0 (R14)(BX*4)
	PREFETCHT0 64(R14)(BX*4)
	PREFETCHT0 128(R14)(BX*4)
	PREFETCHT0 192(R14)(BX*4)
	PREFETCHT0 256(R14)(BX*4)
	GXTOK2(SI, Y0, Z0, Z1, Z2)
	MROWS4(GQ8W2)
	ADDQ $68, BX
	CMPQ BX, CX
	JLT  q8v4pair

q8v4tail:
	CMPQ BX, CX
	JNE  q8v4store
	GXTOK1(SI, Y0, Z0, Y1, Z2)
	MROWS4(GQ8W1)

q8v4store:
	MFOLD4
	HSUM4
	ADDQ $16, DX
	LEAQ (R13)(R10*1), DI
	SUBQ $4, R8
	JMP  q8v4rows

q8v1rows:
	TESTQ R8, R8
	JEQ   q8vdone
	VPXORD Z8, Z8, Z8
	XORQ  BX, BX
	CMPQ  BX, CX
	JGE   q8v1tail

q8v1pair:
	PREFETCHT0 PFD(DI)(BX*1)
	PREFETCHT0 PFD+64(DI)(BX*1)
	GXTOK2(SI, Y0, Z0, Z1, Z2)
	GQ8W2(DI)
	MROW(Z8)
	ADDQ $68, BX
	CMPQ BX, CX
	JLT  q8v1pair

q8v1tail:
	CMPQ BX, CX
	JNE  q8v1store
	GXTOK1(SI, Y0, Z0, Y1, Z2)
	GQ8W1(DI)
	MROW(Z8)

q8v1store:
	MFOLD(Z8, Y8)
	HSUM1
	ADDQ $4, DX
	ADDQ R10, DI
	DECQ R8
	JMP  q8v1rows

q8vdone:
	VZEROUPPER
	RET

// func q4MatvecVNNI(out *float32, w *byte, rows, nb int, xq *byte)
TEXT ·q4MatvecVNNI(SB), NOSPLIT, $0-48
	MOVQ  out+0(FP), DX
	MOVQ  w+8(FP), DI
	MOVQ  rows+16(FP), R8
	MOVQ  nb+24(FP), R10
	MOVQ  xq+32(FP), SI
	MOVQ  pfd+40(FP), R9
	MOVQ  R10, CX
	IMULQ $34, CX
	SUBQ  $34, CX
	IMULQ $18, R10
	VPBROADCASTD q8c08<>(SB), Z15
	VMOVDQU64    q4shift512<>(SB), Z3
	VPBROADCASTD q8c0f<>(SB), Z4

q4v4rows:
	CMPQ R8, $4
	JLT  q4v1rows
	LEAQ (DI)(R10*1), R11
	LEAQ (R11)(R10*1), R12
	LEAQ (R12)(R10*1), R13
	LEAQ (DI)(R9*1), R14
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	XORQ AX, AX
	XORQ BX, BX
	CMPQ BX, CX
	JGE  q4v4tail

q4v4pair:
	PREFETCHT0 (R14)(AX*4)
	PREFETCHT0 64(R14)(AX*4)
	PREFETCHT0 128(R14)(AX*4)
	GXTOK2(SI, Y0, Z0, Z1, Z2)
	MROWS4(MQ4W2)
	ADDQ $68, BX
	ADDQ $36, AX
	CMPQ BX, CX
	JLT  q4v4pair

q4v4tail:
	CMPQ BX, CX
	JNE  q4v4store
	GXTOK1(SI, Y0, Z0, Y1, Z2)
	MROWS4(MQ4W1)

q4v4store:
	MFOLD4
	HSUM4
	ADDQ $16, DX
	LEAQ (R13)(R10*1), DI
	SUBQ $4, R8
	JMP  q4v4rows

q4v1rows:
	TESTQ R8, R8
	JEQ   q4vdone
	VPXORD Z8, Z8, Z8
	XORQ  AX, AX
	XORQ  BX, BX
	CMPQ  BX, CX
	JGE   q4v1tail

q4v1pair:
	PREFETCHT0 PFD(DI)(AX*1)
	GXTOK2(SI, Y0, Z0, Z1, Z2)
	MQ4W2(DI)
	MROW(Z8)
	ADDQ $68, BX
	ADDQ $36, AX
	CMPQ BX, CX
	JLT  q4v1pair

q4v1tail:
	CMPQ BX, CX
	JNE  q4v1store
	GXTOK1(SI, Y0, Z0, Y1, Z2)
	MQ4W1(DI)
	MROW(Z8)

q4v1store:
	MFOLD(Z8, Y8)
	HSUM1
	ADDQ $4, DX
	ADDQ R10, DI
	DECQ R8
	JMP  q4v1rows

q4vdone:
	VZEROUPPER
	RET

// ---------------------------------------------------------------------------
// Prefill tiles with AVX2: 2 rows × 4 tokens, one block per pass.
//
// Registers: rows at DI, R11 (R14 the next row pair); tokens at SI, R8,
// R9, R10 (stride nb·34); BX the activation offset, AX the Q4_0 weight
// offset, CX the activations' row bytes. Y0-Y7 the sums (Y0+4r+t), Y8
// int16 ones, Y9-Y10 d_w of the two rows, Y11 qx, Y12 d_x, Y13-Y15 scratch.

#define A2DW(ptr, off, d) \
	VPBROADCASTW (ptr)(off*1), X13 \
	VCVTPH2PS    X13, d

#define A2TOK(ptr) \
	VMOVDQU      2(ptr)(BX*1), Y11 \
	VPBROADCASTW (ptr)(BX*1), X12  \
	VCVTPH2PS    X12, Y12

// A2Q8PAIR accumulates row ptr (scale dw) times the current token.
#define A2Q8PAIR(ptr, dw, acc) \
	VPABSB      2(ptr)(BX*1), Y13       \
	VPSIGNB     2(ptr)(BX*1), Y11, Y14  \
	VPMADDUBSW  Y14, Y13, Y13           \
	VPMADDWD    Y8, Y13, Y13            \
	VCVTDQ2PS   Y13, Y13                \
	VMULPS      Y12, dw, Y14            \
	VFMADD231PS Y14, Y13, acc

// A2Q4UNPACK unpacks row ptr's nibbles to the scratch slot at off(SP).
#define A2Q4UNPACK(ptr, off) \
	VBROADCASTI128 2(ptr)(AX*1), Y13       \
	VPSRLVQ        q4shift<>(SB), Y13, Y13 \
	VPAND          q4mask<>(SB), Y13, Y13  \
	VMOVDQU        Y13, off(SP)

// A2Q4PAIR does the same as A2Q8PAIR for Q4_0, with the row's nibbles in
// the scratch slot at off(SP); Y15 holds the token's 8·qx pair sums.
#define A2Q4PAIR(off, dw, acc) \
	VMOVDQU        off(SP), Y13            \
	VPMADDUBSW     Y11, Y13, Y13           \
	VPSUBW         Y15, Y13, Y13           \
	VPMADDWD       Y8, Y13, Y13            \
	VCVTDQ2PS      Y13, Y13                \
	VMULPS         Y12, dw, Y14            \
	VFMADD231PS    Y14, Y13, acc

#define A2Q4CORR \
	VPMADDUBSW Y11, Y15, Y15

DATA q4mask<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q4mask<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q4mask<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q4mask<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL q4mask<>(SB), RODATA|NOPTR, $32

DATA q4eights<>+0(SB)/8, $0x0808080808080808
DATA q4eights<>+8(SB)/8, $0x0808080808080808
DATA q4eights<>+16(SB)/8, $0x0808080808080808
DATA q4eights<>+24(SB)/8, $0x0808080808080808
GLOBL q4eights<>(SB), RODATA|NOPTR, $32

#define A2ZERO \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	VXORPS Y2, Y2, Y2 \
	VXORPS Y3, Y3, Y3 \
	VXORPS Y4, Y4, Y4 \
	VXORPS Y5, Y5, Y5 \
	VXORPS Y6, Y6, Y6 \
	VXORPS Y7, Y7, Y7

// A2STORE stores token t's two sums a (row 0) and b (row 1) at (DX).
#define A2STORE(a, xa, b, xb) \
	VHADDPS      b, a, a    \
	VEXTRACTF128 $1, a, X13 \
	VADDPS       X13, xa, xa \
	VHADDPS      xa, xa, xa \
	VMOVLPS      xa, (DX)

// A2STOREALL stores the 8 sums; CX holds ldo in bytes.
#define A2STOREALL \
	A2STORE(Y0, X0, Y4, X4) \
	ADDQ CX, DX             \
	A2STORE(Y1, X1, Y5, X5) \
	ADDQ CX, DX             \
	A2STORE(Y2, X2, Y6, X6) \
	ADDQ CX, DX             \
	A2STORE(Y3, X3, Y7, X7)

// func q8GemmAVX2(out *float32, ldo int, w *byte, nb int, xq *byte)
TEXT ·q8GemmAVX2(SB), NOSPLIT, $0-40
	MOVQ  out+0(FP), DX
	MOVQ  w+16(FP), DI
	MOVQ  nb+24(FP), CX
	MOVQ  xq+32(FP), SI
	IMULQ $34, CX
	LEAQ  (SI)(CX*1), R8
	LEAQ  (R8)(CX*1), R9
	LEAQ  (R9)(CX*1), R10
	LEAQ  (DI)(CX*1), R11
	LEAQ  (R11)(CX*1), R14
	VPBROADCASTD q8ones16<>(SB), Y8
	A2ZERO
	XORQ BX, BX

q8g2blk:
	PREFETCHT0 (R14)(BX*2)
	PREFETCHT0 64(R14)(BX*2)
	A2DW(DI, BX, Y9)
	A2DW(R11, BX, Y10)
	A2TOK(SI)
	A2Q8PAIR(DI, Y9, Y0)
	A2Q8PAIR(R11, Y10, Y4)
	A2TOK(R8)
	A2Q8PAIR(DI, Y9, Y1)
	A2Q8PAIR(R11, Y10, Y5)
	A2TOK(R9)
	A2Q8PAIR(DI, Y9, Y2)
	A2Q8PAIR(R11, Y10, Y6)
	A2TOK(R10)
	A2Q8PAIR(DI, Y9, Y3)
	A2Q8PAIR(R11, Y10, Y7)
	ADDQ $34, BX
	CMPQ BX, CX
	JLT  q8g2blk

	MOVQ ldo+8(FP), CX
	SHLQ $2, CX
	A2STOREALL
	VZEROUPPER
	RET

// func q4GemmAVX2(out *float32, ldo int, w *byte, nb int, xq *byte)
TEXT ·q4GemmAVX2(SB), NOSPLIT, $64-40
	MOVQ  out+0(FP), DX
	MOVQ  w+16(FP), DI
	MOVQ  nb+24(FP), CX
	MOVQ  xq+32(FP), SI
	MOVQ  CX, AX
	IMULQ $34, CX
	IMULQ $18, AX
	LEAQ  (SI)(CX*1), R8
	LEAQ  (R8)(CX*1), R9
	LEAQ  (R9)(CX*1), R10
	LEAQ  (DI)(AX*1), R11
	LEAQ  (R11)(AX*1), R14
	VPBROADCASTD q8ones16<>(SB), Y8
	A2ZERO
	XORQ AX, AX
	XORQ BX, BX

q4g2blk:
	PREFETCHT0 (R14)(AX*2)
	A2DW(DI, AX, Y9)
	A2DW(R11, AX, Y10)
	A2Q4UNPACK(DI, 0)
	A2Q4UNPACK(R11, 32)
	A2TOK(SI)
	VMOVDQU q4eights<>(SB), Y15
	A2Q4CORR
	A2Q4PAIR(0, Y9, Y0)
	A2Q4PAIR(32, Y10, Y4)
	A2TOK(R8)
	VMOVDQU q4eights<>(SB), Y15
	A2Q4CORR
	A2Q4PAIR(0, Y9, Y1)
	A2Q4PAIR(32, Y10, Y5)
	A2TOK(R9)
	VMOVDQU q4eights<>(SB), Y15
	A2Q4CORR
	A2Q4PAIR(0, Y9, Y2)
	A2Q4PAIR(32, Y10, Y6)
	A2TOK(R10)
	VMOVDQU q4eights<>(SB), Y15
	A2Q4CORR
	A2Q4PAIR(0, Y9, Y3)
	A2Q4PAIR(32, Y10, Y7)
	ADDQ $34, BX
	ADDQ $18, AX
	CMPQ BX, CX
	JLT  q4g2blk

	MOVQ ldo+8(FP), CX
	SHLQ $2, CX
	A2STOREALL
	VZEROUPPER
	RET
