// Package datasets is the content-addressed layout of a data set: how a
// data set file becomes blocks that peers exchange, and how a node reads
// it back.
//
// A data set is a manifest block, whose CID is the data set's identity,
// and the file itself, untouched, as a blob: the ordered CIDs of the
// 1 MiB raw blocks it is cut into, the same blobs a model's tensors are
// (package shards). The manifest says what the file holds, as its parser
// (train.ParseData) found when it was imported: the format and the
// number of examples; and the file's size and the name given at import.
//
// Manifests are canonical DAG-JSON addressed with shards.NodePrefix, so
// the same file with the same name always gives the same CID, and any
// IPLD tool can follow the links down to the file's chunks.
//
// The caller's duties:
//
//   - Import stores the chunks and then the manifest (last: a store that
//     holds it holds the whole data set) through a Putter; the caller has
//     parsed the file first, and announces the root.
//   - GetManifest and ReadFile take any Getter (the local store, or the
//     network exchange) and re-hash every block.
//
// docs/formats.md specifies the manifest's JSON and the limits enforced
// when decoding it.
package datasets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/shards"
)

// ManifestFormat is the format written in data set manifests.
const ManifestFormat = "mycel-data/1"

// Limits checked when decoding a manifest.
const (
	// MaxFileBytes bounds the file: train.MaxDataBytes.
	MaxFileBytes = 1 << 30
	// MaxNameBytes bounds the name.
	MaxNameBytes = 256
	// MaxDataFormatBytes bounds the data format's name.
	MaxDataFormatBytes = 32
)

// Manifest is the root of a data set.
type Manifest struct {
	Format string `json:"format"`
	// Name is the one given at import (may be empty).
	Name string `json:"name,omitempty"`
	// DataFormat is how the file parses (train.FormatText,
	// FormatJSONText or FormatJSONPair), and Examples how many examples
	// it holds.
	DataFormat string `json:"data_format"`
	Examples   int    `json:"examples"`
	// File is the file's bytes.
	File shards.Blob `json:"file"`
}

// Encode returns the manifest's block; its CID is the data set's.
func (m *Manifest) Encode() (shards.Block, error) { return shards.EncodeNode(m) }

// Chunks lists the CIDs of the file's blocks, in order.
func (m *Manifest) Chunks() []cid.Cid {
	out := make([]cid.Cid, len(m.File.Chunks))
	for i, l := range m.File.Chunks {
		out[i] = l.CID
	}
	return out
}

// ErrNotDataSet means a block is not a data set manifest.
var ErrNotDataSet = errors.New("not a data set manifest")

// DecodeManifest parses and checks a manifest block: the format, the
// bounds of the name, data format, examples and size, and that the chunk
// count fits the size.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := shards.DecodeNode(b, &m); err != nil {
		return nil, fmt.Errorf("datasets: %w: %w", ErrNotDataSet, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("datasets: %w: format %q, want %q", ErrNotDataSet, m.Format, ManifestFormat)
	}
	if len(m.Name) > MaxNameBytes || !utf8.ValidString(m.Name) {
		return nil, fmt.Errorf("datasets: name over %d bytes or not UTF-8", MaxNameBytes)
	}
	if m.DataFormat == "" || len(m.DataFormat) > MaxDataFormatBytes || strings.Trim(m.DataFormat, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return nil, fmt.Errorf("datasets: data format %q: want 1 to %d of a-z, 0-9 and -", m.DataFormat, MaxDataFormatBytes)
	}
	if m.File.Size < 1 || m.File.Size > MaxFileBytes {
		return nil, fmt.Errorf("datasets: file of %d bytes: want 1 to %d", m.File.Size, MaxFileBytes)
	}
	if m.Examples < 1 || int64(m.Examples) > m.File.Size {
		return nil, fmt.Errorf("datasets: %d examples in %d bytes", m.Examples, m.File.Size)
	}
	if err := m.File.Check("file"); err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	return &m, nil
}

// GetManifest fetches, verifies and decodes a data set's manifest.
func GetManifest(ctx context.Context, get shards.Getter, root cid.Cid) (*Manifest, error) {
	b, err := get.Get(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("datasets: manifest %s: %w", root, err)
	}
	if err := b.Verify(); err != nil {
		return nil, fmt.Errorf("datasets: manifest %s: %w", root, err)
	}
	m, err := DecodeManifest(b.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (CID %s)", err, root)
	}
	return m, nil
}

// ReadFile fetches the data set's file through get, verifying every block.
func ReadFile(ctx context.Context, get shards.Getter, m *Manifest) ([]byte, error) {
	data, err := shards.ReadBlob(ctx, get, "data set file", &m.File)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	return data, nil
}

// Imported reports an import.
type Imported struct {
	Root     cid.Cid
	Manifest *Manifest
	// Bytes and Blocks count everything written, the manifest included.
	Bytes  int64
	Blocks int
}

// Import stores data, a data set file its parser found to hold examples
// examples of dataFormat, as blocks through put, the manifest last, and
// returns the data set's CID. The chunks are views of data, not copies.
func Import(ctx context.Context, put shards.Putter, data []byte, name, dataFormat string, examples int) (*Imported, error) {
	blob, chunks := shards.SplitBlob(data)
	m := &Manifest{Format: ManifestFormat, Name: name, DataFormat: dataFormat, Examples: examples, File: blob}
	root, err := m.Encode()
	if err != nil {
		return nil, err
	}
	// What is stored must read back.
	if _, err := DecodeManifest(root.Data); err != nil {
		return nil, err
	}
	n, blocks, err := shards.PutUnder(ctx, put, root, chunks)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	return &Imported{Root: root.CID, Manifest: m, Bytes: n, Blocks: blocks}, nil
}
