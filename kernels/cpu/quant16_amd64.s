//go:build amd64 && !noasm

#include "textflag.h"

// Activation quantization to Q8_0 sixteen blocks at a time, bit for bit
// as quantizeQ8AVX512 (quant_amd64.s) and kernels.Encode do it: the
// blocks' maxima are reduced together into one vector (lane b: block b),
// so that the two divisions and the f16 rounding of the scales run once
// per sixteen blocks, as vector operations, instead of once per block
// through a chain of scalar ones.

DATA qz127<>+0(SB)/4, $0x42fe0000
GLOBL qz127<>(SB), RODATA|NOPTR, $4
DATA qzone<>+0(SB)/4, $0x3f800000
GLOBL qzone<>(SB), RODATA|NOPTR, $4
DATA qzabs<>+0(SB)/4, $0x7fffffff
GLOBL qzabs<>(SB), RODATA|NOPTR, $4
DATA qzhalf<>+0(SB)/4, $0x3effffff
GLOBL qzhalf<>(SB), RODATA|NOPTR, $4
DATA qzsign<>+0(SB)/4, $0x80000000
GLOBL qzsign<>(SB), RODATA|NOPTR, $4

// The reduction leaves block 4m+k at lane 4k+m; these vpermps indexes put
// block b at lane b.
DATA qzorder<>+0(SB)/8, $0x0000000400000000
DATA qzorder<>+8(SB)/8, $0x0000000c00000008
DATA qzorder<>+16(SB)/8, $0x0000000500000001
DATA qzorder<>+24(SB)/8, $0x0000000d00000009
DATA qzorder<>+32(SB)/8, $0x0000000600000002
DATA qzorder<>+40(SB)/8, $0x0000000e0000000a
DATA qzorder<>+48(SB)/8, $0x0000000700000003
DATA qzorder<>+56(SB)/8, $0x0000000f0000000b
GLOBL qzorder<>(SB), RODATA|NOPTR, $64

// QZAMAX sets z to the lane-wise max |x| of block b (at 128b(SI)).
#define QZAMAX(b, z) \
	VANDPS (128*b)(SI), Z31, z  \
	VANDPS (128*b+64)(SI), Z31, Z16 \
	VMAXPS Z16, z, z

// QZPAIR combines blocks' maxima a and c into a: its 256-bit halves hold
// eight partial maxima of each.
#define QZPAIR(a, c) \
	VSHUFF64X2 $0x44, c, a, Z16 \
	VSHUFF64X2 $0xee, c, a, Z17 \
	VMAXPS     Z17, Z16, a

// QZQUAD combines a and c (each two blocks by eight) into a: its 128-bit
// lanes hold four partial maxima of each of four blocks.
#define QZQUAD(a, c) \
	VSHUFF32X4 $0x88, c, a, Z16 \
	VSHUFF32X4 $0xdd, c, a, Z17 \
	VMAXPS     Z17, Z16, a

// QZOCT combines a and c (four blocks by four in the lanes) into a: per
// lane, two partial maxima of a block of a, then two of a block of c.
#define QZOCT(a, c) \
	VUNPCKLPD c, a, Z16   \
	VUNPCKHPD c, a, Z17   \
	VMAXPS    Z17, Z16, a

// QZROUND quantizes the 16 values in z (times id in Z6) to bytes at
// off(DI). Rounding half away from zero is trunc(p + copysign(h, p)) with
// h = 0.5 − 2⁻²⁵, the float just below a half: every p whose fraction is
// below a half stays under the next integer (p = 0.49999997 gives
// 0.99999994), every one at or above reaches it; what quantizeQ8AVX512
// computes, in four operations instead of seven.
#define QZROUND(z, off) \
	VMULPS      Z6, z, z    \
	VANDPS      Z28, z, Z4  \
	VORPS       Z30, Z4, Z4 \
	VADDPS      Z4, z, z    \
	VCVTTPS2DQ  z, z        \
	VPMOVSDB    z, X2       \
	VMOVDQU     X2, off(DI)

// QZBLOCK quantizes block b with its 1/d at 4b(SP).
#define QZBLOCK(b) \
	VBROADCASTSS (4*b)(SP), Z6       \
	VMOVUPS      (128*b)(SI), Z0      \
	VMOVUPS      (128*b+64)(SI), Z1   \
	QZROUND(Z0, 34*b+2)               \
	QZROUND(Z1, 34*b+18)

// QZSCALE stores block b's f16 scale (word b of the scales at 64(SP)).
#define QZSCALE(b) \
	MOVW (64+2*b)(SP), AX \
	MOVW AX, (34*b)(DI)

// func quantizeQ8x16AVX512(dst *byte, x *float32, ng int)
//
// ng groups of 16 blocks. Frame: 16 float32 1/d at 0(SP), 16 f16 scales
// at 64(SP).
TEXT ·quantizeQ8x16AVX512(SB), NOSPLIT, $96-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ ng+16(FP), CX
	VBROADCASTSS qzabs<>(SB), Z31
	VBROADCASTSS qzhalf<>(SB), Z30
	VBROADCASTSS qzone<>(SB), Z29
	VBROADCASTSS qzsign<>(SB), Z28
	VBROADCASTSS qz127<>(SB), Z27
	VMOVDQU32    qzorder<>(SB), Z26
	VPXORD       Z25, Z25, Z25
	TESTQ CX, CX
	JLE   qzdone

qzloop:
	QZAMAX(0, Z0)
	QZAMAX(1, Z1)
	QZAMAX(2, Z2)
	QZAMAX(3, Z3)
	QZAMAX(4, Z4)
	QZAMAX(5, Z5)
	QZAMAX(6, Z6)
	QZAMAX(7, Z7)
	QZAMAX(8, Z8)
	QZAMAX(9, Z9)
	QZAMAX(10, Z10)
	QZAMAX(11, Z11)
	QZAMAX(12, Z12)
	QZAMAX(13, Z13)
	QZAMAX(14, Z14)
	QZAMAX(15, Z15)
	// Z0, Z2, ..., Z14: blocks (0,1), (2,3), ... by eight.
	QZPAIR(Z0, Z1)
	QZPAIR(Z2, Z3)
	QZPAIR(Z4, Z5)
	QZPAIR(Z6, Z7)
	QZPAIR(Z8, Z9)
	QZPAIR(Z10, Z11)
	QZPAIR(Z12, Z13)
	QZPAIR(Z14, Z15)
	// Z0, Z4, Z8, Z12: blocks 4i..4i+3, lane k block 4i+k, by four.
	QZQUAD(Z0, Z2)
	QZQUAD(Z4, Z6)
	QZQUAD(Z8, Z10)
	QZQUAD(Z12, Z14)
	// Z0: lane k blocks k (dwords 0-1) and 4+k (2-3); Z8: 8+k and 12+k.
	QZOCT(Z0, Z4)
	QZOCT(Z8, Z12)
	// Each pair of partial maxima to one: lane k dword m = block 4m+k.
	VPSHUFD   $0xb1, Z0, Z16
	VMAXPS    Z16, Z0, Z0
	VPSHUFD   $0xb1, Z8, Z16
	VMAXPS    Z16, Z8, Z8
	VSHUFPS   $0x88, Z8, Z0, Z0
	VPERMPS   Z0, Z26, Z0

	// d = amax/127, stored as f16; 1/d where d ≠ 0, else 0.
	VDIVPS    Z27, Z0, Z1
	VCVTPS2PH $0, Z1, Y2
	VMOVDQU   Y2, 64(SP)
	VCMPPS    $4, Z25, Z1, K2
	VDIVPS    Z1, Z29, K2, Z3
	VMOVAPS.Z Z3, K2, Z3
	VMOVUPS   Z3, (SP)
	QZSCALE(0)
	QZSCALE(1)
	QZSCALE(2)
	QZSCALE(3)
	QZSCALE(4)
	QZSCALE(5)
	QZSCALE(6)
	QZSCALE(7)
	QZSCALE(8)
	QZSCALE(9)
	QZSCALE(10)
	QZSCALE(11)
	QZSCALE(12)
	QZSCALE(13)
	QZSCALE(14)
	QZSCALE(15)

	QZBLOCK(0)
	QZBLOCK(1)
	QZBLOCK(2)
	QZBLOCK(3)
	QZBLOCK(4)
	QZBLOCK(5)
	QZBLOCK(6)
	QZBLOCK(7)
	QZBLOCK(8)
	QZBLOCK(9)
	QZBLOCK(10)
	QZBLOCK(11)
	QZBLOCK(12)
	QZBLOCK(13)
	QZBLOCK(14)
	QZBLOCK(15)

	ADDQ $2048, SI
	ADDQ $544, DI
	DECQ CX
	JNZ  qzloop

qzdone:
	VZEROUPPER
	RET
