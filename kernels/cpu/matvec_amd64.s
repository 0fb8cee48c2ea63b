//go:build amd64 && !noasm

#include "textflag.h"

// Matrix-vector kernels for f32, f16 and bf16 weights. Each one computes
// four rows at a time, so every load of x feeds four FMAs:
//
//	for r := 0; r < rows; r++ {          // rows is a multiple of 4
//		row := w + r*stride              // stride in bytes; 0 repeats one row
//		out[r] = Σ_{c<cols} float32(row[c]) · x[c]
//	}
//
// The AVX-512 versions handle any cols, the last cols%16 under the opmask
// mask (= 1<<(cols%16) - 1, which masked loads never read past). The AVX2
// versions need cols to be a multiple of 8; the Go wrappers add the rest.
//
// Registers: SI, R11, R12, R13 point at the four rows, BX at x, AX is the
// column index, R9 the row stride, CX the rows left, DX cols, DI out.

// MV4_SETUP loads the arguments, shared by every kernel here.
#define MV4_SETUP \
	MOVQ out+0(FP), DI  \
	MOVQ w+8(FP), SI    \
	MOVQ x+16(FP), BX   \
	MOVQ rows+24(FP), CX \
	MOVQ cols+32(FP), DX \
	MOVQ stride+40(FP), R9

// REDUCE4(a, b, c, d) adds the eight lanes of each of four Y registers and
// stores the four sums at (DI). It clobbers a, b, c and X1's upper lanes.
#define REDUCE4_STORE(a, b, c, d, xa, xb) \
	VHADDPS b, a, a \
	VHADDPS d, c, c \
	VHADDPS c, a, a \
	VEXTRACTF128 $1, a, xb \
	VADDPS xb, xa, xa \
	VMOVUPS xa, (DI)

// The AVX-512 body: LDW0/LDW1 load 16 weights at columns AX and AX+16 of
// row b as float32; LDWZ loads the masked tail.
#define MV4_AVX512_BODY \
	TESTQ CX, CX \
	JZ    done \
row4: \
	LEAQ (SI)(R9*1), R11 \
	LEAQ (R11)(R9*1), R12 \
	LEAQ (R12)(R9*1), R13 \
	VPXORD Z0, Z0, Z0 \
	VPXORD Z1, Z1, Z1 \
	VPXORD Z2, Z2, Z2 \
	VPXORD Z3, Z3, Z3 \
	VPXORD Z4, Z4, Z4 \
	VPXORD Z5, Z5, Z5 \
	VPXORD Z6, Z6, Z6 \
	VPXORD Z7, Z7, Z7 \
	XORQ AX, AX \
	MOVQ DX, R10 \
	SHRQ $5, R10 \
	JZ   tail16 \
loop32: \
	VMOVUPS (BX)(AX*4), Z8 \
	VMOVUPS 64(BX)(AX*4), Z9 \
	LDW0(SI, Z10) \
	LDW1(SI, Z11) \
	LDW0(R11, Z12) \
	LDW1(R11, Z13) \
	LDW0(R12, Z14) \
	LDW1(R12, Z15) \
	LDW0(R13, Z16) \
	LDW1(R13, Z17) \
	VFMADD231PS Z8, Z10, Z0 \
	VFMADD231PS Z9, Z11, Z4 \
	VFMADD231PS Z8, Z12, Z1 \
	VFMADD231PS Z9, Z13, Z5 \
	VFMADD231PS Z8, Z14, Z2 \
	VFMADD231PS Z9, Z15, Z6 \
	VFMADD231PS Z8, Z16, Z3 \
	VFMADD231PS Z9, Z17, Z7 \
	ADDQ $32, AX \
	DECQ R10 \
	JNZ  loop32 \
tail16: \
	TESTQ $16, DX \
	JZ    tailm \
	VMOVUPS (BX)(AX*4), Z8 \
	LDW0(SI, Z10) \
	LDW0(R11, Z12) \
	LDW0(R12, Z14) \
	LDW0(R13, Z16) \
	VFMADD231PS Z8, Z10, Z0 \
	VFMADD231PS Z8, Z12, Z1 \
	VFMADD231PS Z8, Z14, Z2 \
	VFMADD231PS Z8, Z16, Z3 \
	ADDQ $16, AX \
tailm: \
	TESTQ $15, DX \
	JZ    reduce \
	VMOVUPS.Z (BX)(AX*4), K1, Z8 \
	LDWZ(SI, Z10) \
	LDWZ(R11, Z12) \
	LDWZ(R12, Z14) \
	LDWZ(R13, Z16) \
	VFMADD231PS Z8, Z10, Z4 \
	VFMADD231PS Z8, Z12, Z5 \
	VFMADD231PS Z8, Z14, Z6 \
	VFMADD231PS Z8, Z16, Z7 \
reduce: \
	VADDPS Z4, Z0, Z0 \
	VADDPS Z5, Z1, Z1 \
	VADDPS Z6, Z2, Z2 \
	VADDPS Z7, Z3, Z3 \
	VEXTRACTF64X4 $1, Z0, Y4 \
	VEXTRACTF64X4 $1, Z1, Y5 \
	VEXTRACTF64X4 $1, Z2, Y6 \
	VEXTRACTF64X4 $1, Z3, Y7 \
	VADDPS Y4, Y0, Y0 \
	VADDPS Y5, Y1, Y1 \
	VADDPS Y6, Y2, Y2 \
	VADDPS Y7, Y3, Y3 \
	REDUCE4_STORE(Y0, Y1, Y2, Y3, X0, X1) \
	ADDQ $16, DI \
	LEAQ (R13)(R9*1), SI \
	SUBQ $4, CX \
	JNZ  row4 \
done: \
	VZEROUPPER \
	RET

// func mv4F32AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int, mask uint64)
#define LDW0(b, d) VMOVUPS (b)(AX*4), d
#define LDW1(b, d) VMOVUPS 64(b)(AX*4), d
#define LDWZ(b, d) VMOVUPS.Z (b)(AX*4), K1, d
TEXT ·mv4F32AVX512(SB), NOSPLIT, $0-56
	MV4_SETUP
	MOVQ mask+48(FP), R8
	KMOVW R8, K1
	MV4_AVX512_BODY

#undef LDW0
#undef LDW1
#undef LDWZ

// func mv4F16AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int, mask uint64)
#define LDW0(b, d) VCVTPH2PS (b)(AX*2), d
#define LDW1(b, d) VCVTPH2PS 32(b)(AX*2), d
#define LDWZ(b, d) VCVTPH2PS.Z (b)(AX*2), K1, d
TEXT ·mv4F16AVX512(SB), NOSPLIT, $0-56
	MV4_SETUP
	MOVQ mask+48(FP), R8
	KMOVW R8, K1
	MV4_AVX512_BODY

#undef LDW0
#undef LDW1
#undef LDWZ

// func mv4BF16AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int, mask uint64)
#define LDW0(b, d) VPMOVZXWD (b)(AX*2), d; VPSLLD $16, d, d
#define LDW1(b, d) VPMOVZXWD 32(b)(AX*2), d; VPSLLD $16, d, d
#define LDWZ(b, d) VPMOVZXWD.Z (b)(AX*2), K1, d; VPSLLD $16, d, d
TEXT ·mv4BF16AVX512(SB), NOSPLIT, $0-56
	MV4_SETUP
	MOVQ mask+48(FP), R8
	KMOVW R8, K1
	MV4_AVX512_BODY

#undef LDW0
#undef LDW1
#undef LDWZ

// The AVX2 body: 16 columns per iteration, then one block of 8; cols must
// be a multiple of 8. Weights are loaded into Y10/Y11 and used at once.
#define MV4_AVX2_BODY \
	TESTQ CX, CX \
	JZ    done \
row4: \
	LEAQ (SI)(R9*1), R11 \
	LEAQ (R11)(R9*1), R12 \
	LEAQ (R12)(R9*1), R13 \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	VXORPS Y2, Y2, Y2 \
	VXORPS Y3, Y3, Y3 \
	VXORPS Y4, Y4, Y4 \
	VXORPS Y5, Y5, Y5 \
	VXORPS Y6, Y6, Y6 \
	VXORPS Y7, Y7, Y7 \
	XORQ AX, AX \
	MOVQ DX, R10 \
	SHRQ $4, R10 \
	JZ   tail8 \
loop16: \
	VMOVUPS (BX)(AX*4), Y8 \
	VMOVUPS 32(BX)(AX*4), Y9 \
	LDW0(SI, Y10) \
	LDW1(SI, Y11) \
	VFMADD231PS Y8, Y10, Y0 \
	VFMADD231PS Y9, Y11, Y4 \
	LDW0(R11, Y12) \
	LDW1(R11, Y13) \
	VFMADD231PS Y8, Y12, Y1 \
	VFMADD231PS Y9, Y13, Y5 \
	LDW0(R12, Y10) \
	LDW1(R12, Y11) \
	VFMADD231PS Y8, Y10, Y2 \
	VFMADD231PS Y9, Y11, Y6 \
	LDW0(R13, Y12) \
	LDW1(R13, Y13) \
	VFMADD231PS Y8, Y12, Y3 \
	VFMADD231PS Y9, Y13, Y7 \
	ADDQ $16, AX \
	DECQ R10 \
	JNZ  loop16 \
tail8: \
	TESTQ $8, DX \
	JZ    reduce \
	VMOVUPS (BX)(AX*4), Y8 \
	LDW0(SI, Y10) \
	LDW0(R11, Y11) \
	LDW0(R12, Y12) \
	LDW0(R13, Y13) \
	VFMADD231PS Y8, Y10, Y0 \
	VFMADD231PS Y8, Y11, Y1 \
	VFMADD231PS Y8, Y12, Y2 \
	VFMADD231PS Y8, Y13, Y3 \
reduce: \
	VADDPS Y4, Y0, Y0 \
	VADDPS Y5, Y1, Y1 \
	VADDPS Y6, Y2, Y2 \
	VADDPS Y7, Y3, Y3 \
	REDUCE4_STORE(Y0, Y1, Y2, Y3, X0, X1) \
	ADDQ $16, DI \
	LEAQ (R13)(R9*1), SI \
	SUBQ $4, CX \
	JNZ  row4 \
done: \
	VZEROUPPER \
	RET

// func mv4F32AVX2(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int)
#define LDW0(b, d) VMOVUPS (b)(AX*4), d
#define LDW1(b, d) VMOVUPS 32(b)(AX*4), d
TEXT ·mv4F32AVX2(SB), NOSPLIT, $0-48
	MV4_SETUP
	MV4_AVX2_BODY

#undef LDW0
#undef LDW1

// func mv4F16AVX2(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int)
#define LDW0(b, d) VCVTPH2PS (b)(AX*2), d
#define LDW1(b, d) VCVTPH2PS 16(b)(AX*2), d
TEXT ·mv4F16AVX2(SB), NOSPLIT, $0-48
	MV4_SETUP
	MV4_AVX2_BODY

#undef LDW0
#undef LDW1

// func mv4BF16AVX2(out *float32, w unsafe.Pointer, x *float32, rows, cols, stride int)
#define LDW0(b, d) VPMOVZXWD (b)(AX*2), d; VPSLLD $16, d, d
#define LDW1(b, d) VPMOVZXWD 16(b)(AX*2), d; VPSLLD $16, d, d
TEXT ·mv4BF16AVX2(SB), NOSPLIT, $0-48
	MV4_SETUP
	MV4_AVX2_BODY

#undef LDW0
#undef LDW1

// func mv1F32AVX512(out *float32, w *float32, x *float32, rows, cols int, mask uint64)
//
// The f32 decode matvec: one row at a time, 64 columns per iteration into
// four accumulators, then 16 at a time, then the last cols%16 under mask
// (= 1<<(cols%16) - 1). Rows follow each other in memory, so each thread
// reads one linear stream, which the hardware prefetchers follow at full
// speed; four rows at a time (mv4F32AVX512) save loads of x but read four
// streams, and measured about 8% slower over a stories110M decode step.
// x comes from L1 as a memory operand of each FMA.
TEXT ·mv1F32AVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), BX
	MOVQ rows+24(FP), CX
	MOVQ cols+32(FP), DX
	MOVQ mask+40(FP), R8
	KMOVW R8, K1
	TESTQ CX, CX
	JZ    m1done
m1row:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	XORQ AX, AX
	MOVQ DX, R10
	SHRQ $6, R10
	JZ   m1t16
m1loop:
	VMOVUPS (SI)(AX*4), Z4
	VMOVUPS 64(SI)(AX*4), Z5
	VMOVUPS 128(SI)(AX*4), Z6
	VMOVUPS 192(SI)(AX*4), Z7
	VFMADD231PS (BX)(AX*4), Z4, Z0
	VFMADD231PS 64(BX)(AX*4), Z5, Z1
	VFMADD231PS 128(BX)(AX*4), Z6, Z2
	VFMADD231PS 192(BX)(AX*4), Z7, Z3
	ADDQ $64, AX
	DECQ R10
	JNZ  m1loop
m1t16:
	MOVQ DX, R10
	ANDQ $63, R10
	SHRQ $4, R10
	JZ   m1tm
m1l16:
	VMOVUPS (SI)(AX*4), Z4
	VFMADD231PS (BX)(AX*4), Z4, Z0
	ADDQ $16, AX
	DECQ R10
	JNZ  m1l16
m1tm:
	TESTQ $15, DX
	JZ    m1red
	VMOVUPS.Z (SI)(AX*4), K1, Z4
	VMOVUPS.Z (BX)(AX*4), K1, Z5
	VFMADD231PS Z5, Z4, Z1
m1red:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, (DI)
	ADDQ $4, DI
	LEAQ (SI)(DX*4), SI
	DECQ CX
	JNZ  m1row
m1done:
	VZEROUPPER
	RET
