package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The prompts of Q2_K–Q6_K weights on the quantized GEMM of
// qgemm.go: MatMul of more than kq8MaxN tokens, where its tile kernel
// exists. The super-blocks are cut into the kernel's blocks of 32 values,
// each with its own float scale:
//
// The activations are quantized as for the products of fewer tokens
// (quantizeQ8K: 8 bits in blocks of 256 with a float32 scale), so that
// every sub-block's integer sum is the one those products and llama.cpp's
// Q8_K products take; each kernel block carries its block of 256's scale.
//
//   - Q4_K, Q5_K: sub-block j of a super-block is a block whose unsigned
//     quants are the 4- or 5-bit values (0..31) and whose weight scale is
//     d·sc_j, with no offset correction (m = 0); the mins' part,
//     −Σ_j dmin·m_j·d_x·Σ_{l in j} q_x, is a float product of rows ×
//     Cols/32 mins by the tokens' quantized sub-block sums, which the
//     float GEMM computes and MatMul subtracts.
//   - Q2_K, Q3_K: values 32k..32k+31 of a super-block, two sub-blocks of
//     16, are a block whose weight scale is d and whose quants carry the
//     sub-blocks' integer scales: Q2_K's u·sc (u < 4, sc < 16: at most
//     45); Q3_K's, whose values are s·(u−4) (u < 8, s = scale − 32 in
//     −32..31), |s|·u where s ≥ 0 and |s|·(7−u) where s < 0 (at most
//     224), since s·(u−4) = |s|·u − 4|s| = |s|·(7−u) − 3|s| respectively.
//     The offsets become mins of each sub-block of 16, dmin·(sc >> 4) and
//     d·|s|·(4 or 3), whose part is subtracted as Q4_K's is, over the
//     tokens' sums of 16. One block serves two sub-blocks, where padding
//     each to 32 as Q6_K does would double the kernel's work.
//   - Q6_K: each sub-block of 16 is a block whose first 16 quants are the
//     6-bit values (0..63) and last 16 zero, with weight scale d·sc; the
//     activations' blocks of 16 are zero-padded to 32 and carry the
//     correction −32·Σq, so that the kernel's sum is Σ (q−32)·q_x.
//
// The panels' quants are packed by kqgemm_amd64.s where the CPU has
// AVX-512 (a pure-Go twin, byte for byte); their scales, the mins and the
// activations' preparation run in Go: their cost is per weight byte and
// per activation, the kernel's per product.

// kqgType reports whether MatMul of n tokens runs on weights of type dt
// through the quantized GEMM.
func kqgType(dt kernels.DType, n int) bool {
	return kq8Type(dt) && n > kq8MaxN && qgemmImpl.gemm != nil
}

// kqgCorr is the offset m of the unsigned weight quants of dt in the
// kernel's blocks: 32 for Q6_K, none for the others.
func kqgCorr(dt kernels.DType) int {
	if dt == kernels.Q6_K {
		return 32
	}
	return 0
}

// kqgSamePrep reports whether the quantized GEMM of n tokens prepares the
// activations of w as those of the matrix a before it: both K-quants of
// the same width, blocks, offset and mins' runs. MatMulMany then skips
// the preparation of w's (Backend.kqgReuse).
func kqgSamePrep(a, w *kernels.Matrix, n int) bool {
	return kqgType(a.Type, n) && kqgType(w.Type, n) && a.Cols == w.Cols &&
		qgSub(a.Type) == qgSub(w.Type) && kqgCorr(a.Type) == kqgCorr(w.Type) &&
		kqgMins(a.Type) == kqgMins(w.Type) && (!kqgMins(w.Type) || kqgMinSub(a.Type) == kqgMinSub(w.Type))
}

// qgSub is the values of one kernel block taken from the weights of dt:
// 16 for Q6_K (padded to 32), 32 otherwise.
func qgSub(dt kernels.DType) int {
	if dt == kernels.Q6_K {
		return 16
	}
	return kernels.QK
}

// kqgMins reports whether dt has mins, whose part MatMul adds apart.
func kqgMins(dt kernels.DType) bool {
	return dt == kernels.Q2_K || dt == kernels.Q3_K || dt == kernels.Q4_K || dt == kernels.Q5_K
}

// kqgMinSub is the values of one min of dt: 16 for Q2_K and Q3_K, 32 for
// Q4_K and Q5_K.
func kqgMinSub(dt kernels.DType) int {
	if dt == kernels.Q2_K || dt == kernels.Q3_K {
		return 16
	}
	return kernels.QK
}

// kqgPack packs the 32 rows at w+offs[i] (ns super-blocks of type dt
// each) into a panel of ns·256/qgSub(dt) blocks. Where mins is not nil,
// row i's mins go to mins[i·ld + (256/kqgMinSub(dt))·b + j] for i < nr.
func kqgPack(dt kernels.DType, dst, w []byte, offs *[qgRows]int32, ns int, mins []float32, ld, nr int) {
	bb := dt.BlockBytes()
	if dt == kernels.Q2_K || dt == kernels.Q3_K {
		kqgPack23(dt, dst, w, offs, ns, mins, ld, nr)
		return
	}
	if dt == kernels.Q6_K {
		kqgQuants6(dst, w, offs, ns)
	} else {
		kqgQuants45(dst, w, offs, ns, dt == kernels.Q5_K)
	}
	for i, off := range offs {
		for b := range ns {
			blk := w[int(off)+b*bb : int(off)+(b+1)*bb]
			switch dt {
			case kernels.Q4_K, kernels.Q5_K:
				d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
				dmin := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[2:]))
				sc, m := k4Scales(blk[4:16])
				for j := range 8 {
					binary.LittleEndian.PutUint32(dst[(8*b+j)*qgPanelBlock+1024+4*i:], math.Float32bits(d*float32(sc[j])))
					if mins != nil && i < nr {
						mins[i*ld+8*b+j] = dmin * float32(m[j])
					}
				}
			case kernels.Q6_K:
				d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[208:]))
				for s, sc := range blk[192:208] {
					binary.LittleEndian.PutUint32(dst[(16*b+s)*qgPanelBlock+1024+4*i:], math.Float32bits(d*float32(int8(sc))))
				}
			}
		}
	}
}

// kqgPrep quantizes the four tokens x[t·cols:(t+1)·cols] (t < 4) as
// quantizeQ8K does, in blocks of 256 with a float32 scale d, and prepares
// them as a group of cols/sub blocks of sub values, each with the scale d
// of its block of 256 and the correction −m·Σq. Where sums is not nil,
// token t's quantized sums d·Σq of each run of ms values go to
// sums[t·cols/ms + j] for the tokens t ≥ from.
func kqgPrep(dst []byte, x []float32, cols, sub, m int, sums []float32, ms, from int) {
	per := kernels.QKK / sub // kernel blocks per block of 256
	var q [kernels.QKK]int32
	var qb [kernels.QKK]byte
	for t := range qgToks {
		for k := range cols / kernels.QKK {
			d := q8kRound(qb[:], x[t*cols+k*kernels.QKK:t*cols+(k+1)*kernels.QKK])
			for i, b := range qb {
				q[i] = int32(int8(b))
			}
			for j := range per {
				g := dst[(k*per+j)*qgGroupBlock : (k*per+j+1)*qgGroupBlock]
				qt := g[32*t : 32*t+32]
				var s int32
				for i, v := range q[j*sub : (j+1)*sub] {
					qt[i] = byte(int8(v))
					s += v
				}
				clear(qt[sub:])
				binary.LittleEndian.PutUint32(g[128+4*t:], uint32(-int32(m)*s))
				binary.LittleEndian.PutUint32(g[144+4*t:], math.Float32bits(d))
			}
			if sums != nil && t >= from {
				per := kernels.QKK / ms
				st := sums[t*(cols/ms)+k*per:]
				for j := range per {
					var s int32
					for _, v := range q[ms*j : ms*j+ms] {
						s += v
					}
					st[j] = d * float32(s)
				}
			}
		}
	}
}

// kqgQuants45Generic writes the quants of a Q4_K (Q5_K where q5) panel of
// the 32 rows at w+offs[i], ns super-blocks each: the kernel's blocks
// but for their scales.
func kqgQuants45Generic(dst, w []byte, offs *[qgRows]int32, ns int, q5 bool) {
	bb, qo := 144, 16
	if q5 {
		bb, qo = 176, 48
	}
	for i, off := range offs {
		lane := i/16*64 + 4*(i%16)
		for b := range ns {
			blk := w[int(off)+b*bb : int(off)+(b+1)*bb]
			qs, qh := blk[qo:qo+128], blk[16:48]
			// Sub-blocks 2c and 2c+1 are the low and high nibbles of
			// the same 32 bytes.
			for c := range 4 {
				p := dst[(8*b+2*c)*qgPanelBlock : (8*b+2*c+2)*qgPanelBlock]
				for a := range 8 {
					v := binary.LittleEndian.Uint32(qs[32*c+4*a:])
					lo, hi := v&0x0f0f0f0f, v>>4&0x0f0f0f0f
					if q5 {
						h := binary.LittleEndian.Uint32(qh[4*a:]) >> (2 * c)
						lo |= (h & 0x01010101) << 4
						hi |= (h >> 1 & 0x01010101) << 4
					}
					binary.LittleEndian.PutUint32(p[128*a+lane:], lo)
					binary.LittleEndian.PutUint32(p[qgPanelBlock+128*a+lane:], hi)
				}
			}
		}
	}
}

// kqgQuants6Generic writes the quants of a Q6_K panel of the 32 rows at
// w+offs[i], ns super-blocks each: the kernel's blocks but for their
// scales, each sub-block of 16 a block whose last 16 quants are zero.
func kqgQuants6Generic(dst, w []byte, offs *[qgRows]int32, ns int) {
	const bb = 210
	for i, off := range offs {
		lane := i/16*64 + 4*(i%16)
		for b := range ns {
			blk := w[int(off)+b*bb : int(off)+(b+1)*bb]
			ql, qh := blk[0:128], blk[128:192]
			for s := range 16 {
				h, k, half := s/8, s/2%4, s%2
				p := dst[(16*b+s)*qgPanelBlock : (16*b+s+1)*qgPanelBlock]
				for a := range 4 {
					lo := binary.LittleEndian.Uint32(ql[64*h+32*(k&1)+16*half+4*a:]) >> (4 * (k >> 1)) & 0x0f0f0f0f
					hi := binary.LittleEndian.Uint32(qh[32*h+16*half+4*a:]) >> (2 * k) & 0x03030303
					binary.LittleEndian.PutUint32(p[128*a+lane:], lo|hi<<4)
					binary.LittleEndian.PutUint32(p[128*(a+4)+lane:], 0)
				}
			}
		}
	}
}

// kqgMinsPart subtracts the mins' part of a Q2_K–Q5_K product from out
// after the quantized GEMM has filled it: the float GEMM of the rows'
// mins by the tokens' sub-block sums.
func (b *Backend) kqgMinsPart(out []float32, w *kernels.Matrix, n int) {
	nj := w.Cols / kqgMinSub(w.Type)
	mw := kernels.Matrix{Type: kernels.F32, Rows: w.Rows, Cols: nj, Data: kernels.F32Bytes(b.kqMins[:w.Rows*nj])}
	b.kqCorr = growF32(b.kqCorr, n*w.Rows)
	corr := b.kqCorr[:n*w.Rows]
	b.gemm(corr, &mw, b.kqSums[:n*nj], n)
	for i, c := range corr {
		out[i] -= c
	}
}

// growF32 returns s with room for n values.
func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// KQuantPromptsInt8 reports whether MatMul multiplies Q2_K–Q6_K
// weights on activations quantized to 8 bits for any number of tokens
// (prompts too, on this CPU's quantized GEMM), as llama.cpp does; where
// not, prompts of more than five tokens keep float activations.
func KQuantPromptsInt8() bool { return kq8On && qgemmImpl.gemm != nil }

// kqgPack23 packs a Q2_K or Q3_K panel as kqgPack does: for each
// super-block, the 32 rows' 16 signed integer scales (Q2_K's sc & 15,
// Q3_K's scale − 32) and d go to the panel's blocks from Go, the quants
// through kqgQuants23.
func kqgPack23(dt kernels.DType, dst, w []byte, offs *[qgRows]int32, ns int, mins []float32, ld, nr int) {
	bb := dt.BlockBytes()
	q3 := dt == kernels.Q3_K
	var sc [16 * qgRows]int32
	for b := range ns {
		p := dst[8*b*qgPanelBlock : 8*(b+1)*qgPanelBlock]
		for i, off := range offs {
			blk := w[int(off)+b*bb : int(off)+(b+1)*bb]
			var d, dmin float32
			if q3 {
				d = kernels.F16ToF32(binary.LittleEndian.Uint16(blk[108:]))
			} else {
				d = kernels.F16ToF32(binary.LittleEndian.Uint16(blk[80:]))
				dmin = kernels.F16ToF32(binary.LittleEndian.Uint16(blk[82:]))
			}
			for k := range 8 {
				binary.LittleEndian.PutUint32(p[k*qgPanelBlock+1024+4*i:], math.Float32bits(d))
			}
			var ms []float32
			if mins != nil && i < nr {
				ms = mins[i*ld+16*b : i*ld+16*b+16]
			}
			if q3 {
				// The 16 six-bit scales (kernels.K3Scale), four at a
				// time.
				var u [16]byte
				lo0, lo1 := binary.LittleEndian.Uint32(blk[96:]), binary.LittleEndian.Uint32(blk[100:])
				hi := binary.LittleEndian.Uint32(blk[104:])
				binary.LittleEndian.PutUint32(u[0:], lo0&0x0f0f0f0f|(hi&0x03030303)<<4)
				binary.LittleEndian.PutUint32(u[4:], lo1&0x0f0f0f0f|(hi>>2&0x03030303)<<4)
				binary.LittleEndian.PutUint32(u[8:], lo0>>4&0x0f0f0f0f|(hi>>4&0x03030303)<<4)
				binary.LittleEndian.PutUint32(u[12:], lo1>>4&0x0f0f0f0f|(hi>>6&0x03030303)<<4)
				for t, v := range u {
					s := int32(v) - 32
					sc[t*qgRows+i] = s
					if ms != nil {
						// 4|s| where s ≥ 0, 3|s| where s < 0.
						neg := s >> 31
						ms[t] = d * float32((s^neg-neg)*(4+neg))
					}
				}
				continue
			}
			for t, v := range blk[:16] {
				sc[t*qgRows+i] = int32(v & 0x0f)
				if ms != nil {
					ms[t] = dmin * float32(v>>4)
				}
			}
		}
		kqgQuants23(p, w[b*bb:], offs, &sc, q3)
	}
}

// kqgQuants23Generic writes the quants of one Q2_K (Q3_K where q3)
// super-block of the 32 rows at w+offs[i] as the panel's 8 blocks but for
// their scales, the quants times the sub-blocks' scales sc[t·32 + i]
// (Q3_K: |s|·u or |s|·(7−u), as the comment above says).
func kqgQuants23Generic(dst, w []byte, offs *[qgRows]int32, sc *[16 * qgRows]int32, q3 bool) {
	qo := 16
	if q3 {
		qo = 32
	}
	for i, off := range offs {
		lane := i/16*64 + 4*(i%16)
		blk := w[off:]
		qs, hm := blk[qo:qo+64], blk[0:32]
		for k := range 8 {
			h, j := k/4, k%4
			p := dst[k*qgPanelBlock : (k+1)*qgPanelBlock]
			for a := range 8 {
				u := binary.LittleEndian.Uint32(qs[32*h+4*a:]) >> (2 * j) & 0x03030303
				if q3 {
					u |= (binary.LittleEndian.Uint32(hm[4*a:]) >> (4*h + j) & 0x01010101) << 2
				}
				s := sc[(2*k+a/4)*qgRows+i]
				if s < 0 {
					u ^= 0x07070707
					s = -s
				}
				// Every byte's product is below 256: no carries.
				binary.LittleEndian.PutUint32(p[128*a+lane:], u*uint32(s))
			}
		}
	}
}
