package shards

import "github.com/mycel-net/mycel/checkpoints/shards/block"

// Block is a content-addressed block: bytes and their CID. It is
// block.Block, which p2p/blocks stores and exchanges, so *blocks.Store and
// *blocks.Exchange are Getters and Putters without this package knowing
// them.
type Block = block.Block

// ChunkSize is the size of the raw blocks tensors and blobs are cut into:
// 1 MiB (the last block of each may be shorter).
const ChunkSize = block.ChunkSize

// ErrNotFound is what a Getter returns (wrapped) for a block it does not
// have; p2p/blocks returns it too.
var ErrNotFound = block.ErrNotFound
