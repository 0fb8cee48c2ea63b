package allreduce

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// Quantize then Dequantize is within half a step of every block's scale,
// the scale is the block's largest magnitude over the top quantum, and
// EncodedLen is the length of what Quantize makes.
func TestQuantizeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		enc Encoding
		q   float64
	}{{Int8, 127}, {Q4, 7}} {
		for _, n := range []int{0, 1, 2, 63, 64, 65, 127, 200, 1000} {
			src := make([]float32, n)
			for i := range src {
				src[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3)))
			}
			b := Quantize(tc.enc, src)
			if len(b) != EncodedLen(tc.enc, n) {
				t.Fatalf("%s n=%d: %d bytes, EncodedLen says %d", tc.enc, n, len(b), EncodedLen(tc.enc, n))
			}
			dst := make([]float32, n)
			if err := Dequantize(tc.enc, b, dst); err != nil {
				t.Fatal(err)
			}
			at := 0
			for start := 0; start < n; start += BlockSize {
				blk := src[start:min(n, start+BlockSize)]
				var m float64
				for _, v := range blk {
					m = max(m, math.Abs(float64(v)))
				}
				scale := math.Float32frombits(binary.LittleEndian.Uint32(b[at:]))
				if want := float32(m / tc.q); scale != want {
					t.Fatalf("%s n=%d block %d: scale %v, want %v", tc.enc, n, start/BlockSize, scale, want)
				}
				for j, v := range blk {
					d := math.Abs(float64(dst[start+j]) - float64(v))
					if d > float64(scale)/2*1.0001+1e-45 {
						t.Fatalf("%s n=%d element %d: %v decodes to %v (error %v, scale %v)", tc.enc, n, start+j, v, dst[start+j], d, scale)
					}
				}
				at += EncodedLen(tc.enc, len(blk))
			}
		}
	}
	// F32 is exact, NaN bits included.
	src := []float32{0, -0, 1, -2.5, math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.NaN())}
	dst := make([]float32, len(src))
	if err := Dequantize(F32, Quantize(F32, src), dst); err != nil {
		t.Fatal(err)
	}
	for i := range src {
		if math.Float32bits(src[i]) != math.Float32bits(dst[i]) {
			t.Fatalf("f32 element %d: %v became %v", i, src[i], dst[i])
		}
	}
}

// Zeros, the largest float32 and values that are not finite.
func TestQuantizeEdges(t *testing.T) {
	for _, enc := range []Encoding{Int8, Q4} {
		zeros := make([]float32, 100)
		dst := make([]float32, 100)
		for i := range dst {
			dst[i] = 7
		}
		if err := Dequantize(enc, Quantize(enc, zeros), dst); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst {
			if v != 0 {
				t.Fatalf("%s: zero %d decodes to %v", enc, i, v)
			}
		}

		huge := []float32{math.MaxFloat32, -math.MaxFloat32, 1e38, 3}
		if err := Dequantize(enc, Quantize(enc, huge), dst[:4]); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst[:4] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: %v decodes to %v", enc, huge[i], v)
			}
		}
		if dst[0] <= 0 || dst[1] >= 0 {
			t.Fatalf("%s: ±MaxFloat32 decode to %v, %v", enc, dst[0], dst[1])
		}

		// A NaN or an infinity poisons its block (so that a reducer
		// refuses it) and only its block.
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			src := make([]float32, 2*BlockSize)
			for i := range src {
				src[i] = 1
			}
			src[BlockSize+5] = bad
			out := make([]float32, len(src))
			if err := Dequantize(enc, Quantize(enc, src), out); err != nil {
				t.Fatal(err)
			}
			for i, v := range out {
				if nan := math.IsNaN(float64(v)); nan != (i >= BlockSize) {
					t.Fatalf("%s with %v: element %d decodes to %v", enc, bad, i, v)
				}
			}
			r := reduce(enc, Mean, DefaultTrim, DefaultNormFactor, len(src), []input{{member: 0, weight: 1, data: Quantize(enc, src)}})
			if len(r.excluded) != 1 || len(r.included) != 0 {
				t.Fatalf("%s with %v: reduce kept it: %+v", enc, bad, r)
			}
		}
	}
}

// Bytes that are not the encoding of the expected count are refused.
func TestDequantizeErrors(t *testing.T) {
	dst := make([]float32, 10)
	for _, enc := range []Encoding{F32, Int8, Q4} {
		b := Quantize(enc, dst)
		if err := Dequantize(enc, b[:len(b)-1], dst); !errors.Is(err, ErrEncoding) {
			t.Fatalf("%s short: %v", enc, err)
		}
		if err := Dequantize(enc, append(b, 0), dst); !errors.Is(err, ErrEncoding) {
			t.Fatalf("%s long: %v", enc, err)
		}
	}
	if err := Dequantize(Encoding(7), nil, nil); !errors.Is(err, ErrEncoding) {
		t.Fatalf("unknown encoding: %v", err)
	}
}

// The trimmed mean and the weighted mean in member order, on small
// hand-made inputs.
func TestReduce(t *testing.T) {
	in := func(m int, w float64, vs ...float32) input {
		return input{member: m, weight: w, data: Quantize(F32, vs)}
	}
	r := reduce(F32, Mean, DefaultTrim, -1, 2, []input{in(0, 1, 1, 2), in(1, 3, 5, 6)})
	if r.out[0] != 4 || r.out[1] != 5 || r.weight != 4 {
		t.Fatalf("mean: %+v", r)
	}
	// Five members, one far off: trimmed (one at each end) it is gone.
	ins := []input{in(0, 1, 1), in(1, 1, 2), in(2, 1, 3), in(3, 1, 1000), in(4, 1, -1000)}
	r = reduce(F32, TrimmedMean, DefaultTrim, -1, 1, ins)
	if r.out[0] != 2 {
		t.Fatalf("trimmed mean: %v", r.out)
	}
	// Too few to trim: the plain mean.
	r = reduce(F32, TrimmedMean, DefaultTrim, -1, 1, ins[:2])
	if r.out[0] != 1.5 {
		t.Fatalf("trimmed mean of 2: %v", r.out)
	}
	// Bad weight, wrong length.
	r = reduce(F32, Mean, DefaultTrim, -1, 1, []input{in(0, math.Inf(1), 1), in(1, 1, 1, 2), in(2, 2, 7)})
	if len(r.excluded) != 2 || r.out[0] != 7 {
		t.Fatalf("refusals: %+v", r)
	}
	if trimCount(2, 0.2) != 0 || trimCount(3, 0.2) != 1 || trimCount(10, 0.2) != 2 || trimCount(4, 0.45) != 1 {
		t.Fatal("trimCount")
	}
}

func TestDefaultSizes(t *testing.T) {
	for _, tc := range []struct {
		n, k int
		want []int
	}{
		{0, 3, []int{0, 0, 0}},
		{3, 4, []int{3, 0, 0, 0}},
		{200, 2, []int{128, 72}},
		{64 * 7, 3, []int{192, 128, 128}},
	} {
		got := defaultSizes(tc.n, tc.k)
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("defaultSizes(%d, %d) = %v, want %v", tc.n, tc.k, got, tc.want)
			}
		}
	}
}

// Rounding leaves each value within half the spacing of its block, read
// from the block as decoded: the bound error feedback's residual keeps.
func TestSpacingBoundsRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, enc := range []Encoding{Int8, Q4} {
		v := make([]float32, 5*BlockSize+17)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * float32(math.Pow(10, float64(i/BlockSize)-3))
		}
		got := make([]float32, len(v))
		if err := Dequantize(enc, Quantize(enc, v), got); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < len(v); b += BlockSize {
			e := min(b+BlockSize, len(v))
			half := Spacing(enc, got[b:e]) / 2
			if half <= 0 {
				t.Fatalf("%s block %d: spacing %v", enc, b/BlockSize, 2*half)
			}
			for i := b; i < e; i++ {
				if r := math.Abs(float64(v[i] - got[i])); r > half*(1+1e-5) {
					t.Fatalf("%s value %d: rounded by %.3g, more than half the spacing %.3g", enc, i, r, half)
				}
			}
		}
	}
	if Spacing(F32, []float32{1, 2}) != 0 {
		t.Error("f32 has a spacing")
	}
}
