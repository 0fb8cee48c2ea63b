package kernels

import (
	"encoding/binary"
	"testing"
)

// Hand-made blocks: every field set to chosen values, every dequantized
// value checked against the layout as docs/formats.md states it, value by
// value. The scales are 1 (f16 0x3c00), 0.5 (0x3800) and −2 (0xc000), so
// every expected value is exact.

const (
	half1    = 0x3c00
	halfHalf = 0x3800
	halfM2   = 0xc000
)

func put16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }

// nib returns nibble k of the 16-byte run qs (k < 32).
func nib(qs []byte, k int) int {
	if k < 16 {
		return int(qs[k] & 15)
	}
	return int(qs[k-16] >> 4)
}

func checkBlock(t *testing.T, dt DType, blk []byte, want func(i int) float32) {
	t.Helper()
	if len(blk) != dt.BlockBytes() {
		t.Fatalf("%s: block of %d bytes, want %d", dt, len(blk), dt.BlockBytes())
	}
	got := make([]float32, dt.BlockLen())
	Decode(got, dt, blk)
	bad := 0
	for i, g := range got {
		if w := want(i); g != w {
			if bad < 4 {
				t.Errorf("%s: value %d = %v, want %v", dt, i, g, w)
			}
			bad++
		}
	}
	// A row decoded from an offset inside a block gives the same values.
	off := dt.BlockLen()/2 + 5
	part := make([]float32, dt.BlockLen()-off)
	DecodeFrom(part, dt, blk, off)
	for i, g := range part {
		if g != got[off+i] {
			t.Fatalf("%s: DecodeFrom(%d)[%d] = %v, Decode gives %v", dt, off, i, g, got[off+i])
		}
	}
}

// pattern fills b with bytes 37·i + seed, which set every bit somewhere.
func pattern(b []byte, seed int) {
	for i := range b {
		b[i] = byte(37*i + seed)
	}
}

func TestQ4_1Block(t *testing.T) {
	b := make([]byte, 20)
	put16(b, halfHalf)
	put16(b[2:], halfM2)
	pattern(b[4:], 3)
	checkBlock(t, Q4_1, b, func(i int) float32 { return float32(nib(b[4:], i))*0.5 - 2 })
	if b[4] != 3 || b[5] != 40 {
		t.Fatal("pattern")
	}
	// Spelled out: byte 0 of qs is 0x03, so value 0 is 3·0.5 − 2 and value
	// 16 is 0·0.5 − 2.
	got := make([]float32, 32)
	Decode(got, Q4_1, b)
	if got[0] != -0.5 || got[16] != -2 {
		t.Errorf("Q4_1 values 0, 16 = %v, %v; want -0.5, -2", got[0], got[16])
	}
}

func TestQ5Blocks(t *testing.T) {
	b := make([]byte, 22)
	put16(b, halfM2)
	binary.LittleEndian.PutUint32(b[2:], 0xa5c3_0f71)
	pattern(b[6:], 11)
	qh := binary.LittleEndian.Uint32(b[2:])
	q5 := func(qs []byte, i int) int { return nib(qs, i) | int(qh>>i&1)<<4 }
	checkBlock(t, Q5_0, b, func(i int) float32 { return float32(q5(b[6:], i)-16) * -2 })

	b1 := make([]byte, 24)
	put16(b1, halfHalf)
	put16(b1[2:], half1)
	copy(b1[4:], b[2:22])
	checkBlock(t, Q5_1, b1, func(i int) float32 { return float32(q5(b1[8:], i))*0.5 + 1 })
}

func TestIQ4NLBlock(t *testing.T) {
	b := make([]byte, 18)
	put16(b, halfHalf)
	for k := range 16 {
		b[2+k] = byte(k | (15-k)<<4) // values 0..15, then 15..0
	}
	codebook := []float32{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
	checkBlock(t, IQ4_NL, b, func(i int) float32 {
		if i < 16 {
			return 0.5 * codebook[i]
		}
		return 0.5 * codebook[31-i]
	})
}

func TestIQ4XSBlock(t *testing.T) {
	b := make([]byte, 136)
	put16(b, halfHalf)
	// Sub-block scales 32 + (s − 4)·5 (6 bits): 12, 17, 22, 27, 32, 37,
	// 42, 47.
	var ls [8]int
	var sh uint16
	for s := range 8 {
		ls[s] = 32 + (s-4)*5
		b[4+s/2] |= byte(ls[s]&15) << (4 * (s % 2))
		sh |= uint16(ls[s]>>4) << (2 * s)
	}
	put16(b[2:], sh)
	pattern(b[8:], 5)
	checkBlock(t, IQ4_XS, b, func(i int) float32 {
		s := i / 32
		return 0.5 * float32(ls[s]-32) * float32(IQ4Values[nib(b[8+16*s:], i%32)])
	})
}

func TestQ2KBlock(t *testing.T) {
	b := make([]byte, 84)
	for k := range 16 {
		b[k] = byte(k | (15-k)<<4) // scale k, min 15 − k
	}
	pattern(b[16:80], 9)
	put16(b[80:], halfHalf)
	put16(b[82:], halfM2)
	checkBlock(t, Q2_K, b, func(i int) float32 {
		h, j, s, l := i/128, i%128/32, i%32/16, i%16
		q := int(b[16+32*h+16*s+l]>>(2*j)) & 3
		k := 8*h + 2*j + s
		return 0.5*float32(k)*float32(q) - (-2)*float32(15-k)
	})
}

func TestQ3KBlock(t *testing.T) {
	b := make([]byte, 110)
	pattern(b[:32], 1)   // hmask
	pattern(b[32:96], 2) // qs
	var sc [16]int       // 6-bit scales before the −32
	for k := range 16 {
		sc[k] = (k*23 + 5) & 63
		lo, hi := sc[k]&15, sc[k]>>4
		b[96+k%8] |= byte(lo) << (4 * (k / 8))
		b[96+8+k%4] |= byte(hi) << (2 * (k / 4))
	}
	put16(b[108:], halfM2)
	checkBlock(t, Q3_K, b, func(i int) float32 {
		h, j, s, l := i/128, i%128/32, i%32/16, i%16
		q := int(b[32+32*h+16*s+l]>>(2*j)) & 3
		if b[16*s+l]>>(4*h+j)&1 == 0 {
			q -= 4
		}
		return -2 * float32(sc[8*h+2*j+s]-32) * float32(q)
	})
}

// packK4 packs eight 6-bit scales and mins as Q4_K and Q5_K keep them.
func packK4(dst []byte, sc, mn [8]int) {
	for j := range 4 {
		dst[j] = byte(sc[j]&63) | byte(sc[j+4]>>4)<<6
		dst[j+4] = byte(mn[j]&63) | byte(mn[j+4]>>4)<<6
		dst[j+8] = byte(sc[j+4]&15) | byte(mn[j+4]&15)<<4
	}
}

func TestQ4KQ5KBlocks(t *testing.T) {
	sc := [8]int{1, 63, 17, 40, 33, 62, 5, 48}
	mn := [8]int{60, 2, 31, 47, 16, 9, 63, 26}
	b := make([]byte, 144)
	put16(b, halfHalf)
	put16(b[2:], half1)
	packK4(b[4:16], sc, mn)
	pattern(b[16:], 7)
	q4 := func(qs []byte, i int) int {
		c, l := i/64, i%32
		if i%64 < 32 {
			return int(qs[32*c+l] & 15)
		}
		return int(qs[32*c+l] >> 4)
	}
	checkBlock(t, Q4_K, b, func(i int) float32 {
		j := i / 32
		return 0.5*float32(sc[j])*float32(q4(b[16:], i)) - float32(mn[j])
	})

	b5 := make([]byte, 176)
	copy(b5, b[:16])
	pattern(b5[16:48], 13) // qh
	copy(b5[48:], b[16:])
	checkBlock(t, Q5_K, b5, func(i int) float32 {
		j := i / 32
		q := q4(b5[48:], i) + 16*int(b5[16+i%32]>>j&1)
		return 0.5*float32(sc[j])*float32(q) - float32(mn[j])
	})
}

func TestQ6KBlock(t *testing.T) {
	b := make([]byte, 210)
	pattern(b[:128], 3)    // ql
	pattern(b[128:192], 8) // qh
	for k := range 16 {
		b[192+k] = byte(k*17 - 120) // int8 scales: −120, −103, …, 127, −121
	}
	put16(b[208:], halfM2)
	checkBlock(t, Q6_K, b, func(i int) float32 {
		h, k, l := i/128, i%128/32, i%32
		lo := b[64*h+l+32*(k%2)]
		if k >= 2 {
			lo >>= 4
		}
		q := int(lo&15|(b[128+32*h+l]>>(2*k)&3)<<4) - 32
		sc := int8(b[192+8*h+l/16+2*k])
		return -2 * float32(sc) * float32(q)
	})
}

// TestBlockTypes checks the sizes of the block types against GGUF's.
func TestBlockTypes(t *testing.T) {
	for _, c := range []struct {
		dt      DType
		len, sz int
		name    string
	}{
		{Q4_1, 32, 20, "q4_1"}, {Q5_0, 32, 22, "q5_0"}, {Q5_1, 32, 24, "q5_1"}, {IQ4_NL, 32, 18, "iq4_nl"},
		{Q2_K, 256, 84, "q2_k"}, {Q3_K, 256, 110, "q3_k"}, {Q4_K, 256, 144, "q4_k"},
		{Q5_K, 256, 176, "q5_k"}, {Q6_K, 256, 210, "q6_k"}, {IQ4_XS, 256, 136, "iq4_xs"},
	} {
		if c.dt.BlockLen() != c.len || c.dt.BlockBytes() != c.sz || c.dt.String() != c.name || !c.dt.Quantized() || c.dt.Encodable() {
			t.Errorf("%s: block %d values in %d bytes, quantized %v, encodable %v", c.dt, c.dt.BlockLen(), c.dt.BlockBytes(), c.dt.Quantized(), c.dt.Encodable())
		}
		if d, err := DTypeNamed(c.name); err != nil || d != c.dt {
			t.Errorf("DTypeNamed(%q) = %v, %v", c.name, d, err)
		}
		if _, err := ParseDType(c.name); err == nil {
			t.Errorf("ParseDType(%q): no error for a type that cannot be written", c.name)
		}
	}
}
