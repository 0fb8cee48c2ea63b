package shards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mycel-net/mycel/checkpoints/shards/block"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// Format versions written in manifests and parts. A model whose block is
// Llama 2's (no switch of the config on, no optional layer tensor, no
// rotary frequency factors) is written as ManifestFormat, so that its CID
// is the one every earlier version gave; any other as ManifestFormat2,
// which adds the layer's optional tensors and the rotary frequency
// factors. Both are read; parts are PartFormat in either.
const (
	ManifestFormat  = "mycel-model/1"
	ManifestFormat2 = "mycel-model/2"
	PartFormat      = "mycel-part/1"
)

// layerTensor is an optional tensor of a layer part: its name after
// "blk.N.", its length for a config, and where a Layer keeps it.
type layerTensor struct {
	name string
	len  func(c *model.Config) int
	of   func(*model.Layer) *[]float32
}

func dimLen(c *model.Config) int  { return c.Dim }
func qLen(c *model.Config) int    { return c.QDim() }
func kvLen(c *model.Config) int   { return c.KVDim() }
func headLen(c *model.Config) int { return c.HeadDim() }

// layerTensors are the optional tensors a layer part of a ManifestFormat2
// model may hold, in the order they follow the nine of Llama 2's block.
// All are f32 vectors.
var layerTensors = []layerTensor{
	{"attn_q.bias", qLen, func(l *model.Layer) *[]float32 { return &l.BQ }}, // Qwen2
	{"attn_k.bias", kvLen, func(l *model.Layer) *[]float32 { return &l.BK }},
	{"attn_v.bias", kvLen, func(l *model.Layer) *[]float32 { return &l.BV }},
	{"attn_q_norm.weight", headLen, func(l *model.Layer) *[]float32 { return &l.QNorm }}, // Qwen3
	{"attn_k_norm.weight", headLen, func(l *model.Layer) *[]float32 { return &l.KNorm }},
	{"post_attention_norm.weight", dimLen, func(l *model.Layer) *[]float32 { return &l.PostAttnNorm }}, // Gemma 2
	{"post_ffw_norm.weight", dimLen, func(l *model.Layer) *[]float32 { return &l.PostFFNNorm }},
}

// LayerTensors names the optional tensors of a layer part (after
// "blk.N."), in the order a part lists them.
func LayerTensors() []string {
	out := make([]string, len(layerTensors))
	for i, x := range layerTensors {
		out[i] = x.name
	}
	return out
}

// layerTensorNamed returns the optional layer tensor n and its index.
func layerTensorNamed(n string) (layerTensor, int) {
	for i, x := range layerTensors {
		if x.name == n {
			return x, i
		}
	}
	return layerTensor{}, -1
}

// ropeFreqsName is the tensor of the rotary frequency factors.
const ropeFreqsName = "rope_freqs.weight"

// NodePrefix addresses manifest and part blocks: CIDv1, DAG-JSON codec,
// sha2-256. Tensor and tokenizer chunks are raw blocks (block.Prefix).
// With the DAG-JSON codec any IPLD tool can follow the links of a model,
// down to its chunks.
var NodePrefix = cid.Prefix{Version: 1, Codec: cid.DagJSON, MhType: mh.SHA2_256, MhLength: -1}

// Limits checked when decoding, before anything is sized from a field.
const (
	// MaxManifestBytes bounds a manifest or part block: one block.
	MaxManifestBytes = block.MaxBlockSize
	// MaxTensorsPerPart bounds a part's tensor list.
	MaxTensorsPerPart = 64
	// MaxTensorBytes bounds one tensor (64 GiB).
	MaxTensorBytes = 64 << 30
	// MaxTokenizerBytes bounds the tokenizer blob (64 MiB; the largest
	// vocabularies with their merges take about a tenth of that).
	MaxTokenizerBytes = 64 << 20
)

// Link is a CID, written in JSON as {"/": "<cid>"} (the DAG-JSON link
// form).
type Link struct{ CID cid.Cid }

// MarshalJSON writes {"/": "<cid>"}.
func (l Link) MarshalJSON() ([]byte, error) {
	if !l.CID.Defined() {
		return nil, errors.New("shards: undefined CID in a link")
	}
	return json.Marshal(map[string]string{"/": l.CID.String()})
}

// UnmarshalJSON reads {"/": "<cid>"}.
func (l *Link) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 || m["/"] == "" {
		return fmt.Errorf("shards: a link must be {\"/\": \"<cid>\"}, got %.40s", b)
	}
	c, err := cid.Decode(m["/"])
	if err != nil {
		return fmt.Errorf("shards: link %q: %w", m["/"], err)
	}
	l.CID = c
	return nil
}

// Blob is a byte string cut into blocks: every chunk but the last holds
// exactly ChunkSize bytes.
type Blob struct {
	Size   int64  `json:"size"`
	Chunks []Link `json:"chunks"`
}

// Manifest is the root of a model. Its block's CID is the model's
// identity.
type Manifest struct {
	Format string `json:"format"`
	// Name is the source file's general.name, or the one given on import.
	Name   string       `json:"name,omitempty"`
	Config model.Config `json:"config"`
	// Tokenizer is a GGUF file with only tokenizer.* metadata; absent
	// when the source had none.
	Tokenizer *Blob  `json:"tokenizer,omitempty"`
	Embedding Link   `json:"embedding"`
	Layers    []Link `json:"layers"`
	Head      Link   `json:"head"`

	// ManifestFormat2 only.

	// LayerTensors lists the optional tensors (of LayerTensors(), in
	// its order) that every layer part holds after the nine of Llama 2's
	// block.
	LayerTensors []string `json:"layer_tensors,omitempty"`
	// RopeFreqs is rope_freqs.weight, the factors dividing the rotary
	// frequencies (f32, [head_dim/2]; Llama 3), which every layer uses.
	RopeFreqs *Tensor `json:"rope_freqs,omitempty"`
	// Experts, for a mixture of experts (Config.Experts > 0), says which
	// layers hold routed experts and what they hold beside them; nil for
	// a model without experts.
	Experts *ExpertLayout `json:"experts,omitempty"`
}

// ExpertLayout describes the layers of routed experts of a ManifestFormat2
// model. Layers from DenseFirst on hold routed experts; the ones before it
// keep the dense FFN. The part of an expert layer holds the router
// (ffn_gate_inp.weight, [Experts, Dim]), then exp_probs_b.bias ([Experts])
// when Bias is set, then the shared experts' ffn_gate_shexp, ffn_down_shexp
// and ffn_up_shexp ([Shared, Dim], [Dim, Shared], [Shared, Dim]) when
// Shared > 0, in place of the dense FFN's three matrices; its experts list
// links, in expert order, to one expert part each, which holds that
// expert's blk.N.ffn_gate.E.weight, ffn_down.E and ffn_up.E ([ExpertHidden,
// Dim], [Dim, ExpertHidden], [ExpertHidden, Dim]). So a node can fetch a
// layer's experts one by one.
type ExpertLayout struct {
	DenseFirst int  `json:"dense_first,omitempty"`
	Shared     int  `json:"shared,omitempty"`
	Bias       bool `json:"bias,omitempty"`
}

// MaxSharedHidden bounds ExpertLayout.Shared.
const MaxSharedHidden = 1 << 20

// expertLayer reports whether layer i holds routed experts.
func (m *Manifest) expertLayer(i int) bool {
	return m.Experts != nil && i >= m.Experts.DenseFirst
}

// Tensor is one tensor of a part. Shape is [rows, cols] for a matrix (rows
// are outputs: GGUF's dims reversed) and [n] for a vector.
type Tensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Blob
}

// Part is the embedding, one layer, or the head.
type Part struct {
	Format  string   `json:"format"`
	Tensors []Tensor `json:"tensors"`
	// Experts links a layer part of routed experts to its expert parts,
	// one per expert in order (ExpertLayout); absent in any other part.
	Experts []Link `json:"experts,omitempty"`
}

// ExpertRefs lists the expert parts the layer part p of layer r links to.
func (p *Part) ExpertRefs(r PartRef) []PartRef {
	out := make([]PartRef, len(p.Experts))
	for i, l := range p.Experts {
		out[i] = PartRef{Kind: ExpertPart, Layer: r.Layer, Expert: i, CID: l.CID}
	}
	return out
}

// OwnChunks lists the chunks the manifest links to itself, not through a
// part: the tokenizer's, then rope_freqs'.
func (m *Manifest) OwnChunks() []cid.Cid {
	var out []cid.Cid
	for _, b := range []*Blob{m.Tokenizer, m.ropeBlob()} {
		if b != nil {
			for _, c := range b.Chunks {
				out = append(out, c.CID)
			}
		}
	}
	return out
}

func (m *Manifest) ropeBlob() *Blob {
	if m.RopeFreqs == nil {
		return nil
	}
	return &m.RopeFreqs.Blob
}

// Encode returns the manifest's block; its CID is the model's.
func (m *Manifest) Encode() (Block, error) { return encodeNode(m) }

// Encode returns the part's block.
func (p *Part) Encode() (Block, error) { return encodeNode(p) }

// encodeNode writes v as canonical DAG-JSON (object keys sorted by their
// bytes, no whitespace, no HTML escaping) in a block addressed with
// NodePrefix, so that equal values always give equal CIDs whatever the
// order of the Go struct fields.
func encodeNode(v any) (Block, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Block{}, fmt.Errorf("shards: encode: %w", err)
	}
	b, err = canonicalJSON(b)
	if err != nil {
		return Block{}, fmt.Errorf("shards: encode: %w", err)
	}
	if len(b) > MaxManifestBytes {
		return Block{}, fmt.Errorf("shards: %d-byte manifest over the %d-byte block limit", len(b), MaxManifestBytes)
	}
	c, err := NodePrefix.Sum(b)
	if err != nil {
		return Block{}, fmt.Errorf("shards: encode: %w", err)
	}
	return Block{CID: c, Data: b}, nil
}

// canonicalJSON rewrites a JSON document with sorted keys and no
// whitespace. Numbers keep their literal text.
func canonicalJSON(b []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var tree any
	if err := d.Decode(&tree); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	e := json.NewEncoder(&out)
	e.SetEscapeHTML(false)
	if err := e.Encode(tree); err != nil { // maps are written with sorted keys
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

func decodeStrict(b []byte, v any) error {
	if len(b) > MaxManifestBytes {
		return fmt.Errorf("%d bytes, over the %d-byte limit", len(b), MaxManifestBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// DecodeManifest parses and checks a manifest block: the format, the
// config (bounded by model.Config.Validate), one layer link per layer,
// and the tokenizer blob's size and chunk count.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(b, &m); err != nil {
		return nil, fmt.Errorf("shards: not a model manifest: %w", err)
	}
	switch m.Format {
	case ManifestFormat, ManifestFormat2:
	default:
		return nil, fmt.Errorf("shards: not a model manifest: format %q, want %q or %q", m.Format, ManifestFormat, ManifestFormat2)
	}
	if err := m.Config.Validate(); err != nil {
		return nil, fmt.Errorf("shards: manifest: %w", err)
	}
	if m.Format == ManifestFormat {
		if what := (&model.Weights{Config: m.Config}).Extras(false); len(what) > 0 || m.LayerTensors != nil || m.RopeFreqs != nil {
			if m.LayerTensors != nil {
				what = append(what, "layer_tensors")
			}
			if m.RopeFreqs != nil {
				what = append(what, "rope_freqs")
			}
			if m.Experts != nil {
				what = append(what, "experts")
			}
			return nil, fmt.Errorf("shards: a %s manifest holds Llama 2's block only, and this one has %s", ManifestFormat, strings.Join(what, ", "))
		}
	}
	if err := checkLayerTensors(m.LayerTensors); err != nil {
		return nil, err
	}
	if err := m.checkExperts(); err != nil {
		return nil, err
	}
	if t := m.RopeFreqs; t != nil {
		if t.Name != ropeFreqsName || t.DType != kernels.F32.String() || !slices.Equal(t.Shape, []int{m.Config.RotaryDim() / 2}) {
			return nil, fmt.Errorf("shards: manifest: rope_freqs is %s %s %v, want %s f32 [%d]", t.Name, t.DType, t.Shape, ropeFreqsName, m.Config.RotaryDim()/2)
		}
		if err := checkTensor(t); err != nil {
			return nil, err
		}
	}
	if len(m.Layers) != m.Config.Layers {
		return nil, fmt.Errorf("shards: manifest lists %d layers, its config %d", len(m.Layers), m.Config.Layers)
	}
	if !m.Embedding.CID.Defined() || !m.Head.CID.Defined() {
		return nil, errors.New("shards: manifest without embedding or head")
	}
	for i, l := range m.Layers {
		if !l.CID.Defined() {
			return nil, fmt.Errorf("shards: manifest: layer %d has no CID", i)
		}
	}
	if m.Tokenizer != nil {
		if m.Tokenizer.Size > MaxTokenizerBytes {
			return nil, fmt.Errorf("shards: tokenizer of %d bytes, over the %d-byte limit", m.Tokenizer.Size, MaxTokenizerBytes)
		}
		if err := checkBlob("tokenizer", m.Tokenizer); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// checkBlob checks that a blob's chunk count fits its size.
func checkBlob(what string, b *Blob) error {
	if b.Size < 0 || b.Size > MaxTensorBytes {
		return fmt.Errorf("shards: %s: size %d out of range", what, b.Size)
	}
	want := (b.Size + ChunkSize - 1) / ChunkSize
	if int64(len(b.Chunks)) != want {
		return fmt.Errorf("shards: %s: %d chunks for %d bytes, want %d", what, len(b.Chunks), b.Size, want)
	}
	for i, c := range b.Chunks {
		if !c.CID.Defined() {
			return fmt.Errorf("shards: %s: chunk %d has no CID", what, i)
		}
	}
	return nil
}

// DecodePart parses and checks a part block on its own: every tensor's
// size must be what its dtype and shape say, bounded by MaxTensorBytes.
// Manifest.CheckPart then checks it against the model's config.
func DecodePart(b []byte) (*Part, error) {
	var p Part
	if err := decodeStrict(b, &p); err != nil {
		return nil, fmt.Errorf("shards: not a model part: %w", err)
	}
	if p.Format != PartFormat {
		return nil, fmt.Errorf("shards: not a model part: format %q, want %q", p.Format, PartFormat)
	}
	if len(p.Tensors) == 0 || len(p.Tensors) > MaxTensorsPerPart {
		return nil, fmt.Errorf("shards: part with %d tensors (1..%d)", len(p.Tensors), MaxTensorsPerPart)
	}
	if p.Experts != nil && len(p.Experts) == 0 {
		return nil, errors.New("shards: part with an empty expert list (omit it instead)")
	}
	for i, l := range p.Experts {
		if !l.CID.Defined() {
			return nil, fmt.Errorf("shards: part: expert %d has no CID", i)
		}
	}
	for i := range p.Tensors {
		t := &p.Tensors[i]
		if t.Name == "" {
			return nil, fmt.Errorf("shards: part tensor %d has no name", i)
		}
		if err := checkTensor(t); err != nil {
			return nil, err
		}
	}
	return &p, nil
}

// checkTensor checks that a tensor's size is what its dtype and shape
// say, bounded by MaxTensorBytes, and that its chunks fit the size.
func checkTensor(t *Tensor) error {
	size, err := tensorSize(t)
	if err != nil {
		return fmt.Errorf("shards: tensor %s: %w", t.Name, err)
	}
	if size != t.Size {
		return fmt.Errorf("shards: tensor %s: %d bytes, but %s %v needs %d", t.Name, t.Size, t.DType, t.Shape, size)
	}
	return checkBlob("tensor "+t.Name, &t.Blob)
}

// checkLayerTensors checks a manifest's layer_tensors: names of
// LayerTensors, each at most once, in its order.
func checkLayerTensors(names []string) error {
	if names != nil && len(names) == 0 {
		return errors.New("shards: manifest: layer_tensors is empty (omit it instead)")
	}
	return checkLayerTensorOrder(names)
}

// checkExperts checks that the manifest has an expert layout exactly when
// its config has experts, and that the layout fits the config.
func (m *Manifest) checkExperts() error {
	x, c := m.Experts, &m.Config
	switch {
	case x == nil && c.Experts == 0:
		return nil
	case x == nil:
		return fmt.Errorf("shards: manifest: the config has %d experts but no expert layout", c.Experts)
	case c.Experts == 0:
		return errors.New("shards: manifest: an expert layout, but the config has no experts")
	case x.DenseFirst < 0 || x.DenseFirst >= c.Layers:
		return fmt.Errorf("shards: manifest: experts from layer %d, outside the %d layers", x.DenseFirst, c.Layers)
	case x.Shared < 0 || x.Shared > MaxSharedHidden:
		return fmt.Errorf("shards: manifest: shared experts %d wide, outside 0..%d", x.Shared, MaxSharedHidden)
	}
	return nil
}

// checkLayerTensorOrder checks that names are of LayerTensors, each at
// most once, in its order.
func checkLayerTensorOrder(names []string) error {
	at := 0
	for _, n := range names {
		_, i := layerTensorNamed(n)
		if i < 0 {
			return fmt.Errorf("shards: manifest: layer tensor %q is not one of %s", n, strings.Join(LayerTensors(), ", "))
		}
		if i < at {
			return fmt.Errorf("shards: manifest: layer tensor %q repeated or out of order (want the order %s)", n, strings.Join(LayerTensors(), ", "))
		}
		at = i + 1
	}
	return nil
}

// tensorSize is the stored size of a tensor of t's dtype and shape.
func tensorSize(t *Tensor) (int64, error) {
	dt, err := kernels.DTypeNamed(t.DType)
	if err != nil {
		return 0, err
	}
	if len(t.Shape) < 1 || len(t.Shape) > 2 {
		return 0, fmt.Errorf("shape %v: want 1 or 2 dimensions", t.Shape)
	}
	rows, cols := 1, t.Shape[len(t.Shape)-1]
	if len(t.Shape) == 2 {
		rows = t.Shape[0]
	}
	if rows <= 0 || cols <= 0 || int64(rows) > MaxTensorBytes || int64(cols) > MaxTensorBytes {
		return 0, fmt.Errorf("shape %v out of range", t.Shape)
	}
	rb, err := dt.RowBytes(cols)
	if err != nil {
		return 0, err
	}
	if int64(rows) > MaxTensorBytes/int64(max(rb, 1)) {
		return 0, fmt.Errorf("shape %v over %d bytes", t.Shape, int64(MaxTensorBytes))
	}
	return int64(rows) * int64(rb), nil
}

// PartKind says which part of a model a part is.
type PartKind int

// The kinds of part.
const (
	EmbeddingPart PartKind = iota
	LayerPart
	HeadPart
	// ExpertPart is one routed expert of a layer, linked from the
	// layer's part.
	ExpertPart
)

// PartRef names one part of a model: its kind, its layer (for LayerPart
// and ExpertPart), its expert (for ExpertPart) and its CID.
type PartRef struct {
	Kind   PartKind
	Layer  int
	Expert int
	CID    cid.Cid
}

// String is "embedding", "layer 3", "layer 3 expert 5" or "head".
func (r PartRef) String() string {
	switch r.Kind {
	case EmbeddingPart:
		return "embedding"
	case LayerPart:
		return fmt.Sprintf("layer %d", r.Layer)
	case HeadPart:
		return "head"
	case ExpertPart:
		return fmt.Sprintf("layer %d expert %d", r.Layer, r.Expert)
	}
	return fmt.Sprintf("part kind %d", int(r.Kind))
}

// want is a tensor a part must hold.
type want struct {
	name  string
	shape []int
}

// expected lists, in order, the tensors the manifest puts in a part.
// Norms, biases and the other optional layer tensors are vectors;
// everything else is a matrix [rows, cols].
func (m *Manifest) expected(r PartRef) []want {
	c := &m.Config
	d, kv := c.Dim, c.KVDim()
	switch r.Kind {
	case EmbeddingPart:
		return []want{{"token_embd.weight", []int{c.Vocab, d}}}
	case LayerPart:
		p := fmt.Sprintf("blk.%d.", r.Layer)
		ws := []want{{p + "attn_norm.weight", []int{d}}}
		if c.KVLoRA > 0 {
			ws = append(ws, m.latentAttention(p)...)
		} else {
			ws = append(ws, want{p + "attn_q.weight", []int{c.QDim(), d}},
				want{p + "attn_k.weight", []int{kv, d}},
				want{p + "attn_v.weight", []int{kv, d}})
		}
		ws = append(ws, want{p + "attn_output.weight", []int{d, c.Heads * c.ValueDim()}},
			want{p + "ffn_norm.weight", []int{d}})
		if x := m.Experts; m.expertLayer(r.Layer) {
			ws = append(ws, want{p + tnRouter, []int{c.Experts, d}})
			if x.Bias {
				ws = append(ws, want{p + tnRouterBias, []int{c.Experts}})
			}
			if sh := x.Shared; sh > 0 {
				ws = append(ws, want{p + "ffn_gate_shexp.weight", []int{sh, d}},
					want{p + "ffn_down_shexp.weight", []int{d, sh}},
					want{p + "ffn_up_shexp.weight", []int{sh, d}})
			}
		} else {
			ws = append(ws, want{p + "ffn_gate.weight", []int{c.Hidden, d}},
				want{p + "ffn_down.weight", []int{d, c.Hidden}},
				want{p + "ffn_up.weight", []int{c.Hidden, d}})
		}
		for _, n := range m.LayerTensors {
			x, _ := layerTensorNamed(n)
			ws = append(ws, want{p + n, []int{x.len(c)}})
		}
		return ws
	case ExpertPart:
		h := c.ExpertHidden
		return []want{{expertName(r.Layer, r.Expert, "ffn_gate"), []int{h, d}},
			{expertName(r.Layer, r.Expert, "ffn_down"), []int{d, h}},
			{expertName(r.Layer, r.Expert, "ffn_up"), []int{h, d}}}
	default:
		ws := []want{{"output_norm.weight", []int{d}}}
		if !c.SharedClassifier {
			ws = append(ws, want{"output.weight", []int{c.Vocab, d}})
		}
		return ws
	}
}

// latentAttention lists the tensors of latent attention (the config's
// KVLoRA > 0) of the layer whose tensors p prefixes, in place of q, k and
// v: q's low-rank projections with their norm (or one attn_q when QLoRA
// is 0), then the keys' and values' latent projection, its norm and the
// up-projection.
func (m *Manifest) latentAttention(p string) []want {
	c := &m.Config
	r := c.RotaryDim()
	var ws []want
	if c.QLoRA > 0 {
		ws = append(ws, want{p + "attn_q_a.weight", []int{c.QLoRA, c.Dim}},
			want{p + "attn_q_a_norm.weight", []int{c.QLoRA}},
			want{p + "attn_q_b.weight", []int{c.QDim(), c.QLoRA}})
	} else {
		ws = append(ws, want{p + "attn_q.weight", []int{c.QDim(), c.Dim}})
	}
	return append(ws, want{p + "attn_kv_a_mqa.weight", []int{c.KVLoRA + r, c.Dim}},
		want{p + "attn_kv_a_norm.weight", []int{c.KVLoRA}},
		want{p + "attn_kv_b.weight", []int{c.KVHeads * (c.HeadDim() - r + c.ValueDim()), c.KVLoRA}})
}

// CheckPart checks a decoded part against the manifest's config: the
// tensors the part must hold, in order, with their shapes; norms in f32.
// Sizes follow from the shapes (DecodePart checked them), so a part that
// passes is bounded by the config.
func (m *Manifest) CheckPart(r PartRef, p *Part) error {
	ws := m.expected(r)
	experts := 0
	if r.Kind == LayerPart && m.expertLayer(r.Layer) {
		experts = m.Config.Experts
	}
	if len(p.Experts) != experts {
		return fmt.Errorf("shards: %s part %s: links %d experts, want %d", r, r.CID, len(p.Experts), experts)
	}
	if len(p.Tensors) != len(ws) {
		return fmt.Errorf("shards: %s part %s: %d tensors, want %d", r, r.CID, len(p.Tensors), len(ws))
	}
	for i, w := range ws {
		t := &p.Tensors[i]
		if t.Name != w.name {
			return fmt.Errorf("shards: %s part %s: tensor %d is %q, want %q", r, r.CID, i, t.Name, w.name)
		}
		if !slices.Equal(t.Shape, w.shape) {
			return fmt.Errorf("shards: %s part %s: tensor %s has shape %v, the config says %v", r, r.CID, t.Name, t.Shape, w.shape)
		}
		if len(w.shape) == 1 && t.DType != kernels.F32.String() {
			return fmt.Errorf("shards: %s part %s: vector %s is %s, want f32", r, r.CID, t.Name, t.DType)
		}
	}
	return nil
}

// The tensors of a layer's router, and the stacked expert tensors a GGUF
// file holds them as.
const (
	tnRouter     = "ffn_gate_inp.weight"
	tnRouterBias = "exp_probs_b.bias"
)

// expertName names one matrix (ffn_gate, ffn_down or ffn_up) of expert e
// of layer l: blk.l.<what>.e.weight.
func expertName(l, e int, what string) string {
	return fmt.Sprintf("blk.%d.%s.%d.weight", l, what, e)
}
