package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The integer path of Q2_K, Q3_K, Q4_K, Q5_K and Q6_K weights. The activations are
// quantized once per product to 8 bits in blocks of 256 (q8kBlock bytes
// each: q[256] int8, then the sums of q over each run of 16 as int16[16],
// then the float32 scale d = max|x|/127 and padding), so that every
// super-block's dot product is a sum of int8 products:
//
//	Q4_K, Q5_K: d_x·(d·Σ_j sc_j·Σ_l q·x − dmin·Σ_j m_j·Σ_l x)
//	Q2_K:       the same over its 16 sub-blocks of 16
//	Q3_K:       d_x·d·Σ_t sc_t·(Σ_l u·x − 4·Σ_l x), u = q + 4 in 0..7
//	Q6_K:       d_x·d·Σ_t sc_t·(Σ_l q·x − 32·Σ_l x)
//
// the sums Σ_l x over a sub-block coming from the stored run sums. The
// kernels keep eight int32 lanes per super-block, lane k summing the
// products of bytes 4k..4k+3 of each 32-value piece, then add each lane,
// converted to float32 and times d_x·d (and less the mins' lane times
// d_x·dmin), to eight float32 lanes; the row's result is the lanes summed
// as ((f0+f4)+(f2+f6)) + ((f1+f5)+(f3+f7)). The pure-Go twins below do
// exactly that, so the assembly gives their results bit for bit.

// q8kBlock is the size of one quantized block of 256 activations; 320
// keeps blocks 64-byte aligned in aligned scratch.
const q8kBlock = 320

// kq8Type reports whether MatMul multiplies weights of type dt on
// activations quantized to 8 bits in blocks of 256.
func kq8Type(dt kernels.DType) bool {
	return kq8On && (dt == kernels.Q2_K || dt == kernels.Q3_K || dt == kernels.Q4_K || dt == kernels.Q5_K || dt == kernels.Q6_K)
}

// kq8On turns the integer path on; the benchmarks turn it off to measure
// the float path (a decoded row per product) in the same run.
var kq8On = true

// kq8MaxN is the most tokens the integer path takes; more go through the
// float GEMM.
const kq8MaxN = gemmMinN - 1

// quantizeQ8K quantizes x (a multiple of 256 values) into len(x)/256
// blocks of dst.
func quantizeQ8K(dst []byte, x []float32) {
	for b := range len(x) / kernels.QKK {
		xb := x[b*kernels.QKK : (b+1)*kernels.QKK]
		blk := dst[b*q8kBlock : (b+1)*q8kBlock]
		d := q8kRound(blk[:kernels.QKK], xb)
		for r := range 16 {
			var s int16
			for _, q := range blk[16*r : 16*r+16] {
				s += int16(int8(q))
			}
			binary.LittleEndian.PutUint16(blk[256+2*r:], uint16(s))
		}
		binary.LittleEndian.PutUint32(blk[288:], math.Float32bits(d))
	}
}

// q8kRoundGo quantizes one block of 256 activations xb to int8 in dst
// (as bytes) with the block's scale d = max|x|/127, which it returns (0
// for a block of zeros): q = round(x·127/max|x|), rounded half away from
// zero, llama.cpp's Q8_K rounding. Every K-quant product, one token or
// many, rounds here through q8kRound, which the amd64 code paths set to
// an assembly twin giving the same bytes (q8k_amd64.s).
func q8kRoundGo(dst []byte, xb []float32) float32 {
	var amax float32
	for _, v := range xb {
		amax = max(amax, abs32(v))
	}
	var d, id float32
	if amax > 0 {
		d, id = amax/127, 127/amax
	}
	for i, v := range xb {
		dst[i] = byte(int8(max(-127, min(127, math.Round(float64(v*id))))))
	}
	return d
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// q8kD returns the scale of an activation block.
func q8kD(blk []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(blk[288:])) }

// q8kSum returns the sum of the activations' run r of 16.
func q8kSum(blk []byte, r int) int32 { return int32(int16(binary.LittleEndian.Uint16(blk[256+2*r:]))) }

// lanes8Sum is the sum of the eight float lanes in the kernels' order.
func lanes8Sum(f *[8]float32) float32 {
	return ((f[0] + f[4]) + (f[2] + f[6])) + ((f[1] + f[5]) + (f[3] + f[7]))
}

// k4Scales unpacks the eight 6-bit scales and mins of a Q4_K or Q5_K
// block from its 12 packed bytes (kernels.K4Scale for all j at once).
func k4Scales(s []byte) (sc, m [8]int32) {
	for j := range 8 {
		a, b := kernels.K4Scale(j, s)
		sc[j], m[j] = int32(a), int32(b)
	}
	return sc, m
}

// matvecQ45KGeneric computes out[i] = the dot product of row i of w (Q4_K,
// or Q5_K where q5) and the quantized activations xk.
func matvecQ45KGeneric(out []float32, w []byte, nb int, xk []byte, q5 bool) {
	bb := kernels.Q4_K.BlockBytes()
	if q5 {
		bb = kernels.Q5_K.BlockBytes()
	}
	var q [256]int32
	for i := range out {
		row := w[i*nb*bb : (i+1)*nb*bb]
		var f [8]float32
		for b := range nb {
			blk := row[b*bb : (b+1)*bb]
			xb := xk[b*q8kBlock : (b+1)*q8kBlock]
			sc, m := k4Scales(blk[4:16])
			qs := blk[16:144]
			if q5 {
				qs = blk[48:176]
			}
			for c := range 4 {
				for l := range 32 {
					q[64*c+l] = int32(qs[32*c+l] & 15)
					q[64*c+32+l] = int32(qs[32*c+l] >> 4)
					if q5 {
						q[64*c+l] |= int32(blk[16+l]>>(2*c)&1) << 4
						q[64*c+32+l] |= int32(blk[16+l]>>(2*c+1)&1) << 4
					}
				}
			}
			var acc, macc [8]int32
			for j := range 8 {
				for l := range 32 {
					acc[l/4%8] += sc[j] * q[32*j+l] * int32(int8(xb[32*j+l]))
				}
				macc[j] = m[j] * (q8kSum(xb, 2*j) + q8kSum(xb, 2*j+1))
			}
			addScaledLanes(&f, &acc, &macc, blk, q8kD(xb))
		}
		out[i] = lanes8Sum(&f)
	}
}

// addScaledLanes adds to f the integer sums acc scaled by a block's d
// and takes away the mins' sums macc scaled by its dmin (the two f16
// values at the start of dm), each times dx, the activations' scale, in
// the order and roundings the assembly kernels use.
func addScaledLanes(f *[8]float32, acc, macc *[8]int32, dm []byte, dx float32) {
	dd := kernels.F16ToF32(binary.LittleEndian.Uint16(dm)) * dx
	dmin := kernels.F16ToF32(binary.LittleEndian.Uint16(dm[2:])) * dx
	for k := range 8 {
		f[k] += float32(float32(acc[k]) * dd)
		f[k] -= float32(float32(macc[k]) * dmin)
	}
}

func matvecQ4KGeneric(out []float32, w []byte, nb int, xk []byte) {
	matvecQ45KGeneric(out, w, nb, xk, false)
}

func matvecQ5KGeneric(out []float32, w []byte, nb int, xk []byte) {
	matvecQ45KGeneric(out, w, nb, xk, true)
}

// matvecQ6KGeneric computes out[i] = the dot product of row i of the Q6_K
// matrix w and the quantized activations xk.
func matvecQ6KGeneric(out []float32, w []byte, nb int, xk []byte) {
	const bb = 210
	for i := range out {
		row := w[i*nb*bb : (i+1)*nb*bb]
		var f [8]float32
		for b := range nb {
			blk := row[b*bb : (b+1)*bb]
			xb := xk[b*q8kBlock : (b+1)*q8kBlock]
			var acc, off [8]int32
			for h := range 2 {
				for k := range 4 {
					for l := range 32 {
						lo := blk[64*h+l+32*(k&1)]
						if k >= 2 {
							lo >>= 4
						}
						q := int32(lo&15) | int32(blk[128+32*h+l]>>(2*k)&3)<<4
						v := 128*h + 32*k + l
						sc := int32(int8(blk[192+v/16]))
						acc[l/4%8] += sc * q * int32(int8(xb[v]))
					}
				}
			}
			for k := range 8 {
				off[k] = int32(int8(blk[192+2*k]))*q8kSum(xb, 2*k) + int32(int8(blk[192+2*k+1]))*q8kSum(xb, 2*k+1)
				acc[k] -= off[k] << 5
			}
			dd := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[208:])) * q8kD(xb)
			for k := range 8 {
				f[k] += float32(float32(acc[k]) * dd)
			}
		}
		out[i] = lanes8Sum(&f)
	}
}

// matvecQ2KGeneric computes out[i] = the dot product of row i of the Q2_K
// matrix w and the quantized activations xk: per super-block d_x·(d·Σ_j
// (sc_j & 15)·Σ_l q·x − dmin·Σ_j (sc_j >> 4)·Σ_l x) over its 16
// sub-blocks j of 16 values, value 128h + 32c + l (l < 32) being bits
// 2c, 2c+1 of qs[32h + l] in sub-block 8h + 2c + l/16.
func matvecQ2KGeneric(out []float32, w []byte, nb int, xk []byte) {
	const bb = 84
	for i := range out {
		row := w[i*nb*bb : (i+1)*nb*bb]
		var f [8]float32
		for b := range nb {
			blk := row[b*bb : (b+1)*bb]
			xb := xk[b*q8kBlock : (b+1)*q8kBlock]
			var acc, macc [8]int32
			for h := range 2 {
				for c := range 4 {
					for l := range 32 {
						v := 128*h + 32*c + l
						q := int32(blk[16+32*h+l] >> (2 * c) & 3)
						acc[l/4] += int32(blk[v/16]&15) * q * int32(int8(xb[v]))
					}
				}
			}
			for k := range 8 {
				macc[k] = int32(blk[2*k]>>4)*q8kSum(xb, 2*k) + int32(blk[2*k+1]>>4)*q8kSum(xb, 2*k+1)
			}
			addScaledLanes(&f, &acc, &macc, blk[80:], q8kD(xb))
		}
		out[i] = lanes8Sum(&f)
	}
}

// matvecQ3KGeneric computes out[i] = the dot product of row i of the Q3_K
// matrix w and the quantized activations xk. Value 128h + 32c + l (l <
// 32) is u − 4, u = bits 2c, 2c+1 of qs[32h + l] plus 4 where bit 4h + c
// of hmask[l] is set, in sub-block 8h + 2c + l/16 of signed scale sc_t.
func matvecQ3KGeneric(out []float32, w []byte, nb int, xk []byte) {
	const bb = 110
	for i := range out {
		row := w[i*nb*bb : (i+1)*nb*bb]
		var f [8]float32
		for b := range nb {
			blk := row[b*bb : (b+1)*bb]
			xb := xk[b*q8kBlock : (b+1)*q8kBlock]
			var sc [16]int32
			for t := range sc {
				sc[t] = int32(kernels.K3Scale(t, blk[96:108]))
			}
			var acc [8]int32
			for h := range 2 {
				for c := range 4 {
					for l := range 32 {
						v := 128*h + 32*c + l
						u := int32(blk[32+32*h+l]>>(2*c)&3) | int32(blk[l]>>(4*h+c)&1)<<2
						acc[l/4] += sc[v/16] * u * int32(int8(xb[v]))
					}
				}
			}
			for k := range 8 {
				acc[k] -= (sc[2*k]*q8kSum(xb, 2*k) + sc[2*k+1]*q8kSum(xb, 2*k+1)) << 2
			}
			dd := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[108:])) * q8kD(xb)
			for k := range 8 {
				f[k] += float32(float32(acc[k]) * dd)
			}
		}
		out[i] = lanes8Sum(&f)
	}
}

// The K-quant kernels in use (quantKernels.install sets them).
var matvecQ2K, matvecQ3K, matvecQ4K, matvecQ5K, matvecQ6K = matvecQ2KGeneric, matvecQ3KGeneric, matvecQ4KGeneric, matvecQ5KGeneric, matvecQ6KGeneric

// quantizeK quantizes n rows of cols activations for the integer K-quant
// path into scratch kept by the backend.
func (b *Backend) quantizeK(x []float32, cols, n int) []byte {
	nb := cols / kernels.QKK
	b.xk = alignedScratch(b.xk, n*nb*q8kBlock)
	for t := range n {
		quantizeQ8K(b.xk[t*nb*q8kBlock:(t+1)*nb*q8kBlock], x[t*cols:(t+1)*cols])
	}
	return b.xk
}

// runKQ8 computes rows [lo, hi) of a Q2_K–Q6_K matrix for every
// token, against the activations quantized in t.xk.
func runKQ8(t *matmulTask, lo, hi int) {
	w := t.w
	nb := w.Cols / kernels.QKK
	rb := nb * w.Type.BlockBytes()
	mv := matvecQ4K
	switch w.Type {
	case kernels.Q2_K:
		mv = matvecQ2K
	case kernels.Q3_K:
		mv = matvecQ3K
	case kernels.Q5_K:
		mv = matvecQ5K
	case kernels.Q6_K:
		mv = matvecQ6K
	}
	// Several tokens take the rows a few at a time, which stay in the
	// cache from one token to the next.
	step := hi - lo
	if t.n > 1 {
		step = max(1, kq8Chunk/rb)
	}
	for r0 := lo; r0 < hi; r0 += step {
		r1 := min(hi, r0+step)
		for tok := range t.n {
			mv(t.out[tok*w.Rows+r0:tok*w.Rows+r1], w.Data[r0*rb:r1*rb], nb, t.xk[tok*nb*q8kBlock:(tok+1)*nb*q8kBlock])
		}
	}
}

// kq8Chunk is the bytes of weight rows runKQ8 takes at a time for several
// tokens: well within a core's L2.
const kq8Chunk = 64 << 10
