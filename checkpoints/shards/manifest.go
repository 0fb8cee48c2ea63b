package shards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// Format versions written in manifests and parts.
const (
	ManifestFormat = "mycel-model/1"
	PartFormat     = "mycel-part/1"
)

// Limits checked when decoding, before anything is sized from a field.
const (
	// MaxManifestBytes bounds a manifest or part block: one block.
	MaxManifestBytes = blocks.MaxBlockSize
	// MaxTensorsPerPart bounds a part's tensor list.
	MaxTensorsPerPart = 64
	// MaxTensorBytes bounds one tensor (64 GiB).
	MaxTensorBytes = 64 << 30
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

// Blob is a byte string cut into blocks.
type Blob struct {
	Size   int64  `json:"size"`
	Chunks []Link `json:"chunks"`
}

// Manifest is the root of a model.
type Manifest struct {
	Format string       `json:"format"`
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
// are outputs) and [n] for a vector.
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

// encodeBlock marshals v as compact JSON in a block.
func encodeBlock(v any) (blocks.Block, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return blocks.Block{}, err
	}
	if len(b) > MaxManifestBytes {
		return blocks.Block{}, fmt.Errorf("shards: %d-byte manifest over the %d-byte block limit", len(b), MaxManifestBytes)
	}
	return blocks.NewBlock(b), nil
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

// DecodeManifest parses and checks a manifest block.
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
	if m.Tokenizer != nil {
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
	want := (b.Size + blocks.ChunkSize - 1) / blocks.ChunkSize
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

// DecodePart parses and checks a part block: every tensor's size must be
// what its dtype and shape say.
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
	dt, err := kernels.ParseDType(t.DType)
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
