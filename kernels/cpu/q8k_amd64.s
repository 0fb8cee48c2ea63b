//go:build amd64 && !noasm

#include "textflag.h"

// The Q8_K rounding of q8kRoundGo, 16 or 8 values a step. Every step is
// the same IEEE float32 operation as the Go code, so the bytes match it:
//
//	amax = max|x| (VMAXPS of the values with their sign bits cleared)
//	d, id = amax/127, 127/amax (VDIVSS), both 0 where amax is 0
//	p = max(−127, min(127, x·id)) (VMULPS, VMINPS, VMAXPS)
//	t = trunc(p); r = t + trunc(2·(p − t)) (p − t and 2·(p − t) are exact,
//	    so r is p rounded half away from zero, as math.Round)
//	q = int8(r)
//
// Clamping before rounding gives Go's clamp after it, as rounding keeps
// order and ±127, and keeps an infinite x·id (where amax is so small that
// id overflows) out of the rounding. The clamps pass a NaN p through (0·Inf,
// from an Inf in x or a 0 beside an overflowed id), and the conversion
// makes it 0x80000000, whose low byte 0 is what Go's conversion gives
// too. For x without NaN only: Go's max carries a NaN through, VMAXPS
// does not.

// func q8kRound512(dst *byte, x *float32) float32
TEXT ·q8kRound512(SB), NOSPLIT, $0-20
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVL         $0x7fffffff, AX
	VPBROADCASTD AX, Z31
	VPXORD       Z0, Z0, Z0
	VPXORD       Z1, Z1, Z1
	VPXORD       Z2, Z2, Z2
	VPXORD       Z3, Z3, Z3
	MOVQ         SI, DX
	MOVQ         $4, CX

amax512:
	VPANDD  (DX), Z31, Z4
	VPANDD  64(DX), Z31, Z5
	VPANDD  128(DX), Z31, Z6
	VPANDD  192(DX), Z31, Z7
	VMAXPS  Z4, Z0, Z0
	VMAXPS  Z5, Z1, Z1
	VMAXPS  Z6, Z2, Z2
	VMAXPS  Z7, Z3, Z3
	ADDQ    $256, DX
	DECQ    CX
	JNZ     amax512

	VMAXPS         Z1, Z0, Z0
	VMAXPS         Z3, Z2, Z2
	VMAXPS         Z2, Z0, Z0
	VEXTRACTF64X4  $1, Z0, Y1
	VMAXPS         Y1, Y0, Y0
	VEXTRACTF128   $1, Y0, X1
	VMAXPS         X1, X0, X0
	VPERMILPS      $0x4e, X0, X1
	VMAXPS         X1, X0, X0
	VPERMILPS      $0xb1, X0, X1
	VMAXPS         X1, X0, X0

	// X0 = amax; X1 = d, X2 = id (0, 0 where amax is 0).
	VXORPS   X1, X1, X1
	VXORPS   X2, X2, X2
	VUCOMISS X1, X0
	JEQ      scale512
	MOVL     $0x42fe0000, AX
	VMOVD    AX, X3
	VDIVSS   X3, X0, X1
	VDIVSS   X0, X3, X2

scale512:
	VMOVSS       X1, ret+16(FP)
	VBROADCASTSS X2, Z2
	MOVL         $0x42fe0000, AX
	VPBROADCASTD AX, Z29
	MOVL         $0xc2fe0000, AX
	VPBROADCASTD AX, Z30
	MOVQ         $8, CX

round512:
	VMULPS      (SI), Z2, Z4
	VMULPS      64(SI), Z2, Z5
	VMINPS      Z4, Z29, Z4
	VMINPS      Z5, Z29, Z5
	VMAXPS      Z4, Z30, Z4
	VMAXPS      Z5, Z30, Z5
	VRNDSCALEPS $0x0b, Z4, Z6
	VRNDSCALEPS $0x0b, Z5, Z7
	VSUBPS      Z6, Z4, Z4
	VSUBPS      Z7, Z5, Z5
	VADDPS      Z4, Z4, Z4
	VADDPS      Z5, Z5, Z5
	VRNDSCALEPS $0x0b, Z4, Z4
	VRNDSCALEPS $0x0b, Z5, Z5
	VADDPS      Z4, Z6, Z6
	VADDPS      Z5, Z7, Z7
	VCVTTPS2DQ  Z6, Z6
	VCVTTPS2DQ  Z7, Z7
	VPMOVDB     Z6, (DI)
	VPMOVDB     Z7, 16(DI)
	ADDQ        $128, SI
	ADDQ        $32, DI
	DECQ        CX
	JNZ         round512

	VZEROUPPER
	RET

// q8kPerm puts the dwords of VPACKUSWB(VPACKUSDW(a, b), VPACKUSDW(c, d))
// back in the order a, b, c, d. The AVX2 code packs each int32's low byte
// (masked, so the unsigned packs keep it) as VPMOVDB does.
DATA q8kPerm<>+0(SB)/4, $0
DATA q8kPerm<>+4(SB)/4, $4
DATA q8kPerm<>+8(SB)/4, $1
DATA q8kPerm<>+12(SB)/4, $5
DATA q8kPerm<>+16(SB)/4, $2
DATA q8kPerm<>+20(SB)/4, $6
DATA q8kPerm<>+24(SB)/4, $3
DATA q8kPerm<>+28(SB)/4, $7
GLOBL q8kPerm<>(SB), RODATA|NOPTR, $32

// func q8kRound256(dst *byte, x *float32) float32
TEXT ·q8kRound256(SB), NOSPLIT, $0-20
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y2, Y2, Y2
	VXORPS       Y3, Y3, Y3
	MOVQ         SI, DX
	MOVQ         $8, CX

amax256:
	VANDPS  (DX), Y15, Y4
	VANDPS  32(DX), Y15, Y5
	VANDPS  64(DX), Y15, Y6
	VANDPS  96(DX), Y15, Y7
	VMAXPS  Y4, Y0, Y0
	VMAXPS  Y5, Y1, Y1
	VMAXPS  Y6, Y2, Y2
	VMAXPS  Y7, Y3, Y3
	ADDQ    $128, DX
	DECQ    CX
	JNZ     amax256

	VMAXPS         Y1, Y0, Y0
	VMAXPS         Y3, Y2, Y2
	VMAXPS         Y2, Y0, Y0
	VEXTRACTF128   $1, Y0, X1
	VMAXPS         X1, X0, X0
	VPERMILPS      $0x4e, X0, X1
	VMAXPS         X1, X0, X0
	VPERMILPS      $0xb1, X0, X1
	VMAXPS         X1, X0, X0

	VXORPS   X1, X1, X1
	VXORPS   X2, X2, X2
	VUCOMISS X1, X0
	JEQ      scale256
	MOVL     $0x42fe0000, AX
	VMOVD    AX, X3
	VDIVSS   X3, X0, X1
	VDIVSS   X0, X3, X2

scale256:
	VMOVSS       X1, ret+16(FP)
	VBROADCASTSS X2, Y2
	MOVL         $0x42fe0000, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	MOVL         $0xc2fe0000, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VMOVDQU      q8kPerm<>(SB), Y12
	MOVL         $0xff, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVQ         $8, CX

round256:
	VMULPS     (SI), Y2, Y4
	VMULPS     32(SI), Y2, Y5
	VMULPS     64(SI), Y2, Y6
	VMULPS     96(SI), Y2, Y7
	VMINPS     Y4, Y13, Y4
	VMINPS     Y5, Y13, Y5
	VMINPS     Y6, Y13, Y6
	VMINPS     Y7, Y13, Y7
	VMAXPS     Y4, Y14, Y4
	VMAXPS     Y5, Y14, Y5
	VMAXPS     Y6, Y14, Y6
	VMAXPS     Y7, Y14, Y7
	VROUNDPS   $0x0b, Y4, Y8
	VROUNDPS   $0x0b, Y5, Y9
	VROUNDPS   $0x0b, Y6, Y10
	VROUNDPS   $0x0b, Y7, Y11
	VSUBPS     Y8, Y4, Y4
	VSUBPS     Y9, Y5, Y5
	VSUBPS     Y10, Y6, Y6
	VSUBPS     Y11, Y7, Y7
	VADDPS     Y4, Y4, Y4
	VADDPS     Y5, Y5, Y5
	VADDPS     Y6, Y6, Y6
	VADDPS     Y7, Y7, Y7
	VROUNDPS   $0x0b, Y4, Y4
	VROUNDPS   $0x0b, Y5, Y5
	VROUNDPS   $0x0b, Y6, Y6
	VROUNDPS   $0x0b, Y7, Y7
	VADDPS     Y4, Y8, Y8
	VADDPS     Y5, Y9, Y9
	VADDPS     Y6, Y10, Y10
	VADDPS     Y7, Y11, Y11
	VCVTTPS2DQ Y8, Y8
	VCVTTPS2DQ Y9, Y9
	VCVTTPS2DQ Y10, Y10
	VCVTTPS2DQ Y11, Y11
	VPAND      Y15, Y8, Y8
	VPAND      Y15, Y9, Y9
	VPAND      Y15, Y10, Y10
	VPAND      Y15, Y11, Y11
	VPACKUSDW  Y9, Y8, Y8
	VPACKUSDW  Y11, Y10, Y10
	VPACKUSWB  Y10, Y8, Y8
	VPERMD     Y8, Y12, Y8
	VMOVDQU    Y8, (DI)
	ADDQ       $128, SI
	ADDQ       $32, DI
	DECQ       CX
	JNZ        round256

	VZEROUPPER
	RET
