package shards

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// Span selects what of a model to fetch or load: layers [First, Last),
// and the embedding and head (which a client, not a server, holds).
type Span struct {
	First, Last     int
	Embedding, Head bool
	Tokenizer       bool
	// Experts are the routed experts of the span's layers of experts to
	// fetch (nil: every one): a server of some experts of its layers
	// fetches the layer parts (attention, router, shared experts) and
	// only these expert parts, and loads the others as absent.
	Experts model.ExpertSet
}

// Whole is the span of a whole model of n layers.
func Whole(n int) Span { return Span{First: 0, Last: n, Embedding: true, Head: true, Tokenizer: true} }

// ParseLayers reads "A:B" (layers A to B-1; either may be omitted) for a
// model of n layers.
func ParseLayers(s string, n int) (first, last int, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("layers %q: want A:B", s)
	}
	first, last = 0, n
	if a != "" {
		if first, err = strconv.Atoi(a); err != nil {
			return 0, 0, fmt.Errorf("layers %q: %w", s, err)
		}
	}
	if b != "" {
		if last, err = strconv.Atoi(b); err != nil {
			return 0, 0, fmt.Errorf("layers %q: %w", s, err)
		}
	}
	if first < 0 || last > n || first >= last {
		return 0, 0, fmt.Errorf("layers %q: outside the model's %d layers or empty", s, n)
	}
	return first, last, nil
}

// GetManifest fetches, verifies and decodes a model's manifest.
func GetManifest(ctx context.Context, get Getter, root cid.Cid) (*Manifest, error) {
	b, err := get.Get(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("shards: manifest %s: %w", root, err)
	}
	if err := b.Verify(); err != nil {
		return nil, fmt.Errorf("shards: manifest %s: %w", root, err)
	}
	m, err := DecodeManifest(b.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (CID %s)", err, root)
	}
	return m, nil
}

// checkSpan checks that s lies within the model's layers, and its
// experts within the model's.
func (m *Manifest) checkSpan(s Span) error {
	if s.First < 0 || s.Last > len(m.Layers) || s.First > s.Last {
		return fmt.Errorf("shards: layers %d:%d outside the model's %d", s.First, s.Last, len(m.Layers))
	}
	if err := s.Experts.Check(m.Config.Experts); err != nil {
		return fmt.Errorf("shards: %w", err)
	}
	return nil
}

// PartRefs lists the parts a span needs, in model order: the embedding,
// the layers, the head. With a shared classifier the head needs the
// embedding too. s must lie within the model.
func (m *Manifest) PartRefs(s Span) []PartRef {
	var out []PartRef
	if s.Embedding || (s.Head && m.Config.SharedClassifier) {
		out = append(out, PartRef{Kind: EmbeddingPart, CID: m.Embedding.CID})
	}
	for i := s.First; i < s.Last; i++ {
		out = append(out, PartRef{Kind: LayerPart, Layer: i, CID: m.Layers[i].CID})
	}
	if s.Head {
		out = append(out, PartRef{Kind: HeadPart, CID: m.Head.CID})
	}
	return out
}

// Parts lists the part CIDs a span needs (see PartRefs).
func (m *Manifest) Parts(s Span) []cid.Cid {
	refs := m.PartRefs(s)
	out := make([]cid.Cid, len(refs))
	for i, r := range refs {
		out[i] = r.CID
	}
	return out
}

// GetPart fetches, verifies and decodes one part of m, and checks it
// against m's config.
func (m *Manifest) GetPart(ctx context.Context, get Getter, r PartRef) (*Part, error) {
	b, err := get.Get(ctx, r.CID)
	if err != nil {
		return nil, fmt.Errorf("shards: %s part %s: %w", r, r.CID, err)
	}
	if err := b.Verify(); err != nil {
		return nil, fmt.Errorf("shards: %s part %s: %w", r, r.CID, err)
	}
	p, err := DecodePart(b.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s part %s)", err, r, r.CID)
	}
	if err := m.CheckPart(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// eachPart fetches the parts a span needs in PartRefs' order, each layer
// part of routed experts followed by its expert parts, and hands each to
// fn, checked against the config.
func (m *Manifest) eachPart(ctx context.Context, get Getter, s Span, fn func(PartRef, *Part) error) error {
	for _, r := range m.PartRefs(s) {
		p, err := m.GetPart(ctx, get, r)
		if err != nil {
			return err
		}
		if err := fn(r, p); err != nil {
			return err
		}
		for _, er := range p.ExpertRefs(r) {
			if !s.Experts.Has(er.Expert) {
				continue
			}
			ep, err := m.GetPart(ctx, get, er)
			if err != nil {
				return err
			}
			if err := fn(er, ep); err != nil {
				return err
			}
		}
	}
	return nil
}

// LayerBytes is the size of layer i's tensors, its experts' included.
func (m *Manifest) LayerBytes(ctx context.Context, get Getter, i int) (int64, error) {
	if i < 0 || i >= len(m.Layers) {
		return 0, fmt.Errorf("shards: layer %d outside the model's %d", i, len(m.Layers))
	}
	var n int64
	err := m.eachPart(ctx, get, Span{First: i, Last: i + 1}, func(_ PartRef, p *Part) error {
		for _, t := range p.Tensors {
			n += t.Size
		}
		return nil
	})
	return n, err
}

// BlocksFor lists every block a span of the model needs, in order: the
// manifest, the parts, then the chunks (with the tokenizer's when the span
// asks for it), and the bytes of those chunks. It fetches the manifest and
// the parts through get, and checks each part against the config, so a
// hostile manifest cannot make a node fetch more than its config implies.
func BlocksFor(ctx context.Context, get Getter, root cid.Cid, s Span) ([]cid.Cid, int64, error) {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return nil, 0, err
	}
	if err := m.checkSpan(s); err != nil {
		return nil, 0, err
	}
	out := []cid.Cid{root}
	var bytes int64
	var chunks []cid.Cid
	if err := m.eachPart(ctx, get, s, func(r PartRef, p *Part) error {
		out = append(out, r.CID)
		for _, t := range p.Tensors {
			bytes += t.Size
			for _, c := range t.Chunks {
				chunks = append(chunks, c.CID)
			}
		}
		return nil
	}); err != nil {
		return nil, 0, err
	}
	if s.First < s.Last && m.RopeFreqs != nil {
		bytes += m.RopeFreqs.Size
		for _, c := range m.RopeFreqs.Chunks {
			chunks = append(chunks, c.CID)
		}
	}
	if s.Tokenizer && m.Tokenizer != nil {
		bytes += m.Tokenizer.Size
		for _, c := range m.Tokenizer.Chunks {
			chunks = append(chunks, c.CID)
		}
	}
	return append(out, chunks...), bytes, nil
}

// eachChunk fetches a blob's chunks in order, verifies each against its
// CID and its expected length (ChunkSize but for the last), and
// hands it to fn.
func eachChunk(ctx context.Context, get Getter, what string, b *Blob, fn func([]byte) error) error {
	left := b.Size
	for i, c := range b.Chunks {
		blk, err := get.Get(ctx, c.CID)
		if err != nil {
			return fmt.Errorf("shards: %s chunk %d (%s): %w", what, i, c.CID, err)
		}
		if err := blk.Verify(); err != nil {
			return fmt.Errorf("shards: %s chunk %d: %w", what, i, err)
		}
		if want := min(left, ChunkSize); int64(len(blk.Data)) != want {
			return fmt.Errorf("shards: %s chunk %d (%s): %d bytes, want %d", what, i, c.CID, len(blk.Data), want)
		}
		left -= int64(len(blk.Data))
		if err := fn(blk.Data); err != nil {
			return err
		}
	}
	if left != 0 {
		return fmt.Errorf("shards: %s: chunks short of the %d bytes listed", what, b.Size)
	}
	return nil
}

// readBlob fetches and joins a blob's chunks into one buffer.
func readBlob(ctx context.Context, get Getter, what string, b *Blob) ([]byte, error) {
	out := make([]byte, 0, b.Size)
	err := eachChunk(ctx, get, what, b, func(d []byte) error {
		out = append(out, d...)
		return nil
	})
	return out, err
}

// Loaded is a model (or a span of it) rebuilt from blocks.
type Loaded struct {
	Manifest  *Manifest
	Weights   *model.Weights
	Tokenizer tokenizer.Tokenizer // nil if the span did not ask for it or the model has none
	// ChatTemplate is the Jinja chat template kept in the tokenizer part
	// (the source GGUF's tokenizer.chat_template, which model/chat
	// renders); "" when the model has none or the span did not ask for
	// the tokenizer.
	ChatTemplate string
}

// chatTemplateKey is the GGUF key of a model's chat template (model/chat's
// MetadataKey).
const chatTemplateKey = "tokenizer.chat_template"

// Load rebuilds the span s of the model root from blocks, verifying each
// one, and checks every tensor's shape against the config.
func Load(ctx context.Context, get Getter, root cid.Cid, s Span) (*Loaded, error) {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return nil, err
	}
	c := m.Config
	if err := m.checkSpan(s); err != nil {
		return nil, err
	}
	w := &model.Weights{Config: c, Layers: make([]*model.Layer, c.Layers)}
	tensors := map[string]*Tensor{}
	if err := m.eachPart(ctx, get, s, func(_ PartRef, p *Part) error {
		for i := range p.Tensors {
			tensors[p.Tensors[i].Name] = &p.Tensors[i]
		}
		return nil
	}); err != nil {
		return nil, err
	}
	mat := func(name string, rows, cols int) (*kernels.Matrix, error) {
		t, ok := tensors[name]
		if !ok {
			return nil, fmt.Errorf("shards: tensor %s missing from its part", name)
		}
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != cols {
			return nil, fmt.Errorf("shards: tensor %s has shape %v, want [%d %d]", name, t.Shape, rows, cols)
		}
		dt, _ := kernels.DTypeNamed(t.DType)
		data, err := readBlob(ctx, get, "tensor "+name, &t.Blob)
		if err != nil {
			return nil, err
		}
		return kernels.NewMatrix(dt, rows, cols, data)
	}
	vec := func(name string, n int) ([]float32, error) {
		t, ok := tensors[name]
		if !ok {
			return nil, fmt.Errorf("shards: tensor %s missing from its part", name)
		}
		if len(t.Shape) != 1 || t.Shape[0] != n {
			return nil, fmt.Errorf("shards: tensor %s has shape %v, want [%d]", name, t.Shape, n)
		}
		data, err := readBlob(ctx, get, "tensor "+name, &t.Blob)
		if err != nil {
			return nil, err
		}
		return kernels.BytesF32(data), nil // f32, checked by CheckPart
	}
	kv := c.KVDim()
	if s.Embedding || (s.Head && c.SharedClassifier) {
		if w.Embedding, err = mat("token_embd.weight", c.Vocab, c.Dim); err != nil {
			return nil, err
		}
	}
	for i := s.First; i < s.Last; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		l := &model.Layer{}
		steps := []func() error{
			func() (err error) { l.AttnNorm, err = vec(p+"attn_norm.weight", c.Dim); return },
		}
		if c.KVLoRA > 0 {
			steps = append(steps, func() (err error) { err = loadLatent(m, l, p, mat, vec); return })
		} else {
			steps = append(steps,
				func() (err error) { l.Wq, err = mat(p+"attn_q.weight", c.QDim(), c.Dim); return },
				func() (err error) { l.Wk, err = mat(p+"attn_k.weight", kv, c.Dim); return },
				func() (err error) { l.Wv, err = mat(p+"attn_v.weight", kv, c.Dim); return })
		}
		steps = append(steps,
			func() (err error) { l.Wo, err = mat(p+"attn_output.weight", c.Dim, c.Heads*c.ValueDim()); return },
			func() (err error) { l.FFNNorm, err = vec(p+"ffn_norm.weight", c.Dim); return })
		if m.expertLayer(i) {
			steps = append(steps, func() (err error) { l.Experts, err = loadExperts(m, i, s.Experts, mat, vec); return })
		} else {
			steps = append(steps,
				func() (err error) { l.W1, err = mat(p+"ffn_gate.weight", c.Hidden, c.Dim); return },
				func() (err error) { l.W2, err = mat(p+"ffn_down.weight", c.Dim, c.Hidden); return },
				func() (err error) { l.W3, err = mat(p+"ffn_up.weight", c.Hidden, c.Dim); return })
		}
		for _, n := range m.LayerTensors {
			x, _ := layerTensorNamed(n)
			steps = append(steps, func() (err error) { *x.of(l), err = vec(p+n, x.len(&c)); return })
		}
		for _, f := range steps {
			if err := f(); err != nil {
				return nil, err
			}
		}
		w.Layers[i] = l
	}
	if s.First < s.Last && m.RopeFreqs != nil {
		tensors[ropeFreqsName] = m.RopeFreqs
		if w.RopeFreqs, err = vec(ropeFreqsName, c.RotaryDim()/2); err != nil {
			return nil, err
		}
	}
	if s.Head {
		if w.FinalNorm, err = vec("output_norm.weight", c.Dim); err != nil {
			return nil, err
		}
		if c.SharedClassifier {
			w.Output = w.Embedding
		} else if w.Output, err = mat("output.weight", c.Vocab, c.Dim); err != nil {
			return nil, err
		}
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	out := &Loaded{Manifest: m, Weights: w}
	if s.Tokenizer && m.Tokenizer != nil {
		data, err := readBlob(ctx, get, "tokenizer", m.Tokenizer)
		if err != nil {
			return nil, err
		}
		g, err := checkpoints.ParseGGUF(data)
		if err != nil {
			return nil, fmt.Errorf("shards: tokenizer: %w", err)
		}
		if out.Tokenizer, err = checkpoints.TokenizerFromGGUF(g); err != nil {
			return nil, fmt.Errorf("shards: tokenizer: %w", err)
		}
		if out.Tokenizer != nil && out.Tokenizer.VocabSize() != c.Vocab {
			return nil, fmt.Errorf("shards: tokenizer has %d tokens, the model %d", out.Tokenizer.VocabSize(), c.Vocab)
		}
		if _, ok := g.Get(chatTemplateKey); ok {
			if out.ChatTemplate, err = g.String(chatTemplateKey); err != nil {
				return nil, fmt.Errorf("shards: tokenizer: %w", err)
			}
		}
	}
	return out, nil
}

// loadExperts reads the routed experts of layer i through mat and vec
// (Load's readers of a named tensor): those of set, the others nil.
func loadExperts(m *Manifest, i int, set model.ExpertSet, mat func(string, int, int) (*kernels.Matrix, error), vec func(string, int) ([]float32, error)) (*model.Experts, error) {
	c, lay := &m.Config, m.Experts
	p := fmt.Sprintf("blk.%d.", i)
	x := &model.Experts{}
	var err error
	if x.Router, err = mat(p+tnRouter, c.Experts, c.Dim); err != nil {
		return nil, err
	}
	if lay.Bias {
		if x.Bias, err = vec(p+tnRouterBias, c.Experts); err != nil {
			return nil, err
		}
	}
	if sh := lay.Shared; sh > 0 {
		if x.SharedGate, err = mat(p+"ffn_gate_shexp.weight", sh, c.Dim); err != nil {
			return nil, err
		}
		if x.SharedDown, err = mat(p+"ffn_down_shexp.weight", c.Dim, sh); err != nil {
			return nil, err
		}
		if x.SharedUp, err = mat(p+"ffn_up_shexp.weight", sh, c.Dim); err != nil {
			return nil, err
		}
	}
	h := c.ExpertHidden
	x.Gate, x.Up, x.Down = make([]*kernels.Matrix, c.Experts), make([]*kernels.Matrix, c.Experts), make([]*kernels.Matrix, c.Experts)
	for e := range c.Experts {
		if !set.Has(e) {
			continue // held elsewhere
		}
		if x.Gate[e], err = mat(expertName(i, e, "ffn_gate"), h, c.Dim); err != nil {
			return nil, err
		}
		if x.Down[e], err = mat(expertName(i, e, "ffn_down"), c.Dim, h); err != nil {
			return nil, err
		}
		if x.Up[e], err = mat(expertName(i, e, "ffn_up"), h, c.Dim); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// loadLatent reads the latent attention of layer l (tensors prefixed p)
// through mat and vec, in the shapes of the manifest's latentAttention.
func loadLatent(m *Manifest, l *model.Layer, p string, mat func(string, int, int) (*kernels.Matrix, error), vec func(string, int) ([]float32, error)) error {
	a := &model.MLA{}
	for _, w := range m.latentAttention(p) {
		name := strings.TrimPrefix(w.name, p)
		if len(w.shape) == 1 {
			v, err := vec(w.name, w.shape[0])
			if err != nil {
				return err
			}
			switch name {
			case "attn_q_a_norm.weight":
				a.QANorm = v
			case "attn_kv_a_norm.weight":
				a.KVANorm = v
			}
			continue
		}
		mm, err := mat(w.name, w.shape[0], w.shape[1])
		if err != nil {
			return err
		}
		switch name {
		case "attn_q.weight":
			l.Wq = mm
		case "attn_q_a.weight":
			a.QA = mm
		case "attn_q_b.weight":
			a.QB = mm
		case "attn_kv_a_mqa.weight":
			a.KVA = mm
		case "attn_kv_b.weight":
			a.KVB = mm
		}
	}
	l.MLA = a
	return nil
}
