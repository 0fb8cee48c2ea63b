// Package cpu is the CPU implementation of kernels.Backend and of
// kernels.Trainer (train.go: the backward products on the same GEMM
// micro-kernels, gemm_train.go).
//
// Hot loops have an assembly version for amd64 (AVX-512 and AVX2+FMA),
// chosen at run time from the CPU's features (dispatch.go), and a pure-Go
// twin that passes the same tests; the build tag noasm forces the twin and
// MYCEL_ISA=avx2|go forces a lower path. MatMul with one row of activations
// (decode) is a matrix-vector product bound by memory bandwidth; with
// several rows (prefill) it is a packed, cache-blocked GEMM (gemm.go). Work
// is split over a pool of goroutines sized to GOMAXPROCS (pool.go); work too
// small to share runs on the caller.
package cpu

import (
	"fmt"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

func init() {
	kernels.Register("cpu", func(threads int) (kernels.Backend, error) { return New(threads), nil })
}

// Backend runs kernels on the CPU.
type Backend struct {
	pool *pool

	// Preallocated tasks: handing these to the pool allocates nothing.
	mm   matmulTask
	many manyTask
	attn attnTask
	gm   gemmTask
	qg   qgemmTask

	// Scratch, grown on demand and kept.
	xq      []byte           // activations quantized to Q8_0
	xp      []byte           // xq prepared for the Q4_0 decode kernel
	xk      []byte           // activations quantized for the K-quant kernels (64-byte aligned)
	xg      []byte           // xq prepared for the Q8_0 prefill kernel or the quantized GEMM (64-byte aligned)
	qgX     [][]byte         // per worker: quantized GEMM, a group of tokens in Q8_0
	qgP     [][]byte         // per worker: quantized GEMM, a panel of weights (64-byte aligned)
	qgO     [][qgRows]int32  // per worker: quantized GEMM, the rows of a panel
	qgHeld  []qgHeld         // per worker: the panel qgP holds
	kqMins  []float32        // quantized GEMM of Q2_K–Q5_K: the rows' mins
	kqSums  []float32        // quantized GEMM of Q2_K–Q5_K: the tokens' sums of 16 or 32
	kqCorr  []float32        // quantized GEMM of Q2_K–Q5_K: the mins' part
	narrow  [][]float32      // per worker: a tile of quantized outputs (runQuantNarrow)
	narrowW []kernels.Matrix // per worker: the rows of that tile
	scores  [][]float32      // per worker: attention scores
	packA   []float32        // GEMM: x in panels
	packB   [][]float32      // per worker: GEMM W panels
	tile    [][]float32      // per worker: GEMM edge tile
	rope    ropeCache
	half    [64]uint16 // StoreKV16: a piece of a key row, rounded
	tr      trainScratch

	// kqgReuse: xg and kqSums hold this product's activations, prepared
	// for the matrix before (MatMulMany).
	kqgReuse bool
}

var _ kernels.Backend = (*Backend)(nil)

// New makes a CPU backend with the given number of threads (0: GOMAXPROCS).
func New(threads int) *Backend {
	b := &Backend{pool: newPool(threads)}
	b.scores = make([][]float32, b.pool.threads)
	b.packB = make([][]float32, b.pool.threads)
	b.tile = make([][]float32, b.pool.threads)
	return b
}

// Name reports "cpu/" and the instruction set the kernels use.
func (b *Backend) Name() string { return "cpu/" + isaName() }

// Threads is the number of workers, the caller included.
func (b *Backend) Threads() int { return b.pool.threads }

// Close stops the workers.
func (b *Backend) Close() error {
	b.pool.close()
	return nil
}

// RMSNorm normalizes each row of x by its root mean square and scales it by
// weight.
func (b *Backend) RMSNorm(out, x, weight []float32, eps float32) {
	d := len(weight)
	if d == 0 || len(x)%d != 0 || len(out) < len(x) {
		panic(fmt.Sprintf("cpu: RMSNorm of %d values with a weight of %d into %d", len(x), d, len(out)))
	}
	for r := 0; r < len(x); r += d {
		row := x[r : r+d]
		ss := sumSquares(row)
		inv := float32(1 / math.Sqrt(float64(ss)/float64(d)+float64(eps)))
		scaleMul(out[r:r+d], row, weight, inv)
	}
}

// RoPE applies the rotary position embedding in place.
func (b *Backend) RoPE(x []float32, p kernels.RopeParams) {
	w := p.Heads * p.HeadDim
	if w == 0 || len(x)%w != 0 || p.HeadDim%2 != 0 {
		panic(fmt.Sprintf("cpu: RoPE of %d values, %d heads of %d", len(x), p.Heads, p.HeadDim))
	}
	half := p.HeadDim / 2
	rows := len(x) / w
	table := b.rope.at(p, rows)
	for t := 0; t < rows; t++ {
		cs := table[t*p.HeadDim : (t+1)*p.HeadDim]
		row := x[t*w : (t+1)*w]
		for i := 0; i < half; i++ {
			fc, fs := cs[2*i], cs[2*i+1]
			for h := 0; h < p.Heads; h++ {
				head := row[h*p.HeadDim : (h+1)*p.HeadDim]
				var a, bi int
				if p.Style == kernels.RopeNeoX {
					a, bi = i, i+half
				} else {
					a, bi = 2*i, 2*i+1
				}
				x0, x1 := head[a], head[bi]
				head[a] = x0*fc - x1*fs
				head[bi] = x0*fs + x1*fc
			}
		}
	}
}

// ropeCache keeps the rotary frequencies of one (theta, head size) and the
// cosines and sines of the last range of positions asked for: decode
// rotates the queries and then the keys of one position, layer after
// layer, a prompt or a batch of training sequences those of the same
// positions.
type ropeCache struct {
	theta   float32
	hd      int
	factors []float32 // RopeParams.FreqFactors of freqs
	freqs   []float64
	pos     int       // the first position in cs
	n       int       // the positions in cs
	cs      []float32 // cos, sin of (pos+t)·freqs[i], interleaved, hd values a position
}

// at returns the cosines and sines of n positions from p.Pos0,
// interleaved, p.HeadDim values a position.
func (c *ropeCache) at(p kernels.RopeParams, n int) []float32 {
	theta, hd, pos := p.Theta, p.HeadDim, p.Pos0
	half := hd / 2
	if c.theta != theta || c.hd != hd || c.freqs == nil || !sameSlice(c.factors, p.FreqFactors) {
		if p.FreqFactors != nil && len(p.FreqFactors) != half {
			panic(fmt.Sprintf("cpu: RoPE with %d frequency factors for heads of %d", len(p.FreqFactors), hd))
		}
		c.theta, c.hd, c.factors, c.n = theta, hd, p.FreqFactors, 0
		c.freqs = make([]float64, half)
		for i := range c.freqs {
			c.freqs[i] = math.Pow(float64(theta), -float64(2*i)/float64(hd))
			if p.FreqFactors != nil {
				c.freqs[i] /= float64(p.FreqFactors[i])
			}
		}
	}
	if pos >= c.pos && pos+n <= c.pos+c.n {
		return c.cs[(pos-c.pos)*hd : (pos-c.pos+n)*hd]
	}
	if cap(c.cs) < n*hd {
		c.cs = make([]float32, n*hd)
	}
	c.cs, c.pos, c.n = c.cs[:n*hd], pos, n
	for t := 0; t < n; t++ {
		cs := c.cs[t*hd : (t+1)*hd]
		for i, f := range c.freqs {
			s, co := math.Sincos(float64(pos+t) * f)
			cs[2*i], cs[2*i+1] = float32(co), float32(s)
		}
	}
	return c.cs
}

// SwiGLU sets out = silu(gate) · up.
func (b *Backend) SwiGLU(out, gate, up []float32) {
	if len(gate) != len(up) || len(out) < len(gate) {
		panic("cpu: SwiGLU length mismatch")
	}
	swiglu(out[:len(gate)], gate, up)
}

// GeGLU sets out = gelu(gate) · up, GELU in its tanh form.
func (b *Backend) GeGLU(out, gate, up []float32) {
	if len(gate) != len(up) || len(out) < len(gate) {
		panic("cpu: GeGLU length mismatch")
	}
	const c = 0.7978845608028654 // √(2/π)
	for i, x := range gate {
		g := 0.5 * x * (1 + float32(math.Tanh(c*float64(x+0.044715*x*x*x))))
		out[i] = g * up[i]
	}
}

// sameSlice reports whether a and b are the same slice (or both nil).
func sameSlice(a, b []float32) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// Add sets dst += src.
func (b *Backend) Add(dst, src []float32) {
	if len(dst) != len(src) {
		panic("cpu: Add length mismatch")
	}
	addTo(dst, src)
}

func sumSquaresGeneric(x []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * x[i]
		s1 += x[i+1] * x[i+1]
		s2 += x[i+2] * x[i+2]
		s3 += x[i+3] * x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func scaleMulGeneric(out, x, w []float32, s float32) {
	for i := range x {
		out[i] = x[i] * s * w[i]
	}
}

func swigluGeneric(out, gate, up []float32) {
	for i, g := range gate {
		out[i] = g / (1 + expf(-g)) * up[i]
	}
}

func addToGeneric(dst, src []float32) {
	for i := range dst {
		dst[i] += src[i]
	}
}
