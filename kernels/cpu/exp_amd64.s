//go:build amd64 && !noasm

#include "textflag.h"

// Constants of expAVX2, each broadcast to 8 lanes (32 bytes).
DATA expc<>+0(SB)/4, $0x3fb8aa3b
DATA expc<>+4(SB)/4, $0x3fb8aa3b
DATA expc<>+8(SB)/4, $0x3fb8aa3b
DATA expc<>+12(SB)/4, $0x3fb8aa3b
DATA expc<>+16(SB)/4, $0x3fb8aa3b
DATA expc<>+20(SB)/4, $0x3fb8aa3b
DATA expc<>+24(SB)/4, $0x3fb8aa3b
DATA expc<>+28(SB)/4, $0x3fb8aa3b
DATA expc<>+32(SB)/4, $0x3f317200
DATA expc<>+36(SB)/4, $0x3f317200
DATA expc<>+40(SB)/4, $0x3f317200
DATA expc<>+44(SB)/4, $0x3f317200
DATA expc<>+48(SB)/4, $0x3f317200
DATA expc<>+52(SB)/4, $0x3f317200
DATA expc<>+56(SB)/4, $0x3f317200
DATA expc<>+60(SB)/4, $0x3f317200
DATA expc<>+64(SB)/4, $0x35bfbe8e
DATA expc<>+68(SB)/4, $0x35bfbe8e
DATA expc<>+72(SB)/4, $0x35bfbe8e
DATA expc<>+76(SB)/4, $0x35bfbe8e
DATA expc<>+80(SB)/4, $0x35bfbe8e
DATA expc<>+84(SB)/4, $0x35bfbe8e
DATA expc<>+88(SB)/4, $0x35bfbe8e
DATA expc<>+92(SB)/4, $0x35bfbe8e
DATA expc<>+96(SB)/4, $0xc2ac0000
DATA expc<>+100(SB)/4, $0xc2ac0000
DATA expc<>+104(SB)/4, $0xc2ac0000
DATA expc<>+108(SB)/4, $0xc2ac0000
DATA expc<>+112(SB)/4, $0xc2ac0000
DATA expc<>+116(SB)/4, $0xc2ac0000
DATA expc<>+120(SB)/4, $0xc2ac0000
DATA expc<>+124(SB)/4, $0xc2ac0000
DATA expc<>+128(SB)/4, $0x42b00000
DATA expc<>+132(SB)/4, $0x42b00000
DATA expc<>+136(SB)/4, $0x42b00000
DATA expc<>+140(SB)/4, $0x42b00000
DATA expc<>+144(SB)/4, $0x42b00000
DATA expc<>+148(SB)/4, $0x42b00000
DATA expc<>+152(SB)/4, $0x42b00000
DATA expc<>+156(SB)/4, $0x42b00000
DATA expc<>+160(SB)/4, $0x3f800000
DATA expc<>+164(SB)/4, $0x3f800000
DATA expc<>+168(SB)/4, $0x3f800000
DATA expc<>+172(SB)/4, $0x3f800000
DATA expc<>+176(SB)/4, $0x3f800000
DATA expc<>+180(SB)/4, $0x3f800000
DATA expc<>+184(SB)/4, $0x3f800000
DATA expc<>+188(SB)/4, $0x3f800000
DATA expc<>+192(SB)/4, $0x3f000000
DATA expc<>+196(SB)/4, $0x3f000000
DATA expc<>+200(SB)/4, $0x3f000000
DATA expc<>+204(SB)/4, $0x3f000000
DATA expc<>+208(SB)/4, $0x3f000000
DATA expc<>+212(SB)/4, $0x3f000000
DATA expc<>+216(SB)/4, $0x3f000000
DATA expc<>+220(SB)/4, $0x3f000000
DATA expc<>+224(SB)/4, $0x3e2aaaab
DATA expc<>+228(SB)/4, $0x3e2aaaab
DATA expc<>+232(SB)/4, $0x3e2aaaab
DATA expc<>+236(SB)/4, $0x3e2aaaab
DATA expc<>+240(SB)/4, $0x3e2aaaab
DATA expc<>+244(SB)/4, $0x3e2aaaab
DATA expc<>+248(SB)/4, $0x3e2aaaab
DATA expc<>+252(SB)/4, $0x3e2aaaab
DATA expc<>+256(SB)/4, $0x3d2aaaab
DATA expc<>+260(SB)/4, $0x3d2aaaab
DATA expc<>+264(SB)/4, $0x3d2aaaab
DATA expc<>+268(SB)/4, $0x3d2aaaab
DATA expc<>+272(SB)/4, $0x3d2aaaab
DATA expc<>+276(SB)/4, $0x3d2aaaab
DATA expc<>+280(SB)/4, $0x3d2aaaab
DATA expc<>+284(SB)/4, $0x3d2aaaab
DATA expc<>+288(SB)/4, $0x3c088889
DATA expc<>+292(SB)/4, $0x3c088889
DATA expc<>+296(SB)/4, $0x3c088889
DATA expc<>+300(SB)/4, $0x3c088889
DATA expc<>+304(SB)/4, $0x3c088889
DATA expc<>+308(SB)/4, $0x3c088889
DATA expc<>+312(SB)/4, $0x3c088889
DATA expc<>+316(SB)/4, $0x3c088889
DATA expc<>+320(SB)/4, $0x3ab60b61
DATA expc<>+324(SB)/4, $0x3ab60b61
DATA expc<>+328(SB)/4, $0x3ab60b61
DATA expc<>+332(SB)/4, $0x3ab60b61
DATA expc<>+336(SB)/4, $0x3ab60b61
DATA expc<>+340(SB)/4, $0x3ab60b61
DATA expc<>+344(SB)/4, $0x3ab60b61
DATA expc<>+348(SB)/4, $0x3ab60b61
GLOBL expc<>(SB), RODATA|NOPTR, $352

// func expAVX2(dst, src *float32, n int, shift, scale float32) float32
//
// dst[i] = e^((src[i]-shift)·scale) for i < n (a multiple of 8), and the
// sum of the dst values, in float32: the same algorithm as expf (range
// reduction by ln2 in two parts, a degree-6 polynomial, 2^n into the
// exponent), with the argument clamped to [-86, 88] so that the
// result stays a normal float (below, e^-86 ≈ 4.5e-38 instead of
// smaller or zero).
TEXT ·expAVX2(SB), NOSPLIT, $0-36
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS shift+24(FP), Y10
	VBROADCASTSS scale+28(FP), Y11
	VMOVUPS      expc<>+0(SB), Y12
	VMOVUPS      expc<>+32(SB), Y13
	VMOVUPS      expc<>+64(SB), Y14
	VMOVUPS      expc<>+160(SB), Y15
	VMOVUPS      expc<>+96(SB), Y8
	VMOVUPS      expc<>+128(SB), Y9
	VXORPS       Y0, Y0, Y0
	SHRQ         $3, CX
	JEQ          expdone

exploop:
	VMOVUPS      (SI), Y1
	VSUBPS       Y10, Y1, Y1
	VMULPS       Y11, Y1, Y1
	VMAXPS       Y8, Y1, Y1
	VMINPS       Y9, Y1, Y1
	VMULPS       Y12, Y1, Y2
	VROUNDPS     $0, Y2, Y2
	VFNMADD231PS Y13, Y2, Y1
	VFNMADD231PS Y14, Y2, Y1
	VMOVUPS      expc<>+320(SB), Y3
	VFMADD213PS  expc<>+288(SB), Y1, Y3
	VFMADD213PS  expc<>+256(SB), Y1, Y3
	VFMADD213PS  expc<>+224(SB), Y1, Y3
	VFMADD213PS  expc<>+192(SB), Y1, Y3
	VFMADD213PS  Y15, Y1, Y3
	VFMADD213PS  Y15, Y1, Y3
	VCVTPS2DQ    Y2, Y2
	VPSLLD       $23, Y2, Y2
	VPADDD       Y2, Y3, Y3
	VMOVUPS      Y3, (DI)
	VADDPS       Y3, Y0, Y0
	ADDQ         $32, SI
	ADDQ         $32, DI
	DECQ         CX
	JNE          exploop

expdone:
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+32(FP)
	VZEROUPPER
	RET
