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
}

// Whole is the span of a whole model of n layers.
func Whole(n int) Span { return Span{0, n, true, true, true} }

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

// GetManifest fetches and decodes a model's manifest.
func GetManifest(ctx context.Context, get Getter, root cid.Cid) (*Manifest, error) {
	b, err := get.Get(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("shards: manifest %s: %w", root, err)
	}
	m, err := DecodeManifest(b.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (CID %s)", err, root)
	}
	return m, nil
}

// Parts lists the part CIDs a span needs. With a shared classifier the
// head needs the embedding too.
func (m *Manifest) Parts(s Span) []cid.Cid {
	var out []cid.Cid
	if s.Embedding || (s.Head && m.Config.SharedClassifier) {
		out = append(out, m.Embedding.CID)
	}
	for _, l := range m.Layers[s.First:s.Last] {
		out = append(out, l.CID)
	}
	if s.Head {
		out = append(out, m.Head.CID)
	}
	return out
}

func getPart(ctx context.Context, get Getter, c cid.Cid) (*Part, error) {
	b, err := get.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("shards: part %s: %w", c, err)
	}
	p, err := DecodePart(b.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (CID %s)", err, c)
	}
	return p, nil
}

// BlocksFor lists every block a span of the model needs, in order: the
// manifest, the parts, then the chunks (with the tokenizer's when the span
// asks for it). It fetches the manifest and the parts through get.
func BlocksFor(ctx context.Context, get Getter, root cid.Cid, s Span) ([]cid.Cid, int64, error) {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return nil, 0, err
	}
	if s.First < 0 || s.Last > len(m.Layers) || s.First > s.Last {
		return nil, 0, fmt.Errorf("shards: layers %d:%d outside the model's %d", s.First, s.Last, len(m.Layers))
	}
	out := []cid.Cid{root}
	var bytes int64
	var chunks []cid.Cid
	for _, pc := range m.Parts(s) {
		p, err := getPart(ctx, get, pc)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, pc)
		for _, t := range p.Tensors {
			bytes += t.Size
			for _, c := range t.Chunks {
				chunks = append(chunks, c.CID)
			}
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

// readBlob fetches and joins a blob's chunks.
func readBlob(ctx context.Context, get Getter, what string, b *Blob) ([]byte, error) {
	out := make([]byte, 0, b.Size)
	for i, c := range b.Chunks {
		blk, err := get.Get(ctx, c.CID)
		if err != nil {
			return nil, fmt.Errorf("shards: %s chunk %d: %w", what, i, err)
		}
		if err := blk.Verify(); err != nil {
			return nil, fmt.Errorf("shards: %s chunk %d: %w", what, i, err)
		}
		out = append(out, blk.Data...)
	}
	if int64(len(out)) != b.Size {
		return nil, fmt.Errorf("shards: %s: %d bytes in its chunks, %d listed", what, len(out), b.Size)
	}
	return out, nil
}

// Loaded is a model (or a span of it) rebuilt from blocks.
type Loaded struct {
	Manifest  *Manifest
	Weights   *model.Weights
	Tokenizer tokenizer.Tokenizer // nil if the span did not ask for it or the model has none
}

// Load rebuilds the span s of the model root from blocks, verifying each
// one, and checks every tensor's shape against the config.
func Load(ctx context.Context, get Getter, root cid.Cid, s Span) (*Loaded, error) {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return nil, err
	}
	c := m.Config
	if s.First < 0 || s.Last > c.Layers || s.First > s.Last {
		return nil, fmt.Errorf("shards: layers %d:%d outside the model's %d", s.First, s.Last, c.Layers)
	}
	w := &model.Weights{Config: c, Layers: make([]*model.Layer, c.Layers)}
	tensors := map[string]*Tensor{}
	var parts []*Part
	for _, pc := range m.Parts(s) {
		p, err := getPart(ctx, get, pc)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
		for i := range p.Tensors {
			tensors[p.Tensors[i].Name] = &p.Tensors[i]
		}
	}
	mat := func(name string, rows, cols int) (*kernels.Matrix, error) {
		t, ok := tensors[name]
		if !ok {
			return nil, fmt.Errorf("shards: tensor %s missing from its part", name)
		}
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != cols {
			return nil, fmt.Errorf("shards: tensor %s has shape %v, want [%d %d]", name, t.Shape, rows, cols)
		}
		dt, _ := kernels.ParseDType(t.DType)
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
		out := make([]float32, n)
		kernels.Decode(out, kernels.DType(mustDType(t.DType)), data)
		return out, nil
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
			func() (err error) { l.Wq, err = mat(p+"attn_q.weight", c.Dim, c.Dim); return },
			func() (err error) { l.Wk, err = mat(p+"attn_k.weight", kv, c.Dim); return },
			func() (err error) { l.Wv, err = mat(p+"attn_v.weight", kv, c.Dim); return },
			func() (err error) { l.Wo, err = mat(p+"attn_output.weight", c.Dim, c.Dim); return },
			func() (err error) { l.FFNNorm, err = vec(p+"ffn_norm.weight", c.Dim); return },
			func() (err error) { l.W1, err = mat(p+"ffn_gate.weight", c.Hidden, c.Dim); return },
			func() (err error) { l.W2, err = mat(p+"ffn_down.weight", c.Dim, c.Hidden); return },
			func() (err error) { l.W3, err = mat(p+"ffn_up.weight", c.Hidden, c.Dim); return },
		}
		for _, f := range steps {
			if err := f(); err != nil {
				return nil, err
			}
		}
		w.Layers[i] = l
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
	}
	return out, nil
}

func mustDType(s string) kernels.DType {
	dt, _ := kernels.ParseDType(s) // checked by DecodePart
	return dt
}
