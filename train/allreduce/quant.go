package allreduce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Encoding is how contributions and averaged parts travel. Sums are
// always taken in float64 on the decoded values; only the bytes on the
// wire change.
type Encoding uint8

const (
	// F32 sends raw little-endian float32 values: 4 bytes a value,
	// lossless.
	F32 Encoding = iota
	// Int8 sends blocks of BlockSize values as a float32 scale and one
	// signed byte a value: value = q × scale, q in -127..127 (8.5 bits a
	// value). The scale is the block's largest magnitude over 127.
	Int8
	// Q4 sends blocks of BlockSize values as a float32 scale and one
	// nibble a value, two to a byte (low nibble first): value =
	// (nibble − 8) × scale. The encoder uses -7..7 with the scale the
	// block's largest magnitude over 7 (4.5 bits a value).
	Q4
)

// BlockSize is the number of values under one scale in Int8 and Q4. A
// vector is cut into blocks from its first element on, so the blocks of a
// part are the blocks of the whole vector as long as every part begins at
// a multiple of BlockSize (which the default split guarantees).
const BlockSize = 64

// ErrEncoding is wrapped by every error about bytes that are not a valid
// encoding of the expected number of values.
var ErrEncoding = errors.New("allreduce: bad encoding")

func (e Encoding) String() string {
	switch e {
	case F32:
		return "f32"
	case Int8:
		return "int8"
	case Q4:
		return "q4"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

func (e Encoding) valid() bool { return e <= Q4 }

// Spacing is the step between the values that block, one block of values
// as decoded (at most BlockSize), was quantized on in e: its scale (0 for
// F32, which is exact). Rounding to it leaves each value within half of
// it, which is what error feedback carries to the next round.
func Spacing(e Encoding, block []float32) float64 {
	var m float64
	for _, v := range block {
		m = max(m, math.Abs(float64(v)))
	}
	switch e {
	case Int8:
		return m / 127
	case Q4:
		return m / 7
	}
	return 0
}

// EncodedLen is the number of bytes n values take in encoding e.
func EncodedLen(e Encoding, n int) int {
	full, rem := n/BlockSize, n%BlockSize
	switch e {
	case F32:
		return 4 * n
	case Int8:
		l := full * (4 + BlockSize)
		if rem > 0 {
			l += 4 + rem
		}
		return l
	case Q4:
		l := full * (4 + BlockSize/2)
		if rem > 0 {
			l += 4 + (rem+1)/2
		}
		return l
	}
	panic("allreduce: unknown encoding")
}

// Quantize encodes src in encoding e (EncodedLen(e, len(src)) bytes). F32
// is exact. For Int8 and Q4 a block that holds a NaN or an infinity gets a
// NaN scale, so that it decodes to NaNs and a reducer refuses the
// contribution instead of averaging a cleaned-up copy of it.
//
// Quantization is deterministic: the same values give the same bytes on
// every machine. A caller doing error feedback keeps
// src − Dequantize(Quantize(src)) and adds it to its next vector; the
// bytes a round sends for a part are exactly the part's blocks of
// Quantize over the whole vector.
func Quantize(e Encoding, src []float32) []byte {
	dst := make([]byte, EncodedLen(e, len(src)))
	quantizeInto(e, dst, src)
	return dst
}

// quantizeInto encodes src into dst, EncodedLen(e, len(src)) bytes.
func quantizeInto(e Encoding, dst []byte, src []float32) {
	switch e {
	case F32:
		if nativeLE {
			copy(dst, f32Bytes(src))
			return
		}
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case Int8:
		quantizeInt8(dst, src)
	case Q4:
		quantizeQ4(dst, src)
	default:
		panic("allreduce: unknown encoding")
	}
}

// blockScale is the scale of a block whose values are at most q in
// magnitude after scaling: its largest magnitude over q, or NaN when the
// block holds a value that is not finite.
func blockScale(blk []float32, q float64) float32 {
	var m float32
	for _, v := range blk {
		a := float32(math.Abs(float64(v)))
		if !(a <= math.MaxFloat32) { // NaN or ±Inf
			return float32(math.NaN())
		}
		m = max(m, a)
	}
	s := float32(float64(m) / q)
	// Near the top of the float32 range the rounded scale times q may
	// round past MaxFloat32: step down until the largest quantum decodes
	// to a finite value.
	for math.IsInf(float64(float32(q)*s), 0) {
		s = math.Nextafter32(s, 0)
	}
	return s
}

// quantum is v over scale, rounded to the nearest integer (halves away
// from zero) and clamped to ±lim; 0 when the scale is 0 or not finite.
func quantum(v, scale float32, lim float64) int {
	s := float64(scale)
	if !(s > 0 && s <= math.MaxFloat32) {
		return 0
	}
	q := math.Round(float64(v) / s)
	return int(max(-lim, min(lim, q)))
}

func quantizeInt8(dst []byte, src []float32) {
	for len(src) > 0 {
		blk := src[:min(BlockSize, len(src))]
		scale := blockScale(blk, 127)
		binary.LittleEndian.PutUint32(dst, math.Float32bits(scale))
		for i, v := range blk {
			dst[4+i] = byte(int8(quantum(v, scale, 127)))
		}
		dst, src = dst[4+len(blk):], src[len(blk):]
	}
}

func quantizeQ4(dst []byte, src []float32) {
	for len(src) > 0 {
		blk := src[:min(BlockSize, len(src))]
		scale := blockScale(blk, 7)
		binary.LittleEndian.PutUint32(dst, math.Float32bits(scale))
		nb := (len(blk) + 1) / 2
		for j := range nb {
			lo := byte(quantum(blk[2*j], scale, 7) + 8)
			hi := byte(0)
			if 2*j+1 < len(blk) {
				hi = byte(quantum(blk[2*j+1], scale, 7) + 8)
			}
			dst[4+j] = lo | hi<<4
		}
		dst, src = dst[4+nb:], src[len(blk):]
	}
}

// Dequantize decodes b, which must be exactly EncodedLen(e, len(dst))
// bytes, into dst. Every byte string of the right length decodes; values
// that are not finite (a NaN scale, NaN bits in F32) are the caller's to
// check. Every member that decodes the same bytes gets the same values.
func Dequantize(e Encoding, b []byte, dst []float32) error {
	if !e.valid() {
		return fmt.Errorf("%w: unknown encoding %d", ErrEncoding, uint8(e))
	}
	if want := EncodedLen(e, len(dst)); len(b) != want {
		return fmt.Errorf("%w: %d values of %s take %d bytes, got %d", ErrEncoding, len(dst), e, want, len(b))
	}
	switch e {
	case F32:
		if v, ok := f32View(b); ok {
			copy(dst, v)
			break
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case Int8:
		for len(dst) > 0 {
			blk := dst[:min(BlockSize, len(dst))]
			scale := math.Float32frombits(binary.LittleEndian.Uint32(b))
			for i := range blk {
				blk[i] = float32(int8(b[4+i])) * scale
			}
			b, dst = b[4+len(blk):], dst[len(blk):]
		}
	case Q4:
		for len(dst) > 0 {
			blk := dst[:min(BlockSize, len(dst))]
			scale := math.Float32frombits(binary.LittleEndian.Uint32(b))
			for i := range blk {
				nib := b[4+i/2] >> (4 * (i & 1)) & 0x0f
				blk[i] = float32(int(nib)-8) * scale
			}
			b, dst = b[4+(len(blk)+1)/2:], dst[len(blk):]
		}
	}
	return nil
}

// dequantizeRange decodes count values of a vector of e starting at
// element start, a multiple of BlockSize; count is a multiple of BlockSize
// or runs to the vector's end.
func dequantizeRange(e Encoding, b []byte, start, count int, dst []float32) error {
	off := EncodedLen(e, start)
	return Dequantize(e, b[off:off+EncodedLen(e, count)], dst[:count])
}
