package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func ulpDiff(a, b float32) int64 {
	ia, ib := int64(math.Float32bits(a)), int64(math.Float32bits(b))
	if ia > ib {
		return ia - ib
	}
	return ib - ia
}

func TestExp32(t *testing.T) {
	check := func(x float32) {
		want := float32(math.Exp(float64(x)))
		got := Exp32(x)
		if want == 0 || math.IsInf(float64(want), 0) {
			if got != want && !(want == 0 && got < 1e-44) {
				t.Errorf("Exp32(%g) = %g, want %g", x, got, want)
			}
			return
		}
		if d := ulpDiff(got, want); d > 3 && want >= 1.1754944e-38 {
			t.Errorf("Exp32(%g) = %g, want %g (%d ulp)", x, got, want, d)
		}
		if want < 1.1754944e-38 && math.Abs(float64(got-want)) > 2e-45 {
			t.Errorf("Exp32(%g) = %g, want %g (subnormal)", x, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		check(float32(r.Float64()*200 - 104))
	}
	for _, x := range []float32{0, -0, 1, -1, 88.72, 88.73, -87.3, -103.9, -104, -200, 200, 1e-10, -1e-10} {
		check(x)
	}
	if v := Exp32(float32(math.NaN())); v == v {
		t.Errorf("Exp32(NaN) = %g", v)
	}
}

func BenchmarkExp32(b *testing.B) {
	x := make([]float32, 1024)
	for i := range x {
		x[i] = float32(i)/100 - 5
	}
	var s float32
	for b.Loop() {
		for _, v := range x {
			s += Exp32(v)
		}
	}
	_ = s
}
