package cpu

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// q8kTwinBlocks returns blocks of 256 activations that stress the Q8_K
// rounding: random values of many magnitudes, zeros, equal values, values
// on and beside the halves after scaling, ±large ones, denormals, blocks
// so small that 127/max|x| overflows, and infinities.
func q8kTwinBlocks(r *rand.Rand) [][]float32 {
	var bs [][]float32
	fill := func(f func(i int) float32) {
		b := make([]float32, kernels.QKK)
		for i := range b {
			b[i] = f(i)
		}
		bs = append(bs, b)
	}
	for _, sc := range []float32{1, 1e-3, 1e3, 3e38, 1e-30, 1e-38, 1e-40, 1e-45} {
		for range 8 {
			fill(func(int) float32 { return sc * float32(r.NormFloat64()) })
		}
		fill(func(int) float32 { return sc * (2*r.Float32() - 1) })
	}
	fill(func(int) float32 { return 0 })
	fill(func(i int) float32 { return float32(math.Copysign(0, -1)) })
	for _, v := range []float32{1, -1, 0.5, 3e38, -3e38, 1e-40, math.SmallestNonzeroFloat32} {
		fill(func(int) float32 { return v })
		fill(func(i int) float32 { return v * float32(1-2*(i&1)) })
	}
	// max|x| = 127 puts every integer and half within reach: x·id is x.
	fill(func(i int) float32 {
		if i == 0 {
			return 127
		}
		return float32(i%255-127) / 2
	})
	fill(func(i int) float32 {
		if i == 0 {
			return -127
		}
		v := float32(i%255-127) / 2
		return math.Nextafter32(v, float32(r.IntN(3)-1)*200)
	})
	fill(func(i int) float32 {
		switch i % 5 {
		case 0:
			return 0
		case 1:
			return math.SmallestNonzeroFloat32
		case 2:
			return -1e-39
		}
		return float32(r.NormFloat64()) * 1e-38
	})
	fill(func(i int) float32 {
		switch i {
		case 7:
			return float32(math.Inf(1))
		case 100:
			return float32(math.Inf(-1))
		}
		return float32(r.NormFloat64())
	})
	return bs
}

// TestQ8KRoundTwins checks that the assembly Q8_K rounding gives the
// pure-Go bytes and scale exactly.
func TestQ8KRoundTwins(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 256))
	blocks := q8kTwinBlocks(r)
	want := make([][]byte, len(blocks))
	wd := make([]float32, len(blocks))
	for i, b := range blocks {
		want[i] = make([]byte, kernels.QKK)
		wd[i] = q8kRoundGo(want[i], b)
	}
	ran := false
	forEachISA(t, func(t *testing.T) {
		ran = true
		got := make([]byte, kernels.QKK)
		for i, b := range blocks {
			d := q8kRound(got, b)
			if math.Float32bits(d) != math.Float32bits(wd[i]) {
				t.Fatalf("block %d: scale %v (%#x), Go %v (%#x)", i, d, math.Float32bits(d), wd[i], math.Float32bits(wd[i]))
			}
			if !bytes.Equal(got, want[i]) {
				for j := range got {
					if got[j] != want[i][j] {
						t.Fatalf("block %d: q[%d] = %d from x = %g, Go %d", i, j, int8(got[j]), b[j], int8(want[i][j]))
					}
				}
			}
		}
	})
	if !ran && len(supportedISAs()) > 1 {
		t.Fatal("no assembly code path ran")
	}
}

// BenchmarkQ8KRound reports activations/s of quantizeQ8K on a 128×768
// matrix with the pure-Go rounding and with each code path's.
func BenchmarkQ8KRound(b *testing.B) {
	defer setISA(isa)
	x := quantBenchActivations(128 * 768)
	dst := make([]byte, len(x)/kernels.QKK*q8kBlock)
	for _, name := range supportedISAs() {
		b.Run(name, func(b *testing.B) {
			setISA(name)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				for t := range 128 {
					quantizeQ8K(dst[t*3*q8kBlock:], x[t*768:(t+1)*768])
				}
			}
		})
	}
}
