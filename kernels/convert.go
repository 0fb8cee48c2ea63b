package kernels

import (
	"encoding/binary"
	"math"
)

// f16Table maps every half-precision bit pattern to its float32 value.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

// F16ToF32 converts an IEEE 754 half-precision value to float32 (exact).
func F16ToF32(h uint16) float32 { return f16Table[h] }

func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf, nan
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: mant · 2^-24
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// F32ToF16 converts a float32 to half precision, rounding to nearest even.
// Values beyond the half range become ±Inf; NaN stays NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rest := mant & (1<<shift - 1)
		v := mant >> shift
		if rest > half || (rest == half && v&1 == 1) {
			v++
		}
		return sign | uint16(v)
	}
	v := uint32(e)<<10 | mant>>13
	rest := mant & 0x1fff
	if rest > 0x1000 || (rest == 0x1000 && v&1 == 1) {
		v++ // may carry into the exponent, which is the correct rounding
	}
	return sign | uint16(v)
}

// BF16ToF32 converts a bfloat16 value to float32 (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts a float32 to bfloat16, rounding to nearest even.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// Decode converts stored values of type t in src to float32 in dst. len(dst)
// values are decoded; src must hold at least that many.
func Decode(dst []float32, t DType, src []byte) {
	switch t {
	case F32:
		copy(dst, BytesF32(src))
	case F16:
		for i := range dst {
			dst[i] = f16Table[binary.LittleEndian.Uint16(src[2*i:])]
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	default:
		if !t.Quantized() {
			panic("kernels: Decode of unknown dtype " + t.String())
		}
		decodeBlocks(dst, t, src)
	}
}

// Encode converts float32 values to type t, appending the stored bytes to
// dst. For the quantized types len(src) must be a multiple of QK. The
// quantizers follow GGUF's reference rounding, so a tensor quantized here
// matches one quantized by other GGUF tools bit for bit.
func Encode(dst []byte, t DType, src []float32) []byte {
	switch t {
	case F32:
		for _, v := range src {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
	case F16:
		for _, v := range src {
			dst = binary.LittleEndian.AppendUint16(dst, F32ToF16(v))
		}
	case BF16:
		for _, v := range src {
			dst = binary.LittleEndian.AppendUint16(dst, F32ToBF16(v))
		}
	case Q8_0:
		if len(src)%QK != 0 {
			panic("kernels: Encode q8_0 of a length not a multiple of 32")
		}
		for b := 0; b < len(src); b += QK {
			dst = appendQ8_0Block(dst, src[b:b+QK])
		}
	case Q4_0:
		if len(src)%QK != 0 {
			panic("kernels: Encode q4_0 of a length not a multiple of 32")
		}
		for b := 0; b < len(src); b += QK {
			dst = appendQ4_0Block(dst, src[b:b+QK])
		}
	default:
		panic("kernels: Encode to " + t.String() + ", which can be read but not written")
	}
	return dst
}

func appendQ8_0Block(dst []byte, x []float32) []byte {
	var amax float32
	for _, v := range x {
		amax = max(amax, abs32(v))
	}
	d := amax / 127
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	dst = binary.LittleEndian.AppendUint16(dst, F32ToF16(d))
	for _, v := range x {
		dst = append(dst, byte(int8(roundHalfAway(v*id))))
	}
	return dst
}

func appendQ4_0Block(dst []byte, x []float32) []byte {
	var amax, vmax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, vmax = a, v
		}
	}
	d := vmax / -8
	id := float32(0)
	if d != 0 {
		id = 1 / d
	}
	dst = binary.LittleEndian.AppendUint16(dst, F32ToF16(d))
	for j := 0; j < QK/2; j++ {
		lo := min(15, int8(x[j]*id+8.5))
		hi := min(15, int8(x[j+QK/2]*id+8.5))
		dst = append(dst, byte(lo)|byte(hi)<<4)
	}
	return dst
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// roundHalfAway rounds to the nearest integer, halves away from zero (C's
// roundf), clamped to the int8 range.
func roundHalfAway(x float32) int32 {
	r := int32(math.Round(float64(x)))
	return max(-128, min(127, r))
}
