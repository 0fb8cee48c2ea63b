//go:build amd64 && !noasm

#include "textflag.h"

// The Q4_0 decode matvec with AVX-512 VNNI, VBMI and GFNI, on the weights
// in their GGUF layout and activations rearranged once per call
// (q4PrepVBMI, layout in q4x.go).
//
// Four blocks of a row are 72 contiguous bytes: one 64-byte load and one
// 8-byte load. From those, vpermw gathers the four f16 scales, each
// repeated over the four int32 lanes of its block, and vpermt2b the 64
// nibble bytes, block i at bytes 16i..16i+15. One vpand gives the low
// nibbles and one vgf2p8affineqb the high ones, both already in the order
// of the prepared activations, so two vpdpbusd finish the four blocks'
// integer dot products, started from the prepared −8·Σqx. Each int32
// lane belongs to one block: it converts to float and accumulates times
// d_w·d_x with no reduction inside the loop.
//
// Registers: DI, R11-R13 the four rows, R14 the prefetch stream (DI+pfd),
// R8 the rows left, R9 pfd, R10 the row bytes, SI the prepared
// activations, AX their offset (256 bytes per group), BX the weight
// offset (72 bytes per group), CX the weight bytes of the whole groups,
// K1 the byte mask of the last partial group (0: none). Z0-Z3 one group's
// activations (low, high, correction, d_x), Z4 the scale indexes, Z5 the
// nibble indexes, Z6 the low-nibble mask, Z7 the high-nibble matrix,
// Z8-Z11 the row sums, Z12-Z21 scratch.

DATA q4vnibidx<>+0(SB)/8, $0x0908070605040302
DATA q4vnibidx<>+8(SB)/8, $0x11100f0e0d0c0b0a
DATA q4vnibidx<>+16(SB)/8, $0x1b1a191817161514
DATA q4vnibidx<>+24(SB)/8, $0x232221201f1e1d1c
DATA q4vnibidx<>+32(SB)/8, $0x2d2c2b2a29282726
DATA q4vnibidx<>+40(SB)/8, $0x3534333231302f2e
DATA q4vnibidx<>+48(SB)/8, $0x3f3e3d3c3b3a3938
DATA q4vnibidx<>+56(SB)/8, $0x4746454443424140
GLOBL q4vnibidx<>(SB), RODATA|NOPTR, $64

DATA q4vscaleidx<>+0(SB)/8, $0x0000000000000000
DATA q4vscaleidx<>+8(SB)/8, $0x0009000900090009
DATA q4vscaleidx<>+16(SB)/8, $0x0012001200120012
DATA q4vscaleidx<>+24(SB)/8, $0x001b001b001b001b
DATA q4vscaleidx<>+32(SB)/8, $0x0000000000000000
DATA q4vscaleidx<>+40(SB)/8, $0x0000000000000000
DATA q4vscaleidx<>+48(SB)/8, $0x0000000000000000
DATA q4vscaleidx<>+56(SB)/8, $0x0000000000000000
GLOBL q4vscaleidx<>(SB), RODATA|NOPTR, $64

// The GF(2) matrix that moves each byte's high nibble to its low nibble
// and clears the rest: result bit i is source bit i+4 for i < 4.
DATA q4vhimat<>+0(SB)/8, $0x1020408000000000
GLOBL q4vhimat<>(SB), RODATA|NOPTR, $8

DATA q4v0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL q4v0f<>(SB), RODATA|NOPTR, $4

DATA q4v08<>+0(SB)/4, $0x08080808
GLOBL q4v08<>(SB), RODATA|NOPTR, $4

// func q4PrepVBMI(dst *byte, xq *byte, ng int)
//
// Rearranges ng whole groups of four Q8_0 activation blocks.
TEXT ·q4PrepVBMI(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ xq+8(FP), SI
	MOVQ ng+16(FP), CX
	VPBROADCASTD q4v08<>(SB), Z7
	TESTQ CX, CX
	JEQ   q4pdone

q4ploop:
	VMOVDQU      2(SI), X0
	VINSERTI32X4 $1, 36(SI), Z0, Z0
	VINSERTI32X4 $2, 70(SI), Z0, Z0
	VINSERTI32X4 $3, 104(SI), Z0, Z0
	VMOVDQU      18(SI), X1
	VINSERTI32X4 $1, 52(SI), Z1, Z1
	VINSERTI32X4 $2, 86(SI), Z1, Z1
	VINSERTI32X4 $3, 120(SI), Z1, Z1
	VPXORD       Z2, Z2, Z2
	VPDPBUSD     Z0, Z7, Z2
	VPDPBUSD     Z1, Z7, Z2
	VPXORD       Z3, Z3, Z3
	VPSUBD       Z2, Z3, Z2
	VPBROADCASTW (SI), X3
	VPBROADCASTW 34(SI), X4
	VPUNPCKLQDQ  X4, X3, X3
	VPBROADCASTW 68(SI), X4
	VPBROADCASTW 102(SI), X5
	VPUNPCKLQDQ  X5, X4, X4
	VINSERTI128  $1, X4, Y3, Y3
	VCVTPH2PS    Y3, Z3
	VMOVDQU64    Z0, (DI)
	VMOVDQU64    Z1, 64(DI)
	VMOVDQU64    Z2, 128(DI)
	VMOVDQU64    Z3, 192(DI)
	ADDQ         $136, SI
	ADDQ         $256, DI
	DECQ         CX
	JNZ          q4ploop

q4pdone:
	VZEROUPPER
	RET

// Q4XACT loads one group of prepared activations.
#define Q4XACT \
	VMOVDQU64 (SI)(AX*1), Z0    \
	VMOVDQU64 64(SI)(AX*1), Z1  \
	VMOVDQU64 128(SI)(AX*1), Z2 \
	VMOVDQU64 192(SI)(AX*1), Z3

// Q4XROW runs one whole group of row ptr.
#define Q4XROW(ptr, w, wx, xw, s, ys, l, d, acc) \
	VMOVDQU64 (ptr)(BX*1), w  \
	VMOVQ     64(ptr)(BX*1), xw \
	VPERMW    w, Z4, s        \
	VCVTPH2PS ys, s           \
	VMULPS    Z3, s, s        \
	VPERMT2B  wx, Z5, w       \
	VPANDD    Z6, w, l        \
	VGF2P8AFFINEQB $0, Z7, w, w \
	VMOVDQA64 Z2, d           \
	VPDPBUSD  Z0, l, d        \
	VPDPBUSD  Z1, w, d        \
	VCVTDQ2PS d, d            \
	VFMADD231PS s, d, acc

// Q4XTAIL runs the partial last group of row ptr: the masked load reads
// only the row's own bytes and zeroes the rest, whose activations are
// zero too.
#define Q4XTAIL(ptr, w, wx, xw, s, ys, l, d, acc) \
	VMOVDQU8.Z (ptr)(BX*1), K1, w \
	VPXORD    wx, wx, wx      \
	VPERMW    w, Z4, s        \
	VCVTPH2PS ys, s           \
	VMULPS    Z3, s, s        \
	VPERMT2B  wx, Z5, w       \
	VPANDD    Z6, w, l        \
	VGF2P8AFFINEQB $0, Z7, w, w \
	VMOVDQA64 Z2, d           \
	VPDPBUSD  Z0, l, d        \
	VPDPBUSD  Z1, w, d        \
	VCVTDQ2PS d, d            \
	VFMADD231PS s, d, acc

#define Q4XROWA(ptr, acc) Q4XROW(ptr, Z12, Z13, X13, Z14, Y14, Z15, Z16, acc)
#define Q4XROWB(ptr, acc) Q4XROW(ptr, Z17, Z18, X18, Z19, Y19, Z20, Z21, acc)
#define Q4XTAILA(ptr, acc) Q4XTAIL(ptr, Z12, Z13, X13, Z14, Y14, Z15, Z16, acc)
#define Q4XTAILB(ptr, acc) Q4XTAIL(ptr, Z17, Z18, X18, Z19, Y19, Z20, Z21, acc)

// Q4XFOLD adds the upper half of z into its lower half y.
#define Q4XFOLD(z, y) \
	VEXTRACTF64X4 $1, z, Y12 \
	VADDPS        Y12, y, y

// HSUM4X reduces Y8-Y11 to four floats stored at (DX).
#define HSUM4X \
	VHADDPS      Y9, Y8, Y8    \
	VHADDPS      Y11, Y10, Y10 \
	VHADDPS      Y10, Y8, Y8   \
	VEXTRACTF128 $1, Y8, X9    \
	VADDPS       X9, X8, X8    \
	VMOVUPS      X8, (DX)

// HSUM1X reduces Y8 to one float stored at (DX).
#define HSUM1X \
	VEXTRACTF128 $1, Y8, X9 \
	VADDPS       X9, X8, X8 \
	VHADDPS      X8, X8, X8 \
	VHADDPS      X8, X8, X8 \
	VMOVSS       X8, (DX)

// func q4MatvecVBMI(out *float32, w *byte, rows, nb int, xp *byte, pfd int)
TEXT ·q4MatvecVBMI(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DX
	MOVQ w+8(FP), DI
	MOVQ rows+16(FP), R8
	MOVQ nb+24(FP), R10
	MOVQ xp+32(FP), SI
	MOVQ pfd+40(FP), R9

	// K1: the bytes of the partial group, 18 per block.
	MOVQ  R10, CX
	ANDQ  $3, CX
	IMULQ $18, CX
	MOVQ  $1, AX
	SHLQ  CX, AX
	DECQ  AX
	KMOVQ AX, K1

	MOVQ  R10, CX
	SHRQ  $2, CX
	IMULQ $72, CX
	IMULQ $18, R10

	VMOVDQU64      q4vscaleidx<>(SB), Z4
	VMOVDQU64      q4vnibidx<>(SB), Z5
	VPBROADCASTD   q4v0f<>(SB), Z6
	VPBROADCASTQ   q4vhimat<>(SB), Z7

q4x4rows:
	CMPQ R8, $4
	JLT  q4x1rows
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
	JGE  q4x4tail

q4x4loop:
	PREFETCHT0 (R14)(BX*4)
	PREFETCHT0 64(R14)(BX*4)
	PREFETCHT0 128(R14)(BX*4)
	PREFETCHT0 192(R14)(BX*4)
	PREFETCHT0 256(R14)(BX*4)
	Q4XACT
	Q4XROWA(DI, Z8)
	Q4XROWB(R11, Z9)
	Q4XROWA(R12, Z10)
	Q4XROWB(R13, Z11)
	ADDQ $256, AX
	ADDQ $72, BX
	CMPQ BX, CX
	JLT  q4x4loop

q4x4tail:
	KORTESTQ K1, K1
	JEQ      q4x4store
	Q4XACT
	Q4XTAILA(DI, Z8)
	Q4XTAILB(R11, Z9)
	Q4XTAILA(R12, Z10)
	Q4XTAILB(R13, Z11)

q4x4store:
	Q4XFOLD(Z8, Y8)
	Q4XFOLD(Z9, Y9)
	Q4XFOLD(Z10, Y10)
	Q4XFOLD(Z11, Y11)
	HSUM4X
	ADDQ $16, DX
	LEAQ (R13)(R10*1), DI
	SUBQ $4, R8
	JMP  q4x4rows

q4x1rows:
	TESTQ R8, R8
	JEQ   q4xdone
	VPXORD Z8, Z8, Z8
	XORQ  AX, AX
	XORQ  BX, BX
	CMPQ  BX, CX
	JGE   q4x1tail

q4x1loop:
	PREFETCHT0 1024(DI)(BX*1)
	PREFETCHT0 1088(DI)(BX*1)
	Q4XACT
	Q4XROWA(DI, Z8)
	ADDQ $256, AX
	ADDQ $72, BX
	CMPQ BX, CX
	JLT  q4x1loop

q4x1tail:
	KORTESTQ K1, K1
	JEQ      q4x1store
	Q4XACT
	Q4XTAILA(DI, Z8)

q4x1store:
	Q4XFOLD(Z8, Y8)
	HSUM1X
	ADDQ $4, DX
	ADDQ R10, DI
	DECQ R8
	JMP  q4x1rows

q4xdone:
	VZEROUPPER
	RET
