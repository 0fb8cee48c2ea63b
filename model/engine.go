package model

import (
	"errors"
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// ErrContextFull is returned when a forward pass would run past the end of
// its KV cache.
var ErrContextFull = errors.New("context full")

// Engine runs the steps of a model on a backend. It keeps scratch buffers
// between calls, so after the first token a decode step allocates nothing.
// An Engine is used by one goroutine at a time.
type Engine struct {
	w  *Weights
	be kernels.Backend

	// Scratch for up to cap positions: xb, q, att, delta [n,Dim], k, v
	// [n,KVDim], h1, h3 [n,Hidden], row [Dim].
	cap           int
	xb, q, att    []float32
	k, v          []float32
	h1, h3, delta []float32
	row           []float32

	// Reused arguments, so that a step allocates nothing: MatMulMany's
	// arrays, the segments of a batch, the block's buffers.
	outs, outsLast [3][]float32
	ws             [3]*kernels.Matrix
	segs           []segment
	bufs           blockBufs
	moe            moeScratch                 // for layers of experts
	remote         ExpertRunner               // the experts the weights lack (RemoteExperts)
	routed         func(li int, pick []int32) // hears each layer's choice (Routed)
	mla            mlaScratch                 // for latent attention
	ropeBuf        []float32                  // the rotated part of heads RoPE turns in part

	// maps holds the linear maps of each layer held, by absolute layer
	// number; head is the output head's.
	maps []layerMaps
	head *Dense

	grads *Grads // what backward passes accumulate into (SetGrads)

	kv kernels.DType // element type of the caches NewCache makes

	// The config's derived sizes, and attention's scale 1/√HeadDim.
	headDim, kvDim, qDim int
	scale                float32
	// ropeFactors divide the rotary frequencies of the layers that rotate
	// with RopeTheta: the weights' RopeFreqs times RopeScale, nil when
	// there are neither.
	ropeFactors []float32
}

// DefaultKVType is the element type of an engine's KV caches unless the
// KVType option says otherwise: half precision, which halves the bytes a
// decode step reads from the cache and the memory a session holds.
const DefaultKVType = kernels.F16

// Option configures an Engine.
type Option func(*Engine)

// KVType sets the element type of the KV caches the engine makes:
// kernels.F16 (the default) or kernels.F32, which keeps every key and value
// exactly as computed. NewCache rejects any other type.
func KVType(t kernels.DType) Option { return func(e *Engine) { e.kv = t } }

// NewEngine returns an engine for w on be.
func NewEngine(w *Weights, be kernels.Backend, opts ...Option) *Engine {
	e := &Engine{w: w, be: be, kv: DefaultKVType}
	for _, o := range opts {
		if o != nil {
			o(e)
		}
	}
	e.headDim, e.kvDim, e.qDim = w.Config.HeadDim(), w.Config.KVDim(), w.Config.QDim()
	e.scale = w.Config.queryScale()
	e.ropeFactors = w.RopeFreqs
	if sc := w.Config.RopeScale; sc != 0 && sc != 1 {
		e.ropeFactors = make([]float32, w.Config.RotaryDim()/2)
		for i := range e.ropeFactors {
			e.ropeFactors[i] = sc
			if w.RopeFreqs != nil {
				e.ropeFactors[i] *= w.RopeFreqs[i]
			}
		}
	}
	e.maps = make([]layerMaps, len(w.Layers))
	for li, l := range w.Layers {
		if l == nil {
			continue
		}
		lm := &e.maps[li]
		for p := range numProj {
			lm.base[p] = l.matrix(p)
			lm.lin[p] = NewDense(be, lm.base[p])
		}
		lm.setPlain(be)
	}
	if w.Output != nil {
		e.head = NewDense(be, w.Output)
	}
	return e
}

// Linear returns the linear map p of layer li, a *Dense of the layer's
// weight unless SetLinear replaced it; nil for a layer the weights do not
// hold.
func (e *Engine) Linear(li int, p Proj) Linear { return e.maps[li].lin[p] }

// SetLinear makes l the linear map p of layer li for every later forward
// and backward pass: an adapter (such as LoRA) wraps Linear(li, p) and
// adds its own term. l must map Dim- (Hidden- for ProjDown) wide rows to
// rows as wide as the weight it replaces.
func (e *Engine) SetLinear(li int, p Proj, l Linear) {
	lm := &e.maps[li]
	lm.lin[p] = l
	lm.setPlain(e.be)
}

// KVType is the element type of the caches NewCache makes.
func (e *Engine) KVType() kernels.DType { return e.kv }

// ParseKVType maps "f16" or "f32" to a KV cache element type.
func ParseKVType(s string) (kernels.DType, error) {
	switch s {
	case "f16":
		return kernels.F16, nil
	case "f32":
		return kernels.F32, nil
	}
	return 0, fmt.Errorf("kv cache type %q: want f16 or f32", s)
}

// CacheBytes is the memory a cache of layers layers and positions
// positions holds with elements of type t (kernels.F16 or kernels.F32):
// keys and values, KVDim of each per position and layer.
func CacheBytes(c *Config, t kernels.DType, layers, positions int) int64 {
	return int64(layers) * 2 * int64(c.KVDim()) * int64(positions) * int64(t.BlockBytes())
}

// Weights returns the weights the engine runs.
func (e *Engine) Weights() *Weights { return e.w }

// Backend returns the backend the engine runs on.
func (e *Engine) Backend() kernels.Backend { return e.be }

// Cache is the key/value cache of one sequence over a span of layers
// [First, Last). Its elements are float32 or half precision (Type); the
// layout of each layer's keys and values is kernels.AttnParams's.
type Cache struct {
	First, Last int
	// Len is the number of positions filled; Cap the most it holds.
	Len, Cap int
	typ      kernels.DType
	size     int         // values per layer and per cache (keys or values)
	k, v     [][]float32 // per layer of the span, if typ is F32
	k16, v16 [][]uint16  // per layer of the span, if typ is F16
}

// NewCache allocates a cache for layers [first, last) and up to capacity
// positions (at most the model's context), of the engine's KVType.
func (e *Engine) NewCache(first, last, capacity int) (*Cache, error) {
	c := &e.w.Config
	if first < 0 || last > c.Layers || first >= last {
		return nil, fmt.Errorf("layer span [%d, %d) outside the model's %d layers", first, last, c.Layers)
	}
	if !e.w.HasLayers(first, last) {
		return nil, fmt.Errorf("layer span [%d, %d) is not all loaded", first, last)
	}
	if capacity <= 0 || capacity > c.Context {
		return nil, fmt.Errorf("cache of %d positions: must be between 1 and the model's context %d", capacity, c.Context)
	}
	if e.kv != kernels.F16 && e.kv != kernels.F32 {
		return nil, fmt.Errorf("kv cache of %s: want f16 or f32", e.kv)
	}
	size := c.KVDim() * capacity
	ca := &Cache{First: first, Last: last, Cap: capacity, typ: e.kv, size: size}
	for i := first; i < last; i++ {
		if e.kv == kernels.F16 {
			ca.k16 = append(ca.k16, make([]uint16, size))
			ca.v16 = append(ca.v16, make([]uint16, size))
		} else {
			ca.k = append(ca.k, make([]float32, size))
			ca.v = append(ca.v, make([]float32, size))
		}
	}
	return ca, nil
}

// Type is the element type of the cache: kernels.F16 or kernels.F32.
func (c *Cache) Type() kernels.DType { return c.typ }

// Reset empties the cache, keeping its memory.
func (c *Cache) Reset() { c.Len = 0 }

// Truncate drops positions from n on, so that they can be recomputed.
func (c *Cache) Truncate(n int) {
	if n >= 0 && n < c.Len {
		c.Len = n
	}
}

// Bytes is the memory the cache holds.
func (c *Cache) Bytes() int64 {
	return int64(c.Last-c.First) * 2 * int64(c.size) * int64(c.typ.BlockBytes())
}

// attend stores the keys and values of p.N new positions of layer li in
// the cache and runs attention over it for their queries q into out.
func (c *Cache) attend(be kernels.Backend, li int, out, q, k, v []float32, p kernels.AttnParams) {
	i := li - c.First
	if c.typ == kernels.F16 {
		be.StoreKV16(c.k16[i], c.v16[i], k, v, p)
		be.Attention16(out, q, c.k16[i], c.v16[i], p)
		return
	}
	be.StoreKV(c.k[i], c.v[i], k, v, p)
	be.Attention(out, q, c.k[i], c.v[i], p)
}

func (e *Engine) grow(n int) {
	if n <= e.cap {
		return
	}
	c := &e.w.Config
	e.cap = n
	e.xb = make([]float32, n*c.Dim)
	e.q = make([]float32, n*c.QDim())
	e.att = make([]float32, n*c.QDim())
	e.delta = make([]float32, n*c.Dim)
	e.k = make([]float32, n*c.KVDim())
	e.v = make([]float32, n*c.KVDim())
	e.h1 = make([]float32, n*c.Hidden)
	e.h3 = make([]float32, n*c.Hidden)
	e.row = make([]float32, c.Dim)
	if c.Experts > 0 {
		e.moe.grow(c, n, expertWidth(e.w))
	}
	if c.RotaryDim() != c.HeadDim() {
		e.ropeBuf = make([]float32, n*max(c.Heads, c.KVHeads)*c.RotaryDim())
	}
	if c.KVLoRA > 0 {
		e.mla.grow(c, n)
	}
}

// Embed writes the embedding rows of ids into x, which must hold
// len(ids)·Dim values.
func (e *Engine) Embed(x []float32, ids []int) error {
	c := &e.w.Config
	if e.w.Embedding == nil {
		return errors.New("embed: this node does not hold the token embedding")
	}
	if len(x) < len(ids)*c.Dim {
		return fmt.Errorf("embed: %d ids need %d values, buffer has %d", len(ids), len(ids)*c.Dim, len(x))
	}
	for i, id := range ids {
		if id < 0 || id >= c.Vocab {
			return fmt.Errorf("embed: token id %d outside the vocabulary of %d", id, c.Vocab)
		}
		row := x[i*c.Dim : (i+1)*c.Dim]
		e.w.Embedding.RowF32(row, id)
		if c.EmbedScale != 0 && c.EmbedScale != 1 {
			for j := range row {
				row[j] *= c.EmbedScale
			}
		}
	}
	return nil
}

// Forward runs the cache's span of layers on n positions of hidden state
// x ([n, Dim], updated in place), at positions c.Len..c.Len+n-1, and
// appends their keys and values to the cache.
func (e *Engine) Forward(c *Cache, x []float32, n int) error {
	cfg := &e.w.Config
	d := cfg.Dim
	if n <= 0 {
		return nil
	}
	if len(x) < n*d {
		return fmt.Errorf("forward: %d positions need %d values, got %d", n, n*d, len(x))
	}
	if c.Len+n > c.Cap {
		return fmt.Errorf("forward: %d positions after %d: %w (cache holds %d)", n, c.Len, ErrContextFull, c.Cap)
	}
	e.segs = append(e.segs[:0], segment{c: c, rows: n})
	return e.run(c.First, c.Last, x[:n*d], n, e.segs)
}

// LogitsRows is Logits for n rows at once: x holds n rows of hidden state
// ([n, Dim]) and logits gets n rows of Vocab logits. One pass over the
// head's weights serves every row.
func (e *Engine) LogitsRows(logits, x []float32, n int) error {
	cfg := &e.w.Config
	if e.w.Output == nil || e.w.FinalNorm == nil {
		return errors.New("logits: this node does not hold the output head")
	}
	if n < 1 || len(x) < n*cfg.Dim || len(logits) < n*cfg.Vocab {
		return fmt.Errorf("logits: %d rows need %d hidden values and room for %d logits, got %d and %d",
			n, n*cfg.Dim, n*cfg.Vocab, len(x), len(logits))
	}
	e.grow(n)
	for i := range n {
		e.be.RMSNorm(e.xb[i*cfg.Dim:(i+1)*cfg.Dim], x[i*cfg.Dim:(i+1)*cfg.Dim], e.w.FinalNorm, cfg.NormEps)
	}
	e.head.Apply(logits[:n*cfg.Vocab], e.xb[:n*cfg.Dim], n)
	if cfg.FinalSoftCap > 0 {
		kernels.SoftCap(logits[:n*cfg.Vocab], cfg.FinalSoftCap)
	}
	return nil
}

// Logits applies the final norm and the output head to one row of hidden
// state x ([Dim]) and writes Vocab logits.
func (e *Engine) Logits(logits, x []float32) error {
	cfg := &e.w.Config
	if e.w.Output == nil || e.w.FinalNorm == nil {
		return errors.New("logits: this node does not hold the output head")
	}
	if len(x) < cfg.Dim || len(logits) < cfg.Vocab {
		return fmt.Errorf("logits: need %d hidden values and room for %d logits, got %d and %d", cfg.Dim, cfg.Vocab, len(x), len(logits))
	}
	e.grow(1)
	e.be.RMSNorm(e.row, x[:cfg.Dim], e.w.FinalNorm, cfg.NormEps)
	e.head.Apply(logits[:cfg.Vocab], e.row, 1)
	if cfg.FinalSoftCap > 0 {
		kernels.SoftCap(logits[:cfg.Vocab], cfg.FinalSoftCap)
	}
	return nil
}
