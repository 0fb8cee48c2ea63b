package shards

import (
	"context"
	"fmt"

	"github.com/mycel-net/mycel/checkpoints/shards/block"
)

// Other layouts built on the same blocks (data sets: checkpoints/datasets)
// share the model's node encoding and blobs through these.

// EncodeNode writes v as a canonical DAG-JSON block addressed with
// NodePrefix, as manifests and parts are: equal values give equal CIDs.
func EncodeNode(v any) (Block, error) { return encodeNode(v) }

// DecodeNode decodes a node block into v strictly: at most
// MaxManifestBytes, one JSON value, no unknown fields.
func DecodeNode(b []byte, v any) error { return decodeStrict(b, v) }

// Check checks that the blob's chunk count fits its size; what names it in
// the error.
func (b *Blob) Check(what string) error { return checkBlob(what, b) }

// ReadBlob fetches a blob's chunks through get, verifying each against its
// CID and length, and joins them.
func ReadBlob(ctx context.Context, get Getter, what string, b *Blob) ([]byte, error) {
	return readBlob(ctx, get, what, b)
}

// SplitBlob cuts data into the chunks of a blob (ChunkSize bytes
// each but the last, raw blocks) without copying it, and returns the blob
// and the chunk blocks to store.
func SplitBlob(data []byte) (Blob, []Block) {
	b := Blob{Size: int64(len(data))}
	var bs []Block
	for off := 0; off < len(data); off += ChunkSize {
		end := min(off+ChunkSize, len(data))
		blk := block.New(data[off:end:end])
		bs = append(bs, blk)
		b.Chunks = append(b.Chunks, Link{blk.CID})
	}
	return b, bs
}

// putBatch is how many blocks one write of PutUnder stores.
const putBatch = 16

// PutUnder stores chunks and then root, the node that links to them,
// through put, and returns the bytes and blocks written. The root goes
// last: a store that holds it holds the whole.
func PutUnder(ctx context.Context, put Putter, root Block, chunks []Block) (bytes int64, blocks int, err error) {
	for len(chunks) > 0 {
		n := min(putBatch, len(chunks))
		if err := put.PutMany(ctx, chunks[:n]); err != nil {
			return bytes, blocks, fmt.Errorf("store blocks: %w", err)
		}
		for _, b := range chunks[:n] {
			bytes += int64(len(b.Data))
		}
		blocks += n
		chunks = chunks[n:]
	}
	if err := put.PutMany(ctx, []Block{root}); err != nil {
		return bytes, blocks, fmt.Errorf("store %s: %w", root.CID, err)
	}
	return bytes + int64(len(root.Data)), blocks + 1, nil
}
