//go:build amd64 && !noasm

#include "textflag.h"

// Matrix-vector kernels for f32, f16 and bf16 weights. The AVX2 ones
// compute four rows at a time, so every load of x feeds four FMAs:
//
//	for r := 0; r < rows; r++ {          // rows is a multiple of 4
//		row := w + r*stride              // stride in bytes; 0 repeats one row
//		out[r] = Σ_{c<cols} float32(row[c]) · x[c]
//	}
//
// They need cols to be a multiple of 8; the Go wrappers add the rest. The
// AVX-512 ones (mv1*, at the end) run one row at a time over any cols.
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

// The decode matvecs of the AVX-512 path: one row at a time, 64 columns
// per iteration into four accumulators, then 16 at a time, then the last
// cols%16 under mask (= 1<<(cols%16) - 1). Rows follow each other in
// memory, so each thread reads one linear stream, which the hardware
// prefetchers follow at full speed. Four rows at a time, as the AVX2
// kernels run, save loads of x but read four streams: that measured 8%
// slower over a stories110M f32 decode step, 16% with f16 weights. x comes from L1 as a memory operand
// of each FMA. LDA(off, d) loads 16 weights at column AX+off of the row at
// SI as float32, LDAZ(d) the masked tail, and NEXTROW moves SI on by DX
// columns.
#define MV1_AVX512_BODY \
	TESTQ CX, CX \
	JZ    m1done \
m1row: \
	VPXORD Z0, Z0, Z0 \
	VPXORD Z1, Z1, Z1 \
	VPXORD Z2, Z2, Z2 \
	VPXORD Z3, Z3, Z3 \
	XORQ AX, AX \
	MOVQ DX, R10 \
	SHRQ $6, R10 \
	JZ   m1t16 \
m1loop: \
	LDA(0, Z4) \
	LDA(16, Z5) \
	LDA(32, Z6) \
	LDA(48, Z7) \
	VFMADD231PS (BX)(AX*4), Z4, Z0 \
	VFMADD231PS 64(BX)(AX*4), Z5, Z1 \
	VFMADD231PS 128(BX)(AX*4), Z6, Z2 \
	VFMADD231PS 192(BX)(AX*4), Z7, Z3 \
	ADDQ $64, AX \
	DECQ R10 \
	JNZ  m1loop \
m1t16: \
	MOVQ DX, R10 \
	ANDQ $63, R10 \
	SHRQ $4, R10 \
	JZ   m1tm \
m1l16: \
	LDA(0, Z4) \
	VFMADD231PS (BX)(AX*4), Z4, Z0 \
	ADDQ $16, AX \
	DECQ R10 \
	JNZ  m1l16 \
m1tm: \
	TESTQ $15, DX \
	JZ    m1red \
	LDAZ(Z4) \
	VMOVUPS.Z (BX)(AX*4), K1, Z5 \
	VFMADD231PS Z5, Z4, Z1 \
m1red: \
	VADDPS Z1, Z0, Z0 \
	VADDPS Z3, Z2, Z2 \
	VADDPS Z2, Z0, Z0 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VHADDPS X0, X0, X0 \
	VHADDPS X0, X0, X0 \
	VMOVSS X0, (DI) \
	ADDQ $4, DI \
	NEXTROW \
	DECQ CX \
	JNZ  m1row \
m1done: \
	VZEROUPPER \
	RET

// func mv1F32AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols int, mask uint64)
#define LDA(off, d) VMOVUPS (off*4)(SI)(AX*4), d
#define LDAZ(d) VMOVUPS.Z (SI)(AX*4), K1, d
#define NEXTROW LEAQ (SI)(DX*4), SI
TEXT ·mv1F32AVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), BX
	MOVQ rows+24(FP), CX
	MOVQ cols+32(FP), DX
	MOVQ mask+40(FP), R8
	KMOVW R8, K1
	MV1_AVX512_BODY
#undef LDA
#undef LDAZ
#undef NEXTROW

// func mv1F16AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols int, mask uint64)
#define LDA(off, d) VCVTPH2PS (off*2)(SI)(AX*2), d
#define LDAZ(d) VCVTPH2PS.Z (SI)(AX*2), K1, d
#define NEXTROW LEAQ (SI)(DX*2), SI
TEXT ·mv1F16AVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), BX
	MOVQ rows+24(FP), CX
	MOVQ cols+32(FP), DX
	MOVQ mask+40(FP), R8
	KMOVW R8, K1
	MV1_AVX512_BODY
#undef LDA
#undef LDAZ
#undef NEXTROW

// func mv1BF16AVX512(out *float32, w unsafe.Pointer, x *float32, rows, cols int, mask uint64)
#define LDA(off, d) VPMOVZXWD (off*2)(SI)(AX*2), d; VPSLLD $16, d, d
#define LDAZ(d) VPMOVZXWD.Z (SI)(AX*2), K1, d; VPSLLD $16, d, d
#define NEXTROW LEAQ (SI)(DX*2), SI
TEXT ·mv1BF16AVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), BX
	MOVQ rows+24(FP), CX
	MOVQ cols+32(FP), DX
	MOVQ mask+40(FP), R8
	KMOVW R8, K1
	MV1_AVX512_BODY
#undef LDA
#undef LDAZ
#undef NEXTROW
