package shards

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards/block"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// Putter stores blocks; *blocks.Store is one.
type Putter interface {
	PutMany(ctx context.Context, bs []Block) error
}

// Getter returns a block whose bytes match its CID; *blocks.Store and
// *blocks.Exchange are ones.
type Getter interface {
	Get(ctx context.Context, c cid.Cid) (Block, error)
}

// ImportOption configures Import.
type ImportOption func(*importConfig) error

type importConfig struct {
	name     string
	quantize kernels.DType
	quant    bool
	tok      tokenizer.Tokenizer
}

// Name sets the model's name in the manifest.
func Name(s string) ImportOption {
	return func(c *importConfig) error { c.name = s; return nil }
}

// Quantize converts the weight matrices to dt on import. Norms stay f32;
// a matrix whose rows are not a multiple of 32 wide stays as it is for the
// block-quantized types.
func Quantize(dt kernels.DType) ImportOption {
	return func(c *importConfig) error {
		if !dt.Valid() {
			return fmt.Errorf("shards: quantize to unknown dtype %d", dt)
		}
		c.quantize, c.quant = dt, true
		return nil
	}
}

// WithTokenizer stores tok as the model's tokenizer (for sources that keep
// theirs outside, like llama2.c checkpoints). Only SentencePiece-style
// vocabularies can be given this way.
func WithTokenizer(tok tokenizer.Tokenizer) ImportOption {
	return func(c *importConfig) error { c.tok = tok; return nil }
}

// Imported reports an import.
type Imported struct {
	Root     cid.Cid
	Manifest *Manifest
	// Announce lists what to provide on the DHT: the root and each part.
	Announce []cid.Cid
	// Bytes and Blocks count everything written, manifests included.
	Bytes  int64
	Blocks int
}

// Import cuts a loaded model into blocks, writes them to put and returns
// the model's CID. The same model and options always give the same CID.
// The manifest's name is the Name option, else the source's general.name.
//
// Tensor bytes are not copied: chunks are views of the source (its memory
// map), and up to four batches of blocks are written at once. The root
// is written last, after every other block is stored.
func Import(ctx context.Context, src *checkpoints.Model, put Putter, opts ...ImportOption) (*Imported, error) {
	var cfg importConfig
	for _, o := range opts {
		if o != nil {
			if err := o(&cfg); err != nil {
				return nil, err
			}
		}
	}
	w := src.Weights
	if w.Embedding == nil || w.Output == nil || w.FinalNorm == nil || !w.HasLayers(0, w.Config.Layers) {
		return nil, fmt.Errorf("shards: import needs the whole model")
	}
	for i, l := range w.Layers {
		if (l.MLA != nil) != (w.Config.KVLoRA > 0) {
			return nil, fmt.Errorf("shards: import: layer %d's latent attention (%v) disagrees with the config's kv rank %d: the layout needs it in every layer or none", i, l.MLA != nil, w.Config.KVLoRA)
		}
	}
	if cfg.name == "" && src.GGUF != nil {
		cfg.name, _ = src.GGUF.String("general.name")
	}
	im := &Imported{}
	in := newImporter(ctx, put, im, &cfg)
	root, err := in.run(src)
	if werr := in.wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	// The root goes last: a store that holds it holds the whole model.
	if err := put.PutMany(ctx, []Block{root}); err != nil {
		return nil, fmt.Errorf("shards: store manifest %s: %w", root.CID, err)
	}
	im.Bytes += int64(len(root.Data))
	im.Blocks++
	im.Root = root.CID
	im.Announce = append([]cid.Cid{root.CID}, im.Announce...)
	return im, nil
}

// run stores everything but the root block, which it returns.
func (in *importer) run(src *checkpoints.Model) (Block, error) {
	w := src.Weights
	m := &Manifest{Format: ManifestFormat, Name: in.cfg.name, Config: w.Config}
	extras, err := layerExtras(w)
	if err != nil {
		return Block{}, err
	}
	if m.Experts, err = expertLayout(w); err != nil {
		return Block{}, err
	}
	if len(extras) > 0 || len(w.Extras(true)) > 0 || (w.Config.Arch != "" && w.Config.Arch != "llama") || m.Experts != nil {
		m.Format = ManifestFormat2
		for _, x := range extras {
			m.LayerTensors = append(m.LayerTensors, x.name)
		}
	}
	tokGGUF, err := tokenizerGGUF(src, in.cfg.tok)
	if err != nil {
		return Block{}, err
	}
	if tokGGUF != nil {
		if len(tokGGUF) > MaxTokenizerBytes {
			return Block{}, fmt.Errorf("shards: tokenizer of %d bytes, over the %d-byte limit", len(tokGGUF), MaxTokenizerBytes)
		}
		b, err := in.blob(tokGGUF)
		if err != nil {
			return Block{}, fmt.Errorf("shards: store tokenizer: %w", err)
		}
		m.Tokenizer = &b
	}

	if m.Embedding, err = in.part([]namedTensor{matrixTensor("token_embd.weight", w.Embedding)}, nil); err != nil {
		return Block{}, err
	}
	if w.RopeFreqs != nil {
		t, err := in.tensor(vectorTensor(ropeFreqsName, w.RopeFreqs))
		if err != nil {
			return Block{}, err
		}
		m.RopeFreqs = &t
	}
	for i, l := range w.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		ts := []namedTensor{vectorTensor(p+"attn_norm.weight", l.AttnNorm)}
		if a := l.MLA; a != nil {
			if a.QA != nil {
				ts = append(ts, matrixTensor(p+"attn_q_a.weight", a.QA),
					vectorTensor(p+"attn_q_a_norm.weight", a.QANorm),
					matrixTensor(p+"attn_q_b.weight", a.QB))
			} else {
				ts = append(ts, matrixTensor(p+"attn_q.weight", l.Wq))
			}
			ts = append(ts, matrixTensor(p+"attn_kv_a_mqa.weight", a.KVA),
				vectorTensor(p+"attn_kv_a_norm.weight", a.KVANorm),
				matrixTensor(p+"attn_kv_b.weight", a.KVB))
		} else {
			ts = append(ts, matrixTensor(p+"attn_q.weight", l.Wq),
				matrixTensor(p+"attn_k.weight", l.Wk),
				matrixTensor(p+"attn_v.weight", l.Wv))
		}
		ts = append(ts, matrixTensor(p+"attn_output.weight", l.Wo),
			vectorTensor(p+"ffn_norm.weight", l.FFNNorm))
		var experts []Link
		if x := l.Experts; x != nil {
			ts = append(ts, matrixTensor(p+tnRouter, x.Router))
			if x.Bias != nil {
				ts = append(ts, vectorTensor(p+tnRouterBias, x.Bias))
			}
			if x.SharedGate != nil {
				ts = append(ts, matrixTensor(p+"ffn_gate_shexp.weight", x.SharedGate),
					matrixTensor(p+"ffn_down_shexp.weight", x.SharedDown),
					matrixTensor(p+"ffn_up_shexp.weight", x.SharedUp))
			}
			for e := range x.Gate {
				link, err := in.part([]namedTensor{
					matrixTensor(expertName(i, e, "ffn_gate"), x.Gate[e]),
					matrixTensor(expertName(i, e, "ffn_down"), x.Down[e]),
					matrixTensor(expertName(i, e, "ffn_up"), x.Up[e]),
				}, nil)
				if err != nil {
					return Block{}, err
				}
				experts = append(experts, link)
			}
		} else {
			ts = append(ts, matrixTensor(p+"ffn_gate.weight", l.W1),
				matrixTensor(p+"ffn_down.weight", l.W2),
				matrixTensor(p+"ffn_up.weight", l.W3))
		}
		for _, x := range extras {
			ts = append(ts, vectorTensor(p+x.name, *x.of(l)))
		}
		link, err := in.part(ts, experts)
		if err != nil {
			return Block{}, err
		}
		m.Layers = append(m.Layers, link)
	}
	head := []namedTensor{vectorTensor("output_norm.weight", w.FinalNorm)}
	if !w.Config.SharedClassifier {
		head = append(head, matrixTensor("output.weight", w.Output))
	}
	if m.Head, err = in.part(head, nil); err != nil {
		return Block{}, err
	}
	if err := in.flush(); err != nil {
		return Block{}, err
	}
	root, err := m.Encode()
	if err != nil {
		return Block{}, err
	}
	in.im.Manifest = m
	return root, nil
}

// layerExtras lists the optional tensors the layers hold, which must be
// the same in every layer.
func layerExtras(w *model.Weights) ([]layerTensor, error) {
	var out []layerTensor
	for _, x := range layerTensors {
		n := 0
		for _, l := range w.Layers {
			if *x.of(l) != nil {
				n++
			}
		}
		switch n {
		case 0:
		case len(w.Layers):
			out = append(out, x)
		default:
			return nil, fmt.Errorf("shards: import: %d of the %d layers hold %s: the layout needs all or none", n, len(w.Layers), x.name)
		}
	}
	return out, nil
}

// expertLayout describes the model's layers of routed experts: they must
// follow its dense layers, and all hold the same shared experts and
// router bias. It is nil for a model without experts.
func expertLayout(w *model.Weights) (*ExpertLayout, error) {
	if w.Config.Experts == 0 {
		return nil, nil
	}
	var x *ExpertLayout
	for i, l := range w.Layers {
		e := l.Experts
		if e == nil {
			if x != nil {
				return nil, fmt.Errorf("shards: import: layer %d has a dense FFN after layers of experts: the layout needs the dense layers first", i)
			}
			continue
		}
		sh := 0
		if e.SharedGate != nil {
			sh = e.SharedGate.Rows
		}
		if x == nil {
			x = &ExpertLayout{DenseFirst: i, Shared: sh, Bias: e.Bias != nil}
		} else if sh != x.Shared || (e.Bias != nil) != x.Bias {
			return nil, fmt.Errorf("shards: import: layer %d's shared experts (%d wide) or router bias (%v) differ from layer %d's (%d, %v): the layout needs them alike", i, sh, e.Bias != nil, x.DenseFirst, x.Shared, x.Bias)
		}
	}
	if x == nil {
		return nil, fmt.Errorf("shards: import: the config has %d experts but no layer holds any", w.Config.Experts)
	}
	if x.Shared > MaxSharedHidden {
		return nil, fmt.Errorf("shards: import: shared experts %d wide, over %d", x.Shared, MaxSharedHidden)
	}
	return x, nil
}

type namedTensor struct {
	name string
	m    *kernels.Matrix // or
	v    []float32
}

func matrixTensor(name string, m *kernels.Matrix) namedTensor { return namedTensor{name: name, m: m} }
func vectorTensor(name string, v []float32) namedTensor       { return namedTensor{name: name, v: v} }

// Writes in flight at once, and blocks per write.
const (
	importWriters = 4
	importBatch   = 16
)

// importer hashes blocks on the calling goroutine and writes batches of
// them on up to importWriters others, so that hashing overlaps the
// store's disk writes.
type importer struct {
	ctx     context.Context
	put     Putter
	im      *Imported
	cfg     *importConfig
	pending []Block

	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func newImporter(ctx context.Context, put Putter, im *Imported, cfg *importConfig) *importer {
	return &importer{ctx: ctx, put: put, im: im, cfg: cfg, slots: make(chan struct{}, importWriters)}
}

func (in *importer) store(b Block) error {
	in.pending = append(in.pending, b)
	in.im.Bytes += int64(len(b.Data))
	in.im.Blocks++
	if len(in.pending) >= importBatch {
		return in.flush()
	}
	return nil
}

// failed returns the first write error, or the context's.
func (in *importer) failed() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err != nil {
		return in.err
	}
	return in.ctx.Err()
}

// flush hands the pending blocks to a writer, waiting for a free one.
func (in *importer) flush() error {
	if err := in.failed(); err != nil {
		return err
	}
	if len(in.pending) == 0 {
		return nil
	}
	batch := in.pending
	in.pending = make([]Block, 0, importBatch)
	select {
	case in.slots <- struct{}{}:
	case <-in.ctx.Done():
		return in.ctx.Err()
	}
	in.wg.Go(func() {
		defer func() { <-in.slots }()
		if err := in.put.PutMany(in.ctx, batch); err != nil {
			in.mu.Lock()
			if in.err == nil {
				in.err = fmt.Errorf("shards: store blocks: %w", err)
			}
			in.mu.Unlock()
		}
	})
	return nil
}

// wait waits for the writes in flight and returns the first error.
func (in *importer) wait() error {
	in.wg.Wait()
	return in.failed()
}

// blob cuts data into chunks and stores them.
func (in *importer) blob(data []byte) (Blob, error) {
	b := Blob{Size: int64(len(data))}
	for off := 0; off < len(data); off += ChunkSize {
		end := min(off+ChunkSize, len(data))
		blk := block.New(data[off:end:end])
		if err := in.store(blk); err != nil {
			return b, err
		}
		b.Chunks = append(b.Chunks, Link{blk.CID})
	}
	return b, nil
}

// tensor stores a tensor's chunks and returns its entry.
func (in *importer) tensor(t namedTensor) (Tensor, error) {
	var (
		data  []byte
		dt    kernels.DType
		shape []int
	)
	if t.m != nil {
		m := in.convert(t.m)
		data, dt, shape = m.Data, m.Type, []int{m.Rows, m.Cols}
	} else {
		data, dt, shape = kernels.F32Bytes(t.v), kernels.F32, []int{len(t.v)}
	}
	b, err := in.blob(data)
	if err != nil {
		return Tensor{}, fmt.Errorf("shards: tensor %s: %w", t.name, err)
	}
	return Tensor{Name: t.name, DType: dt.String(), Shape: shape, Blob: b}, nil
}

// part stores the tensors and their part block, which links to the
// expert parts experts, and returns its link.
func (in *importer) part(ts []namedTensor, experts []Link) (Link, error) {
	p := Part{Format: PartFormat, Experts: experts}
	for _, t := range ts {
		tt, err := in.tensor(t)
		if err != nil {
			return Link{}, err
		}
		p.Tensors = append(p.Tensors, tt)
	}
	blk, err := p.Encode()
	if err != nil {
		return Link{}, err
	}
	if err := in.store(blk); err != nil {
		return Link{}, err
	}
	in.im.Announce = append(in.im.Announce, blk.CID)
	return Link{blk.CID}, nil
}

// convert applies the Quantize option to one matrix.
func (in *importer) convert(m *kernels.Matrix) *kernels.Matrix {
	dt := in.cfg.quantize
	if !in.cfg.quant || m.Type == dt || (dt.Quantized() && m.Cols%kernels.QK != 0) {
		return m
	}
	row := make([]float32, m.Cols)
	rb, _ := dt.RowBytes(m.Cols)
	out := make([]byte, 0, m.Rows*rb)
	for r := 0; r < m.Rows; r++ {
		m.RowF32(row, r)
		out = kernels.Encode(out, dt, row)
	}
	c, err := kernels.NewMatrix(dt, m.Rows, m.Cols, out)
	if err != nil {
		panic(err) // sizes computed from the same dtype
	}
	return c
}

// tokenizerGGUF returns the tokenizer as a GGUF file holding only its
// metadata: the source GGUF's tokenizer.* entries, or a SentencePiece
// vocabulary given by the caller; nil when there is neither.
func tokenizerGGUF(src *checkpoints.Model, given tokenizer.Tokenizer) ([]byte, error) {
	kvs, err := checkpoints.TokenizerKVs(src, given)
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	if len(kvs) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := checkpoints.WriteGGUF(&buf, kvs, nil); err != nil {
		return nil, fmt.Errorf("shards: tokenizer: %w", err)
	}
	return buf.Bytes(), nil
}
