package shards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mycel-net/mycel/checkpoints/shards/block"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// Format versions written in manifests and parts.
const (
	ManifestFormat = "mycel-model/1"
	PartFormat     = "mycel-part/1"
)

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
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("shards: not a model manifest: format %q, want %q", m.Format, ManifestFormat)
	}
	if err := m.Config.Validate(); err != nil {
		return nil, fmt.Errorf("shards: manifest: %w", err)
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
	for i := range p.Tensors {
		t := &p.Tensors[i]
		if t.Name == "" {
			return nil, fmt.Errorf("shards: part tensor %d has no name", i)
		}
		size, err := tensorSize(t)
		if err != nil {
			return nil, fmt.Errorf("shards: tensor %s: %w", t.Name, err)
		}
		if size != t.Size {
			return nil, fmt.Errorf("shards: tensor %s: %d bytes, but %s %v needs %d", t.Name, t.Size, t.DType, t.Shape, size)
		}
		if err := checkBlob("tensor "+t.Name, &t.Blob); err != nil {
			return nil, err
		}
	}
	return &p, nil
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
	if rows <= 0 || cols <= 0 || rows > MaxTensorBytes || cols > MaxTensorBytes {
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
)

// PartRef names one part of a model: its kind, its layer (for LayerPart)
// and its CID.
type PartRef struct {
	Kind  PartKind
	Layer int
	CID   cid.Cid
}

// String is "embedding", "layer 3" or "head".
func (r PartRef) String() string {
	switch r.Kind {
	case EmbeddingPart:
		return "embedding"
	case LayerPart:
		return fmt.Sprintf("layer %d", r.Layer)
	case HeadPart:
		return "head"
	}
	return fmt.Sprintf("part kind %d", int(r.Kind))
}

// want is a tensor a part must hold.
type want struct {
	name  string
	shape []int
}

// expected lists, in order, the tensors the config puts in a part. Norms
// are vectors; everything else is a matrix [rows, cols].
func expected(c *model.Config, r PartRef) []want {
	d, kv := c.Dim, c.KVDim()
	switch r.Kind {
	case EmbeddingPart:
		return []want{{"token_embd.weight", []int{c.Vocab, d}}}
	case LayerPart:
		p := fmt.Sprintf("blk.%d.", r.Layer)
		return []want{
			{p + "attn_norm.weight", []int{d}},
			{p + "attn_q.weight", []int{d, d}},
			{p + "attn_k.weight", []int{kv, d}},
			{p + "attn_v.weight", []int{kv, d}},
			{p + "attn_output.weight", []int{d, d}},
			{p + "ffn_norm.weight", []int{d}},
			{p + "ffn_gate.weight", []int{c.Hidden, d}},
			{p + "ffn_down.weight", []int{d, c.Hidden}},
			{p + "ffn_up.weight", []int{c.Hidden, d}},
		}
	default:
		ws := []want{{"output_norm.weight", []int{d}}}
		if !c.SharedClassifier {
			ws = append(ws, want{"output.weight", []int{c.Vocab, d}})
		}
		return ws
	}
}

// CheckPart checks a decoded part against the manifest's config: the
// tensors the part must hold, in order, with their shapes; norms in f32.
// Sizes follow from the shapes (DecodePart checked them), so a part that
// passes is bounded by the config.
func (m *Manifest) CheckPart(r PartRef, p *Part) error {
	ws := expected(&m.Config, r)
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
			return fmt.Errorf("shards: %s part %s: norm %s is %s, want f32", r, r.CID, t.Name, t.DType)
		}
	}
	return nil
}
