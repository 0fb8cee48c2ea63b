package kernels

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
)

// RopeStyle says which elements of a head rotary position embedding pairs.
type RopeStyle uint8

const (
	// RopeAdjacent rotates (x[2i], x[2i+1]): llama2.c and GGUF's llama.
	RopeAdjacent RopeStyle = iota
	// RopeNeoX rotates (x[i], x[i+d/2]) for a head of size d: GPT-NeoX,
	// Qwen2 and Hugging Face's Llama layout.
	RopeNeoX
)

func (s RopeStyle) String() string {
	if s == RopeNeoX {
		return "neox"
	}
	return "adjacent"
}

// RopeParams describe a rotary embedding applied to n positions of a
// tensor with Heads heads of HeadDim values each.
type RopeParams struct {
	Heads, HeadDim int
	// Pos0 is the position of the first row.
	Pos0 int
	// Theta is the frequency base (10000 for Llama 2, 1e6 for Qwen3).
	Theta float32
	Style RopeStyle
	// FreqFactors, when not nil, divide the frequencies: pair i turns at
	// Theta^(−2i/HeadDim) / FreqFactors[i] (HeadDim/2 values; Llama 3's
	// long-context scaling, stored in GGUF as rope_freqs). The slice must
	// not change while in use: a backend may key a table on it.
	FreqFactors []float32
}

// AttnParams describe causal attention with grouped-query heads over a KV
// cache.
//
// For query row t (0 ≤ t < N) at position Pos0+t, head h attends to
// positions 0..Pos0+t of KV head h/(Heads/KVHeads):
//
//	out[t,h] = Σ_p softmax_p(Scale · q[t,h]·k[p,kvh]) · v[p,kvh]
//
// The cache of one layer holds Cap positions per KV head, in the layouts
// decode reads fastest. Keys are transposed: k[kvh][i][p] at
// (kvh·HeadDim + i)·Cap + p, so the scores of all positions are one
// column-major matrix-vector product. Values are head-major:
// v[kvh][p][i] at (kvh·Cap + p)·HeadDim + i, so the output is another.
// Each cache is KVHeads·HeadDim·Cap values. StoreKV writes new positions
// into it.
//
// A cache holds float32 (StoreKV, Attention) or half precision
// (StoreKV16, Attention16: IEEE 754 binary16 bit patterns in uint16, the
// same layout, half the bytes). Half precision rounds each key and value
// to 11 significant bits once, when it is stored; the products and sums
// over the cache still run in float32.
type AttnParams struct {
	Heads, KVHeads, HeadDim int
	// Pos0 is the position of the first query row; N is the number of rows.
	Pos0, N int
	// Cap is the number of positions the cache holds per head.
	Cap int
	// Scale multiplies q·k before the softmax, usually 1/√HeadDim.
	Scale float32
	// SoftCap, when > 0, caps each scaled score s as SoftCap·tanh(s/SoftCap)
	// before the softmax (Gemma 2).
	SoftCap float32
	// Window, when > 0, limits each query at position t to the keys at
	// positions t−Window+1..t (sliding-window attention).
	Window int
}

// SoftCap sets x[i] = c·tanh(x[i]/c), squashing x smoothly into (−c, c).
func SoftCap(x []float32, c float32) {
	for i, v := range x {
		x[i] = c * float32(math.Tanh(float64(v/c)))
	}
}

// KVSize is the number of values in one layer's key (or value) cache.
func (p AttnParams) KVSize() int { return p.KVHeads * p.HeadDim * p.Cap }

// Backend is a compute device. All slices are host memory in float32; a
// backend may cache device copies of a Matrix, keyed by its pointer, for the
// Matrix's lifetime.
//
// Methods panic on mismatched lengths: those are programming errors, not
// runtime conditions. A Backend is safe for use by one goroutine at a time.
type Backend interface {
	// Name identifies the backend and the code path it chose, e.g.
	// "cpu/avx512".
	Name() string

	// Threads is the number of workers the backend uses.
	Threads() int

	// MatMul multiplies n rows of activations by w transposed:
	// out[t·w.Rows + r] = Σ_c w[r,c] · x[t·w.Cols + c] for t < n.
	// len(x) ≥ n·w.Cols and len(out) ≥ n·w.Rows; out must not overlap x.
	MatMul(out []float32, w *Matrix, x []float32, n int)

	// MatMulMany runs MatMul(outs[i], ws[i], x, n) for every i: several
	// products of one input, such as the query, key and value projections,
	// as one job (one quantization of x, one hand-off to the workers). All
	// ws have the same Cols.
	MatMulMany(outs [][]float32, ws []*Matrix, x []float32, n int)

	// RMSNorm normalizes each of the len(x)/len(weight) rows of x:
	// out = x / sqrt(mean(x²) + eps) · weight. out may equal x.
	RMSNorm(out, x, weight []float32, eps float32)

	// RoPE rotates, in place, the len(x)/(Heads·HeadDim) rows of x, row t
	// at position Pos0+t.
	RoPE(x []float32, p RopeParams)

	// StoreKV writes the keys and values of N new positions, k and v
	// [N, KVHeads·HeadDim] row by row, into the caches kc and vc at
	// positions Pos0..Pos0+N-1 (layout in AttnParams).
	StoreKV(kc, vc, k, v []float32, p AttnParams)

	// Attention computes causal attention for N query rows. q and out are
	// [N, Heads·HeadDim]; k and v are the caches (layout in AttnParams),
	// whose positions 0..Pos0+N-1 are filled.
	Attention(out, q, k, v []float32, p AttnParams)

	// StoreKV16 is StoreKV into half-precision caches: each key and value
	// is rounded to the nearest binary16 value (ties to even; beyond the
	// half range, ±Inf) and stored as its bits.
	StoreKV16(kc, vc []uint16, k, v []float32, p AttnParams)

	// Attention16 is Attention over half-precision caches that StoreKV16
	// filled: every cached value is widened exactly to float32, so the
	// result is Attention's over those widened caches, to rounding.
	Attention16(out, q []float32, k, v []uint16, p AttnParams)

	// SwiGLU sets out[i] = silu(gate[i]) · up[i]. out may equal gate.
	SwiGLU(out, gate, up []float32)

	// GeGLU sets out[i] = gelu(gate[i]) · up[i], with GELU's tanh form
	// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). out may equal gate.
	GeGLU(out, gate, up []float32)

	// Add sets dst[i] += src[i].
	Add(dst, src []float32)

	// Close releases the backend's workers. The backend must not be used
	// afterwards.
	Close() error
}

// Factory makes a backend with the given number of threads (0: the
// backend's default).
type Factory func(threads int) (Backend, error)

var (
	registryMu sync.Mutex
	registry   = map[string]Factory{}
)

// Register makes a backend available by name. It panics if the name is
// taken: two backends claiming one name is a build mistake.
func Register(name string, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("kernels: backend " + name + " registered twice")
	}
	registry[name] = f
}

// MaxThreads is the most compute threads a backend may be given: four
// per core of this machine. More only adds switching between threads that
// wait for the same memory, so a larger count is taken for a mistake.
func MaxThreads() int { return 4 * runtime.NumCPU() }

// CheckThreads checks a thread count as users give it: 0 (all cores) or
// 1 to MaxThreads. Every command's --threads and Open use it.
func CheckThreads(n int) error {
	if n < 0 || n > MaxThreads() {
		return fmt.Errorf("%d threads is out of range: give 0 for all %d cores, or 1 to %d (4 per core)", n, runtime.NumCPU(), MaxThreads())
	}
	return nil
}

// Open makes the named backend with the given number of threads (0: the
// backend's default; see CheckThreads for the range).
func Open(name string, threads int) (Backend, error) {
	if err := CheckThreads(threads); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	registryMu.Lock()
	f, ok := registry[name]
	registryMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("kernels: no backend %q (have %v)", name, Backends())
	}
	return f(threads)
}

// Backends lists the registered backend names.
func Backends() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
