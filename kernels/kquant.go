package kernels

import "encoding/binary"

// The block types the kernels read but do not write, in GGUF's layouts.
// Every scale named d or dmin is an IEEE binary16 value; all multi-byte
// fields are little-endian. "Nibble k of a 16-byte run" is the low nibble
// of byte k for k < 16, the high nibble of byte k−16 otherwise.
//
// Blocks of 32 values:
//
//	Q4_1   20 bytes: d, m, qs[16]; value k = nibble k of qs · d + m.
//	Q5_0   22 bytes: d, qh (uint32), qs[16]; q = nibble k of qs | bit k of
//	       qh << 4; value = (q − 16)·d.
//	Q5_1   24 bytes: d, m, qh (uint32), qs[16]; value = q·d + m, q as Q5_0.
//	IQ4_NL 18 bytes: d, qs[16]; value = d·IQ4Values[nibble k of qs].
//
// Super-blocks of 256 values (QKK):
//
//	Q2_K   84 bytes: scales[16], qs[64], d, dmin. Value i = 128h + 32j +
//	       16s + l (h < 2, j < 4, s < 2, l < 16): q = qs[32h + 16s + l] >>
//	       2j & 3; sc = scales[8h + 2j + s]; value = d·(sc & 15)·q −
//	       dmin·(sc >> 4).
//	Q3_K   110 bytes: hmask[32], qs[64], scales[12], d. Value i as in Q2_K:
//	       q = (qs[32h + 16s + l] >> 2j & 3) − 4 where bit 4h + j of
//	       hmask[16s + l] is clear, − 0 where it is set; the 16 scales are
//	       6-bit, scale t's low four bits the low nibble of scales[t] (t <
//	       8) or the high nibble of scales[t−8], its high two bits bits
//	       2⌊t/4⌋.. of scales[8 + t%4]; value = d·(scale − 32)·q.
//	Q4_K   144 bytes: d, dmin, scales[12], qs[128]. Eight sub-blocks of 32
//	       with 6-bit scale and min (K4Scale); value 64c + l (c < 4, l < 32)
//	       = d·sc(2c)·(qs[32c+l] & 15) − dmin·m(2c), value 64c + 32 + l the
//	       same with qs[32c+l] >> 4 and sub-block 2c+1.
//	Q5_K   176 bytes: d, dmin, scales[12], qh[32], qs[128]. As Q4_K, with
//	       16 added to the quant of value 64c + l where bit 2c of qh[l] is
//	       set and to that of 64c + 32 + l where bit 2c+1 is.
//	Q6_K   210 bytes: ql[128], qh[64], scales[16] (int8), d. Value 128h +
//	       32k + l (h < 2, k < 4, l < 32): low four bits from ql[64h + l +
//	       32(k&1)], the low nibble for k < 2 and the high one for k ≥ 2;
//	       high two bits qh[32h + l] >> 2k & 3; value = d·scales[8h + l/16
//	       + 2k]·(q − 32).
//	IQ4_XS 136 bytes: d, scales_h (uint16), scales_l[4], qs[128]. Eight
//	       sub-blocks of 32: sub-block b's scale has low four bits the
//	       nibble b%2 of scales_l[b/2] and high two bits scales_h >> 2b & 3;
//	       its values are IQ4_NL's over qs[16b:16b+16] with d·(scale − 32).
//
// The products are done in float32 in the order written (for Q6_K,
// (d·scale)·q), which makes the results those of GGUF's reference
// dequantization bit for bit.

// QKK is the number of values in one super-block of the K-quants and
// IQ4_XS.
const QKK = 256

// IQ4Values is the non-linear 4-bit codebook of IQ4_NL and IQ4_XS.
var IQ4Values = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

var blockBytes = [...]int{
	Q8_0: Q8_0BlockBytes, Q4_0: Q4_0BlockBytes,
	Q4_1: 20, Q5_0: 22, Q5_1: 24, IQ4_NL: 18,
	Q2_K: 84, Q3_K: 110, Q4_K: 144, Q5_K: 176, Q6_K: 210, IQ4_XS: 136,
}

// HalfOffsets lists where a block of type d keeps its f16 scales (d and,
// where the type has one, m or dmin), in bytes from the block's start.
func HalfOffsets(d DType) []int {
	switch d {
	case Q8_0, Q4_0, Q5_0, IQ4_NL, IQ4_XS:
		return []int{0}
	case Q4_1, Q5_1, Q4_K, Q5_K:
		return []int{0, 2}
	case Q2_K:
		return []int{80, 82}
	case Q3_K:
		return []int{108}
	case Q6_K:
		return []int{208}
	}
	return nil
}

// K4Scale returns the 6-bit scale and min of sub-block j (< 8) from the
// 12 packed bytes of a Q4_K or Q5_K block: for j < 4 the low six bits of
// bytes j and j+4; otherwise the nibbles of byte j+4 below the top two
// bits of bytes j−4 (scale) and j (min).
func K4Scale(j int, s []byte) (sc, m uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0x0f | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// IQ4XSScale returns the scale of sub-block s (< 8) of the IQ4_XS block b,
// less 32.
func IQ4XSScale(s int, b []byte) int {
	sh := binary.LittleEndian.Uint16(b[2:])
	return int(b[4+s/2]>>(4*(s%2))&0x0f|byte(sh>>(2*s)&3)<<4) - 32
}

// K3Scale returns scale t (< 16) of a Q3_K block from its 12 packed bytes,
// less 32.
func K3Scale(t int, s []byte) int8 {
	lo := s[t%8] >> (4 * (t / 8)) & 0x0f
	hi := s[8+t%4] >> (2 * (t / 4)) & 3
	return int8(lo|hi<<4) - 32
}

func h16(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// decodeBlock dequantizes one block of type t (not F32, F16 or BF16) into
// dst, which has room for BlockLen values.
func decodeBlock(dst []float32, t DType, b []byte) {
	switch t {
	case Q8_0:
		d := h16(b)
		for j := range QK {
			dst[j] = float32(int8(b[2+j])) * d
		}
	case Q4_0:
		d := h16(b)
		for j, q := range b[2:18] {
			dst[j] = float32(int(q&0x0f)-8) * d
			dst[j+16] = float32(int(q>>4)-8) * d
		}
	case Q4_1:
		d, m := h16(b), h16(b[2:])
		for j, q := range b[4:20] {
			dst[j] = float32(q&0x0f)*d + m
			dst[j+16] = float32(q>>4)*d + m
		}
	case Q5_0:
		d := h16(b)
		qh := binary.LittleEndian.Uint32(b[2:])
		for j, q := range b[6:22] {
			lo := int(q&0x0f) | int(qh>>j&1)<<4
			hi := int(q>>4) | int(qh>>(j+16)&1)<<4
			dst[j] = float32(lo-16) * d
			dst[j+16] = float32(hi-16) * d
		}
	case Q5_1:
		d, m := h16(b), h16(b[2:])
		qh := binary.LittleEndian.Uint32(b[4:])
		for j, q := range b[8:24] {
			lo := uint32(q&0x0f) | qh>>j&1<<4
			hi := uint32(q>>4) | qh>>(j+16)&1<<4
			dst[j] = float32(lo)*d + m
			dst[j+16] = float32(hi)*d + m
		}
	case IQ4_NL:
		d := h16(b)
		for j, q := range b[2:18] {
			dst[j] = d * float32(IQ4Values[q&0x0f])
			dst[j+16] = d * float32(IQ4Values[q>>4])
		}
	case Q2_K:
		sc, qs := b[:16], b[16:80]
		d, dmin := h16(b[80:]), h16(b[82:])
		for h := range 2 {
			for j := range 4 {
				for s := range 2 {
					k := sc[8*h+2*j+s]
					dl, ml := d*float32(k&0x0f), dmin*float32(k>>4)
					q := qs[32*h+16*s : 32*h+16*s+16]
					out := dst[128*h+32*j+16*s:]
					for l := range 16 {
						out[l] = dl*float32(q[l]>>(2*j)&3) - ml
					}
				}
			}
		}
	case Q3_K:
		hm, qs, sc := b[:32], b[32:96], b[96:108]
		d := h16(b[108:])
		for h := range 2 {
			for j := range 4 {
				bit := byte(1) << (4*h + j)
				for s := range 2 {
					dl := d * float32(K3Scale(8*h+2*j+s, sc))
					q := qs[32*h+16*s : 32*h+16*s+16]
					m := hm[16*s : 16*s+16]
					out := dst[128*h+32*j+16*s:][:16]
					for l := range out {
						// 4 is subtracted where the mask bit is clear.
						off := (int32(m[l]&bit) - 1) >> 31 & 4
						out[l] = dl * float32(int32(q[l]>>(2*j)&3)-off)
					}
				}
			}
		}
	case Q4_K, Q5_K:
		d, dmin := h16(b), h16(b[2:])
		sc := b[4:16]
		qs, qh := b[16:144], []byte(nil)
		if t == Q5_K {
			qs, qh = b[48:176], b[16:48]
		}
		// Each sub-block's values come from a table of its 16 (Q4_K) or
		// 32 (Q5_K) levels, computed as value = d·sc·q − dmin·m.
		var lv1, lv2 [32]float32
		nl := 16
		if qh != nil {
			nl = 32
		}
		for c := range 4 {
			s1, m1 := K4Scale(2*c, sc)
			s2, m2 := K4Scale(2*c+1, sc)
			d1, dm1 := d*float32(s1), dmin*float32(m1)
			d2, dm2 := d*float32(s2), dmin*float32(m2)
			for q := range nl {
				lv1[q] = d1*float32(q) - dm1
				lv2[q] = d2*float32(q) - dm2
			}
			q := qs[32*c : 32*c+32]
			lo, hi := dst[64*c:][:32], dst[64*c+32:][:32]
			if qh == nil {
				for l, v := range q {
					lo[l] = lv1[v&0x0f]
					hi[l] = lv2[v>>4]
				}
				continue
			}
			for l, v := range q {
				h := qh[l] >> (2 * c)
				lo[l] = lv1[v&0x0f|(h&1)<<4]
				hi[l] = lv2[v>>4|(h&2)<<3]
			}
		}
	case Q6_K:
		ql, qh, sc := b[:128], b[128:192], b[192:208]
		d := h16(b[208:])
		for h := range 2 {
			var dl [8]float32 // d·scale, scale 8h + i
			for i := range dl {
				dl[i] = d * float32(int8(sc[8*h+i]))
			}
			a, c, hb := ql[64*h:64*h+32], ql[64*h+32:64*h+64], qh[32*h:32*h+32]
			out := dst[128*h : 128*h+128]
			for l := range 32 {
				x, y, z := a[l], c[l], hb[l]
				g := l >> 4
				out[l] = dl[g] * float32(int32(x&0x0f|(z&3)<<4)-32)
				out[l+32] = dl[g+2] * float32(int32(y&0x0f|(z>>2&3)<<4)-32)
				out[l+64] = dl[g+4] * float32(int32(x>>4|(z>>4&3)<<4)-32)
				out[l+96] = dl[g+6] * float32(int32(y>>4|(z>>6)<<4)-32)
			}
		}
	case IQ4_XS:
		d := h16(b)
		for s := range 8 {
			dl := d * float32(IQ4XSScale(s, b))
			out := dst[32*s:]
			for j, q := range b[8+16*s : 8+16*s+16] {
				out[j] = dl * float32(IQ4Values[q&0x0f])
				out[j+16] = dl * float32(IQ4Values[q>>4])
			}
		}
	default:
		panic("kernels: no block decoder for " + t.String())
	}
}

// decodeBlocks decodes len(dst) values of block type t from src, a whole
// block at a time; a last partial block goes through scratch.
func decodeBlocks(dst []float32, t DType, src []byte) {
	bl, bb := t.BlockLen(), t.BlockBytes()
	n := 0
	for ; n+bl <= len(dst); n += bl {
		decodeBlock(dst[n:n+bl], t, src[n/bl*bb:])
	}
	if n < len(dst) {
		var tmp [QKK]float32
		decodeBlock(tmp[:bl], t, src[n/bl*bb:])
		copy(dst[n:], tmp[:])
	}
}

// DecodeFrom decodes len(dst) values of a row of type t stored in row,
// starting at value c0. For a block type the blocks that hold them are
// decoded whole.
func DecodeFrom(dst []float32, t DType, row []byte, c0 int) {
	bl := t.BlockLen()
	if bl == 1 {
		Decode(dst, t, row[c0*t.BlockBytes():])
		return
	}
	b0 := c0 / bl
	if off := c0 - b0*bl; off != 0 {
		var tmp [QKK]float32
		decodeBlock(tmp[:bl], t, row[b0*t.BlockBytes():])
		k := copy(dst, tmp[off:bl])
		dst, b0 = dst[k:], b0+1
	}
	if len(dst) > 0 {
		decodeBlocks(dst, t, row[b0*t.BlockBytes():])
	}
}
