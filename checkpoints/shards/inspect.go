package shards

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// Haser reports whether a block is at hand; *blocks.Store is one.
type Haser interface {
	Has(ctx context.Context, c cid.Cid) (bool, error)
}

// PartInfo describes one part of a model and how much of it is at hand.
type PartInfo struct {
	PartRef
	// Read is false when the part block itself could not be had (it is
	// not local); the counts below are then zero.
	Read        bool
	Tensors     int
	Bytes       int64
	Chunks      int
	LocalChunks int
}

// Local reports whether the part block and all its chunks are at hand.
func (p *PartInfo) Local() bool { return p.Read && p.LocalChunks == p.Chunks }

// Info describes a model: its manifest, its parts, its tokenizer, and
// which of them are at hand.
type Info struct {
	Root     cid.Cid
	Manifest *Manifest
	Parts    []PartInfo
	// Tokenizer bytes and chunks, and how many of those chunks are at hand.
	TokenizerBytes       int64
	TokenizerChunks      int
	TokenizerLocalChunks int
	// RopeFreqs chunks (a mycel-model/2 manifest's rope_freqs), and how
	// many are at hand.
	RopeFreqsChunks      int
	RopeFreqsLocalChunks int
}

// Bytes is the size of all tensors of the parts that could be read.
func (in *Info) Bytes() int64 {
	var n int64
	for i := range in.Parts {
		n += in.Parts[i].Bytes
	}
	return n
}

// LocalParts counts the parts wholly at hand.
func (in *Info) LocalParts() int {
	n := 0
	for i := range in.Parts {
		if in.Parts[i].Local() {
			n++
		}
	}
	return n
}

// Inspect describes the model root: the manifest and every part are read
// through get (a part that get does not find, ErrNotFound, is
// reported with Read false), and has says which chunks are at hand. With
// a local store as both, nothing is fetched from the network. A part that
// is found but damaged or inconsistent with the config is an error.
func Inspect(ctx context.Context, get Getter, has Haser, root cid.Cid) (*Info, error) {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return nil, err
	}
	info := &Info{Root: root, Manifest: m}
	count := func(b *Blob) (int, error) {
		n := 0
		for _, c := range b.Chunks {
			ok, err := has.Has(ctx, c.CID)
			if err != nil {
				return 0, fmt.Errorf("shards: inspect %s: %w", root, err)
			}
			if ok {
				n++
			}
		}
		return n, nil
	}
	// A layer part of routed experts is followed by its expert parts
	// (unknown while the layer part is not at hand).
	refs := m.PartRefs(Whole(m.Config.Layers))
	for len(refs) > 0 {
		r := refs[0]
		refs = refs[1:]
		pi := PartInfo{PartRef: r}
		p, err := m.GetPart(ctx, get, r)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			pi.Read, pi.Tensors = true, len(p.Tensors)
			refs = append(p.ExpertRefs(r), refs...)
			for i := range p.Tensors {
				t := &p.Tensors[i]
				n, err := count(&t.Blob)
				if err != nil {
					return nil, err
				}
				pi.Bytes += t.Size
				pi.Chunks += len(t.Chunks)
				pi.LocalChunks += n
			}
		}
		info.Parts = append(info.Parts, pi)
	}
	if m.Tokenizer != nil {
		n, err := count(m.Tokenizer)
		if err != nil {
			return nil, err
		}
		info.TokenizerBytes, info.TokenizerChunks, info.TokenizerLocalChunks = m.Tokenizer.Size, len(m.Tokenizer.Chunks), n
	}
	if m.RopeFreqs != nil {
		n, err := count(&m.RopeFreqs.Blob)
		if err != nil {
			return nil, err
		}
		info.RopeFreqsChunks, info.RopeFreqsLocalChunks = len(m.RopeFreqs.Chunks), n
	}
	return info, nil
}
