package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// u is the unit roundoff of float32.
const u = 1.0 / (1 << 24)

// guard is the number of NaN-filled values on each side of every output.
const guard = 19

// Sizes the suite covers: few are multiples of 8 or 32, so vector tails run.
var (
	floatRows = []int{1, 3, 7, 13, 33, 65}
	floatCols = []int{1, 3, 17, 63, 95, 257}
	// Quantized: 1, 2, 3 and 9 blocks, 4 (one whole group of four, as the
	// Q4_0 decode kernel takes them) and 7 (a group and three more).
	quantCols = []int{32, 64, 96, 128, 224, 288}
	// Super-blocks of 256: one, two and three.
	kCols  = []int{256, 512, 768}
	tokens = []int{1, 2, 5, 13, 37}
)

// The weight types of the suite: those values can be encoded to, and the
// block types that are only read (made of random blocks, randMatrix).
var (
	encodedTypes = []kernels.DType{kernels.F32, kernels.F16, kernels.BF16, kernels.Q8_0, kernels.Q4_0}
	readTypes    = []kernels.DType{kernels.Q4_1, kernels.Q5_0, kernels.Q5_1, kernels.Q2_K, kernels.Q3_K,
		kernels.Q4_K, kernels.Q5_K, kernels.Q6_K, kernels.IQ4_NL, kernels.IQ4_XS}
	matMulTypes = append(slices.Clone(encodedTypes), readTypes...)
)

// TestBackend runs every method of b on random inputs of awkward sizes and
// compares the results with the float64 references, within tolerances
// derived from float32 rounding (and, for Q8_0, Q4_0 and Q2_K–Q6_K
// weights, from the quantization of the activations to 8 bits). Every
// output lies between NaN-filled guard bands that must stay untouched. A
// backend that also implements kernels.Trainer runs TestTrainer too.
func TestBackend(t *testing.T, b kernels.Backend) {
	t.Run("MatMul", func(t *testing.T) { testMatMul(t, b) })
	t.Run("MatMulLarge", func(t *testing.T) { testMatMulLarge(t, b) })
	t.Run("MatMulMany", func(t *testing.T) { testMatMulMany(t, b) })
	t.Run("RMSNorm", func(t *testing.T) { testRMSNorm(t, b) })
	t.Run("RoPE", func(t *testing.T) { testRoPE(t, b) })
	t.Run("Attention", func(t *testing.T) { testAttention(t, b) })
	t.Run("Attention16", func(t *testing.T) { testAttention16(t, b) })
	t.Run("SwiGLU", func(t *testing.T) { testSwiGLU(t, b) })
	t.Run("Add", func(t *testing.T) { testAdd(t, b) })
	if tr, ok := b.(kernels.Trainer); ok {
		t.Run("Trainer", func(t *testing.T) { TestTrainer(t, tr) })
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6d7963656c)) }

// randF32 returns n values uniform in [-scale, scale).
func randF32(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (2*r.Float32() - 1) * scale
	}
	return s
}

// guarded returns a slice of n values (capacity n) inside a NaN-filled
// buffer, filled with init if it is not nil.
func guarded(n int, init []float32) (buf, s []float32) {
	buf = make([]float32, n+2*guard)
	for i := range buf {
		buf[i] = float32(math.NaN())
	}
	s = buf[guard : guard+n : guard+n]
	if init != nil {
		copy(s, init)
	}
	return buf, s
}

// checkGuards fails t if a value around the n-value slice of buf changed.
func checkGuards(t *testing.T, what string, buf []float32, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < guard || i >= guard+n) && !math.IsNaN(float64(v)) {
			t.Errorf("%s: wrote %v at guard offset %d (output has %d values)", what, v, i-guard, n)
			return
		}
	}
}

// compare fails t at the first value with |got-want| > tol(i).
func compare(t *testing.T, what string, got []float32, want []float64, tol func(i int) float64) {
	t.Helper()
	bad := 0
	for i, w := range want {
		g := float64(got[i])
		if d := math.Abs(g - w); !(d <= tol(i)) {
			if bad < 3 {
				t.Errorf("%s: [%d] = %v, want %v (error %.3g > tolerance %.3g)", what, i, g, w, d, tol(i))
			}
			bad++
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d of %d values out of tolerance", what, bad, len(want))
	}
}

// randMatrix makes a rows×cols matrix of type dt: values in [-1, 1)
// encoded, or random blocks of a type that is only read (randBlocks).
func randMatrix(r *rand.Rand, dt kernels.DType, rows, cols int) *kernels.Matrix {
	var data []byte
	if dt.Encodable() {
		data = kernels.Encode(nil, dt, randF32(r, rows*cols, 1))
	} else {
		data = randBlocks(r, dt, rows*cols/dt.BlockLen())
	}
	m, err := kernels.NewMatrix(dt, rows, cols, data)
	if err != nil {
		panic(err)
	}
	return m
}

// matMulTolerance bounds the error of out[t·Rows+r]. Float weights: the
// error of a float32 sum of cols products, (cols+4)·u·Σ|w·x|. Quantized
// weights: the activations are rounded to Q8_0, each value by at most
// amax/254 of its block plus the f16 rounding of the block scale,
// amax·2⁻¹¹; that error is weighted by |w|.
// randBlocks makes nb blocks of type dt of random bytes, except the f16
// scales, which are random in ±[2⁻¹⁰, 2⁻⁶) so that the values stay finite
// and of order one.
func randBlocks(r *rand.Rand, dt kernels.DType, nb int) []byte {
	offs := kernels.HalfOffsets(dt)
	if offs == nil {
		panic("kerneltest: no random blocks of " + dt.String())
	}
	bs := dt.BlockBytes()
	data := make([]byte, nb*bs)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for b := 0; b < nb; b++ {
		for _, o := range offs {
			v := float32(math.Ldexp(1+r.Float64(), -10+r.IntN(4)))
			if r.IntN(2) == 0 {
				v = -v
			}
			h := kernels.F32ToF16(v)
			data[b*bs+o], data[b*bs+o+1] = byte(h), byte(h>>8)
		}
	}
	return data
}

func matMulTolerance(w *kernels.Matrix, x []float32, n int, abs []float64) func(i int) float64 {
	floatTol := func(i int) float64 { return float64(w.Cols+4)*u*abs[i] + 1e-30 }
	// The activations of Q8_0 and Q4_0 weights are rounded to Q8_0, those
	// of Q2_K–Q6_K to 8 bits in blocks of 256 with a
	// float32 scale (no f16 rounding); the other read-only block types
	// multiply float activations.
	bl, scaleErr := kernels.QK, 1.0/2048
	switch w.Type {
	case kernels.Q2_K, kernels.Q3_K, kernels.Q4_K, kernels.Q5_K, kernels.Q6_K:
		bl, scaleErr = kernels.QKK, 0
	default:
		if !w.Type.Quantized() || !w.Type.Encodable() {
			return floatTol
		}
	}
	// q[t·Rows+r] = Σ_b amax(x[t], b) · Σ_{c in b} |w[r,c]|
	q := make([]float64, n*w.Rows)
	row := make([]float32, w.Cols)
	nb := w.Cols / bl
	for r := 0; r < w.Rows; r++ {
		w.RowF32(row, r)
		for t := 0; t < n; t++ {
			var s float64
			for b := 0; b < nb; b++ {
				var amax, wsum float64
				for c := b * bl; c < (b+1)*bl; c++ {
					amax = math.Max(amax, math.Abs(float64(x[t*w.Cols+c])))
					wsum += math.Abs(float64(row[c]))
				}
				s += amax * wsum
			}
			q[t*w.Rows+r] = s
		}
	}
	return func(i int) float64 { return floatTol(i) + q[i]*(1.0/254+scaleErr)*1.01 }
}

func checkMatMul(t *testing.T, b kernels.Backend, r *rand.Rand, dt kernels.DType, rows, cols, n int) {
	t.Helper()
	w := randMatrix(r, dt, rows, cols)
	x := randF32(r, n*cols, 1)
	x0 := slices.Clone(x)
	buf, out := guarded(n*rows, nil)
	b.MatMul(out, w, x, n)
	what := fmt.Sprintf("%s %dx%d, n=%d", dt, rows, cols, n)
	checkGuards(t, what, buf, n*rows)
	if !slices.Equal(x, x0) {
		t.Errorf("%s: MatMul changed x", what)
	}
	want, abs := matMulAbs(w, x, n)
	compare(t, what, out, want, matMulTolerance(w, x, n, abs))
}

func testMatMul(t *testing.T, b kernels.Backend) {
	r := newRand(1)
	for _, dt := range matMulTypes {
		cols := floatCols
		switch dt.BlockLen() {
		case kernels.QK:
			cols = quantCols
		case kernels.QKK:
			cols = kCols
		}
		for _, rows := range floatRows {
			for _, c := range cols {
				for _, n := range tokens {
					checkMatMul(t, b, r, dt, rows, c, n)
				}
			}
		}
	}
}

// testMatMulMany checks that several products of one input in one call give
// what separate MatMul calls give, for mixed weight types and row counts,
// with guard bands around every output, and each within MatMul's
// tolerance of the float64 product (one token, a few, and a prompt's
// worth). The results may differ in the last bits: which rows a kernel
// takes four at a time depends on how the rows are split over the
// workers.
func testMatMulMany(t *testing.T, b kernels.Backend) {
	r := newRand(11)
	for _, cols := range []int{32, 96, 288, 512} {
		for _, n := range []int{1, 3, 13} {
			ws := []*kernels.Matrix{
				randMatrix(r, kernels.Q8_0, 37, cols),
				randMatrix(r, kernels.F32, 5, cols),
				randMatrix(r, kernels.Q4_0, 64, cols),
				randMatrix(r, kernels.F16, 1, cols),
				randMatrix(r, kernels.Q8_0, 130, cols),
			}
			if cols%kernels.QKK == 0 {
				ws = append(ws, randMatrix(r, kernels.Q4_K, 33, cols), randMatrix(r, kernels.Q6_K, 7, cols),
					randMatrix(r, kernels.Q2_K, 19, cols), randMatrix(r, kernels.Q3_K, 40, cols))
			}
			x := randF32(r, n*cols, 1)
			outs := make([][]float32, len(ws))
			bufs := make([][]float32, len(ws))
			for i, w := range ws {
				bufs[i], outs[i] = guarded(n*w.Rows, nil)
			}
			b.MatMulMany(outs, ws, x, n)
			for i, w := range ws {
				what := fmt.Sprintf("MatMulMany cols=%d n=%d matrix %d (%s %dx%d)", cols, n, i, w.Type, w.Rows, w.Cols)
				checkGuards(t, what, bufs[i], n*w.Rows)
				want := make([]float32, n*w.Rows)
				b.MatMul(want, w, x, n)
				var scale float64
				for _, v := range want {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				want64 := make([]float64, len(want))
				for j, v := range want {
					want64[j] = float64(v)
				}
				compare(t, what, outs[i], want64, func(int) float64 { return 1e-5 * scale })
				ref, abs := matMulAbs(w, x, n)
				compare(t, what+" against float64", outs[i], ref, matMulTolerance(w, x, n, abs))
			}
		}
	}
}

// testMatMulLarge covers shapes past the cache blocking of a GEMM: depth
// beyond a few hundred, many row panels, partial tiles on every side.
func testMatMulLarge(t *testing.T, b kernels.Backend) {
	if testing.Short() {
		t.Skip("short")
	}
	r := newRand(2)
	for _, dt := range encodedTypes {
		checkMatMul(t, b, r, dt, 333, 608, 71)
		checkMatMul(t, b, r, dt, 1000, 1056, 3)
		checkMatMul(t, b, r, dt, 131, 2080, 29)
	}
	for _, dt := range readTypes {
		checkMatMul(t, b, r, dt, 333, 768, 71)
		checkMatMul(t, b, r, dt, 1000, 1024, 3)
		checkMatMul(t, b, r, dt, 131, 2048, 29)
	}
}

func testRMSNorm(t *testing.T, b kernels.Backend) {
	r := newRand(3)
	for _, d := range []int{1, 3, 17, 64, 95, 257, 768} {
		for _, rows := range []int{1, 3} {
			x := randF32(r, rows*d, 3)
			w := randF32(r, d, 2)
			want := RMSNorm(x, w, 1e-5)
			tol := func(i int) float64 { return float64(d+16)*u*math.Abs(want[i]) + 1e-30 }
			what := fmt.Sprintf("d=%d rows=%d", d, rows)

			buf, out := guarded(rows*d, nil)
			b.RMSNorm(out, x, w, 1e-5)
			checkGuards(t, what, buf, rows*d)
			compare(t, what, out, want, tol)

			buf, inplace := guarded(rows*d, x)
			b.RMSNorm(inplace, inplace, w, 1e-5)
			checkGuards(t, what+" in place", buf, rows*d)
			compare(t, what+" in place", inplace, want, tol)
		}
	}
}

func testRoPE(t *testing.T, b kernels.Backend) {
	r := newRand(4)
	for _, style := range []kernels.RopeStyle{kernels.RopeAdjacent, kernels.RopeNeoX} {
		for _, c := range []struct{ heads, hd, pos0, rows int }{
			{1, 2, 0, 1}, {3, 6, 7, 2}, {4, 64, 0, 5}, {2, 34, 1000, 3}, {5, 128, 31, 1},
		} {
			p := kernels.RopeParams{Heads: c.heads, HeadDim: c.hd, Pos0: c.pos0, Theta: 10000, Style: style}
			if c.hd == 128 {
				p.Theta = 1e6
			}
			n := c.rows * c.heads * c.hd
			x := randF32(r, n, 2)
			want := RoPE(x, p)
			buf, s := guarded(n, x)
			b.RoPE(s, p)
			what := fmt.Sprintf("%s %+v", style, c)
			checkGuards(t, what, buf, n)
			// The angle is rounded once to float32 sine and cosine.
			compare(t, what, s, want, func(i int) float64 { return 8 * u * 4 })
		}
	}
}

// attnCases are the shapes the attention tests cover: head sizes and
// context lengths on both sides of the kernels' block sizes.
var attnCases = []kernels.AttnParams{
	{Heads: 1, KVHeads: 1, HeadDim: 1, Pos0: 0, N: 1},
	{Heads: 4, KVHeads: 2, HeadDim: 8, Pos0: 0, N: 3},
	{Heads: 6, KVHeads: 2, HeadDim: 17, Pos0: 5, N: 1},
	{Heads: 4, KVHeads: 1, HeadDim: 64, Pos0: 9, N: 7},
	{Heads: 8, KVHeads: 8, HeadDim: 48, Pos0: 40, N: 2},
	{Heads: 2, KVHeads: 2, HeadDim: 33, Pos0: 0, N: 30},
	{Heads: 3, KVHeads: 1, HeadDim: 80, Pos0: 61, N: 5},
	{Heads: 12, KVHeads: 12, HeadDim: 64, Pos0: 300, N: 1},
}

// attnTolerance bounds the error of an attention output over ctx
// positions, keys in [-2, 2] and values in [-1, 1]. A score is off by
// about HeadDim·u·Σ|q·k|·Scale ≤ HeadDim·u·4·√HeadDim; the weights
// inherit that relative error, and the output, a convex combination of
// the values, the sum of both.
func attnTolerance(p kernels.AttnParams, ctx int) float64 {
	hd := float64(p.HeadDim)
	return (hd*4*math.Sqrt(hd)+float64(ctx)+16)*u*2 + 1e-7
}

func testAttention(t *testing.T, b kernels.Backend) {
	r := newRand(5)
	nan := float32(math.NaN())
	for _, c := range attnCases {
		c.Scale = float32(1 / math.Sqrt(float64(c.HeadDim)))
		qw, kw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		ctx := c.Pos0 + c.N
		c.Cap = ctx + 3 // spare positions past the context
		what := fmt.Sprintf("%+v", c)
		q := randF32(r, c.N*qw, 2)
		k := randF32(r, ctx*kw, 2)
		v := randF32(r, ctx*kw, 1)

		// Store the keys and values in two calls, as a prefill and the
		// steps after it would, into NaN-filled caches: every position
		// must land where the layout says, and nothing else may change.
		kc, vc := KVLayout(nil, nil, c, nan)
		early, late := c, c
		early.Pos0, early.N = 0, c.Pos0
		late.Pos0 = c.Pos0
		b.StoreKV(kc, vc, k[:c.Pos0*kw], v[:c.Pos0*kw], early)
		b.StoreKV(kc, vc, k[c.Pos0*kw:], v[c.Pos0*kw:], late)
		wantK, wantV := KVLayout(k, v, c, nan)
		for i := range kc {
			if math.Float32bits(kc[i]) != math.Float32bits(wantK[i]) || math.Float32bits(vc[i]) != math.Float32bits(wantV[i]) {
				t.Errorf("%s: StoreKV: cache value %d is k %v v %v, want k %v v %v", what, i, kc[i], vc[i], wantK[i], wantV[i])
				break
			}
		}

		q0, kc0, vc0 := slices.Clone(q), slices.Clone(kc), slices.Clone(vc)
		want := Attention(q, k, v, c)
		buf, out := guarded(c.N*qw, nil)
		b.Attention(out, q, kc, vc, c)
		checkGuards(t, what, buf, c.N*qw)
		if !slices.Equal(q, q0) || !bitsEqual(kc, kc0) || !bitsEqual(vc, vc0) {
			t.Errorf("%s: Attention changed its inputs", what)
		}
		tol := attnTolerance(c, ctx)
		compare(t, what, out, want, func(int) float64 { return tol })
	}
}

// nan16 fills the unused parts of half-precision caches: a NaN that no
// rounding produces, so that a stray write shows and a stray read
// poisons the result.
const nan16 = 0x7d5a

// testAttention16 checks StoreKV16 and Attention16: every stored value
// must be the round-to-nearest-even half of the input, at the place the
// layout says, with the spare positions and the guard bands around both
// caches untouched; the output must match the float64 reference over the
// rounded keys and values within Attention's tolerance.
func testAttention16(t *testing.T, b kernels.Backend) {
	r := newRand(8)
	nan := float32(math.NaN())
	for _, c := range attnCases {
		c.Scale = float32(1 / math.Sqrt(float64(c.HeadDim)))
		qw, kw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		ctx := c.Pos0 + c.N
		c.Cap = ctx + 3
		what := fmt.Sprintf("%+v", c)
		q := randF32(r, c.N*qw, 2)
		k := randF32(r, ctx*kw, 2)
		v := randF32(r, ctx*kw, 1)
		// Some values exactly halfway between two halves: ties go to
		// the even one.
		for i := 0; i < len(k); i += 7 {
			k[i] = tie16(k[i])
			v[i] = tie16(v[i])
		}

		size := c.KVSize()
		kbuf, kc := guarded16(size)
		vbuf, vc := guarded16(size)
		early, late := c, c
		early.Pos0, early.N = 0, c.Pos0
		late.Pos0 = c.Pos0
		b.StoreKV16(kc, vc, k[:c.Pos0*kw], v[:c.Pos0*kw], early)
		b.StoreKV16(kc, vc, k[c.Pos0*kw:], v[c.Pos0*kw:], late)
		checkGuards16(t, what+": StoreKV16 keys", kbuf, size)
		checkGuards16(t, what+": StoreKV16 values", vbuf, size)
		wantK, wantV := KVLayout(k, v, c, nan)
		for i := range kc {
			if kc[i] != want16(wantK[i]) || vc[i] != want16(wantV[i]) {
				t.Errorf("%s: StoreKV16: cache value %d is k %#04x v %#04x, want k %#04x v %#04x",
					what, i, kc[i], vc[i], want16(wantK[i]), want16(wantV[i]))
				break
			}
		}

		q0, kc0, vc0 := slices.Clone(q), slices.Clone(kc), slices.Clone(vc)
		want := Attention(q, round16(k), round16(v), c)
		buf, out := guarded(c.N*qw, nil)
		b.Attention16(out, q, kc, vc, c)
		checkGuards(t, what, buf, c.N*qw)
		if !slices.Equal(q, q0) || !slices.Equal(kc, kc0) || !slices.Equal(vc, vc0) {
			t.Errorf("%s: Attention16 changed its inputs", what)
		}
		tol := attnTolerance(c, ctx)
		compare(t, what, out, want, func(int) float64 { return tol })
	}
}

// tie16 moves x to the midpoint between the half below it and the next.
func tie16(x float32) float32 {
	h := kernels.F32ToF16(x)
	a, b := float64(kernels.F16ToF32(h)), float64(kernels.F16ToF32(h+1))
	return float32((a + b) / 2)
}

// want16 is the cache value StoreKV16 must leave for a KVLayout entry: the
// rounded half, or the fill where nothing was stored.
func want16(x float32) uint16 {
	if math.IsNaN(float64(x)) {
		return nan16
	}
	return kernels.F32ToF16(x)
}

// round16 returns x rounded to half precision and widened back.
func round16(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = kernels.F16ToF32(kernels.F32ToF16(v))
	}
	return out
}

// guarded16 is guarded for a half-precision buffer filled with nan16.
func guarded16(n int) (buf, s []uint16) {
	buf = make([]uint16, n+2*guard)
	for i := range buf {
		buf[i] = nan16
	}
	return buf, buf[guard : guard+n : guard+n]
}

func checkGuards16(t *testing.T, what string, buf []uint16, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < guard || i >= guard+n) && v != nan16 {
			t.Errorf("%s: wrote %#04x at guard offset %d (buffer has %d values)", what, v, i-guard, n)
			return
		}
	}
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func testSwiGLU(t *testing.T, b kernels.Backend) {
	r := newRand(6)
	for _, n := range []int{1, 7, 33, 257, 2048} {
		g := randF32(r, n, 12)
		up := randF32(r, n, 3)
		want := SwiGLU(g, up)
		tol := func(i int) float64 { return 4e-6*math.Abs(want[i]) + 1e-30 }
		buf, out := guarded(n, nil)
		b.SwiGLU(out, g, up)
		what := fmt.Sprintf("n=%d", n)
		checkGuards(t, what, buf, n)
		compare(t, what, out, want, tol)

		buf, inplace := guarded(n, g)
		b.SwiGLU(inplace, inplace, up)
		checkGuards(t, what+" in place", buf, n)
		compare(t, what+" in place", inplace, want, tol)
	}
}

func testAdd(t *testing.T, b kernels.Backend) {
	r := newRand(7)
	for _, n := range []int{1, 7, 33, 257, 768} {
		dst := randF32(r, n, 5)
		src := randF32(r, n, 5)
		want := Add(dst, src)
		buf, s := guarded(n, dst)
		b.Add(s, src)
		what := fmt.Sprintf("n=%d", n)
		checkGuards(t, what, buf, n)
		// One rounding of an exact sum.
		compare(t, what, s, want, func(i int) float64 { return u * math.Abs(want[i]) })
	}
}
