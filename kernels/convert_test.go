package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestF32ToF16Rounding checks F32ToF16 against its definition: the half
// nearest to x, ties to the even one, ±Inf from 65520 on (the midpoint
// between the largest half and 2¹⁶). The inputs are every half, the
// midpoints between neighbouring halves and the float32 values next to
// them, and random float32 values of every exponent.
func TestF32ToF16Rounding(t *testing.T) {
	check := func(x float32) {
		t.Helper()
		h := F32ToF16(x)
		if want := nearestF16(x); h != want {
			t.Fatalf("F32ToF16(%v = %#08x) = %#04x, want %#04x", x, math.Float32bits(x), h, want)
		}
	}
	for h := 0; h < 1<<16; h++ {
		a := F16ToF32(uint16(h))
		if math.IsInf(float64(a), 0) || math.IsNaN(float64(a)) || h&0x7fff == 0x7bff {
			continue
		}
		check(a)
		b := F16ToF32(uint16(h + 1)) // the next half away from zero
		mid := float32((float64(a) + float64(b)) / 2)
		check(mid)
		check(math.Nextafter32(mid, 0))
		check(math.Nextafter32(mid, float32(math.Inf(1))))
		check(math.Nextafter32(mid, float32(math.Inf(-1))))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		x := math.Float32frombits(r.Uint32())
		if !math.IsNaN(float64(x)) {
			check(x)
		}
	}
	for _, x := range []float32{65504, 65519.996, 65520, 1e6, float32(math.Inf(1))} {
		check(x)
		check(-x)
	}
	if h := F32ToF16(float32(math.NaN())); F16ToF32(h) == F16ToF32(h) {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
}

// nearestF16 is the round-to-nearest-even half of a non-NaN x, found by
// comparing the distances to the halves around it in float64.
func nearestF16(x float32) uint16 {
	sign := uint16(0)
	ax := math.Abs(float64(x))
	if math.Signbit(float64(x)) {
		sign = 0x8000
	}
	if ax >= 65520 {
		return sign | 0x7c00
	}
	// The largest half magnitude ≤ ax, by bisection over the ordered
	// bit patterns 0..0x7bff.
	lo, hi := 0, 0x7bff
	for lo < hi {
		m := (lo + hi + 1) / 2
		if float64(F16ToF32(uint16(m))) <= ax {
			lo = m
		} else {
			hi = m - 1
		}
	}
	below := float64(F16ToF32(uint16(lo)))
	if below == ax {
		return sign | uint16(lo)
	}
	above := float64(F16ToF32(uint16(lo + 1))) // 0x7c00 is +Inf: handled above
	switch d1, d2 := ax-below, above-ax; {
	case d1 < d2:
		return sign | uint16(lo)
	case d2 < d1:
		return sign | uint16(lo+1)
	case lo&1 == 0:
		return sign | uint16(lo)
	}
	return sign | uint16(lo+1)
}
