// Package trainstate is the content-addressed layout of a training
// checkpoint: how the state a trainer saves becomes blocks that peers
// exchange, under a manifest whose CID names the checkpoint.
//
// A checkpoint is a manifest block and the trainer's checkpoint file
// (train.WriteCheckpoint: job, step, data cursor, trained tensors and
// their optimizer moments, with a CRC), untouched, as a blob: the ordered
// CIDs of the 1 MiB raw blocks it is cut into, the same blobs a model's
// tensors are (package shards). The manifest repeats what a reader wants
// to know without fetching the state: the job file, its method, the step
// reached of how many, and the CIDs of the base model and the data set
// when the trainer knew them as CIDs.
//
// Manifests are canonical DAG-JSON addressed with shards.NodePrefix, so
// the same state gives the same CID on every peer: two peers that trained
// the same job bitwise alike hold the same checkpoint CID, which is what
// lets the swarm compare its members' state by CID.
//
// The caller's duties:
//
//   - Import stores the chunks and then the manifest (last: a store that
//     holds it holds the whole checkpoint) through a Putter; the caller
//     has checked the state first (train.CheckCheckpoint) and fills in
//     the manifest's fields from it.
//   - GetManifest and ReadState take any Getter (the local store, or the
//     network exchange) and re-hash every block.
//
// docs/formats.md specifies the manifest's JSON and the limits enforced
// when decoding it.
package trainstate

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/shards"
)

// ManifestFormat is the format written in checkpoint manifests.
const ManifestFormat = "mycel-checkpoint/1"

// Limits checked when decoding a manifest.
const (
	// MaxStateBytes bounds the state file: shards.MaxTensorBytes, the
	// largest blob.
	MaxStateBytes = shards.MaxTensorBytes
	// MaxJobBytes bounds the job file the manifest carries.
	MaxJobBytes = 64 << 10
	// MaxMethodBytes bounds the method's name.
	MaxMethodBytes = 16
)

// Manifest is the root of a checkpoint.
type Manifest struct {
	Format string `json:"format"`
	// Job is the job file, every key set (train.Job.Encode).
	Job string `json:"job"`
	// Method is the job's method ("lora" or "full").
	Method string `json:"method"`
	// Step is the number of steps the state has taken, of Steps.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// Base and Data are the base model's and the data set's CIDs, absent
	// when the trainer read them from files.
	Base *shards.Link `json:"base,omitempty"`
	Data *shards.Link `json:"data,omitempty"`
	// State is the checkpoint file's bytes.
	State shards.Blob `json:"state"`
}

// Encode returns the manifest's block; its CID is the checkpoint's.
func (m *Manifest) Encode() (shards.Block, error) { return shards.EncodeNode(m) }

// Chunks lists the CIDs of the state's blocks, in order.
func (m *Manifest) Chunks() []cid.Cid {
	out := make([]cid.Cid, len(m.State.Chunks))
	for i, l := range m.State.Chunks {
		out[i] = l.CID
	}
	return out
}

// ErrNotCheckpoint means a block is not a checkpoint manifest.
var ErrNotCheckpoint = errors.New("not a checkpoint manifest")

// DecodeManifest parses and checks a manifest block: the format, the
// bounds of the job, method, steps and size, and that the chunk count
// fits the size.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := shards.DecodeNode(b, &m); err != nil {
		return nil, fmt.Errorf("trainstate: %w: %w", ErrNotCheckpoint, err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("trainstate: %w: format %q, want %q", ErrNotCheckpoint, m.Format, ManifestFormat)
	}
	if m.Job == "" || len(m.Job) > MaxJobBytes || !utf8.ValidString(m.Job) {
		return nil, fmt.Errorf("trainstate: job file of %d bytes: want 1 to %d bytes of UTF-8", len(m.Job), MaxJobBytes)
	}
	if m.Method == "" || len(m.Method) > MaxMethodBytes {
		return nil, fmt.Errorf("trainstate: method %q: want 1 to %d bytes", m.Method, MaxMethodBytes)
	}
	if m.Steps < 1 || m.Step < 0 || m.Step > m.Steps {
		return nil, fmt.Errorf("trainstate: step %d of %d", m.Step, m.Steps)
	}
	for what, l := range map[string]*shards.Link{"base model": m.Base, "data set": m.Data} {
		if l != nil && !l.CID.Defined() {
			return nil, fmt.Errorf("trainstate: %s link without a CID", what)
		}
	}
	if m.State.Size < 1 || m.State.Size > MaxStateBytes {
		return nil, fmt.Errorf("trainstate: state of %d bytes: want 1 to %d", m.State.Size, int64(MaxStateBytes))
	}
	if err := m.State.Check("state"); err != nil {
		return nil, fmt.Errorf("trainstate: %w", err)
	}
	return &m, nil
}

// GetManifest fetches, verifies and decodes a checkpoint's manifest.
func GetManifest(ctx context.Context, get shards.Getter, root cid.Cid) (*Manifest, error) {
	b, err := get.Get(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("trainstate: manifest %s: %w", root, err)
	}
	if err := b.Verify(); err != nil {
		return nil, fmt.Errorf("trainstate: manifest %s: %w", root, err)
	}
	m, err := DecodeManifest(b.Data)
	if err != nil {
		return nil, fmt.Errorf("%w (CID %s)", err, root)
	}
	return m, nil
}

// ReadState fetches the checkpoint's state file through get, verifying
// every block.
func ReadState(ctx context.Context, get shards.Getter, m *Manifest) ([]byte, error) {
	data, err := shards.ReadBlob(ctx, get, "checkpoint state", &m.State)
	if err != nil {
		return nil, fmt.Errorf("trainstate: %w", err)
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

// Import stores state, a checkpoint file, as blocks through put under m
// (whose State it sets), the manifest last, and returns the checkpoint's
// CID. The chunks are views of state, not copies.
func Import(ctx context.Context, put shards.Putter, m Manifest, state []byte) (*Imported, error) {
	m.Format = ManifestFormat
	blob, chunks := shards.SplitBlob(state)
	m.State = blob
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
		return nil, fmt.Errorf("trainstate: %w", err)
	}
	return &Imported{Root: root.CID, Manifest: &m, Bytes: n, Blocks: blocks}, nil
}
