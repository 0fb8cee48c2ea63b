package blocks

import (
	"errors"
	"fmt"
	"io"

	"github.com/mycel-net/mycel/checkpoints/shards/block"
)

// ChunkSize is the size of the blocks Split and Import cut a stream into:
// 1 MiB, well under bitswap's 2 MiB block limit (block.ChunkSize).
const ChunkSize = block.ChunkSize

// MaxBlockSize is the largest block the exchange will carry (bitswap's limit
// less room for the message framing; block.MaxBlockSize).
const MaxBlockSize = block.MaxBlockSize

// Prefix is how Mycel addresses content: CIDv1, raw codec, sha2-256
// (block.Prefix).
var Prefix = block.Prefix

// ErrCorrupt means a block's bytes do not hash to its CID (block.ErrCorrupt).
var ErrCorrupt = block.ErrCorrupt

// Block is a piece of content and its address. Data must not be changed once
// the block exists: stores and the exchange share it without copying. It is
// block.Block, the type the layouts in checkpoints/shards use too, so the
// store and the exchange are their Getters and Putters.
type Block = block.Block

// NewBlock addresses data with Prefix.
func NewBlock(data []byte) Block { return block.New(data) }

// Split cuts r into blocks of size bytes (the last one may be shorter) and
// calls fn on each, in order. An empty stream yields no block. It stops at
// the first error from r or fn.
func Split(r io.Reader, size int, fn func(Block) error) error {
	if size <= 0 || size > MaxBlockSize {
		return fmt.Errorf("blocks: chunk size %d out of range (1..%d)", size, MaxBlockSize)
	}
	for {
		buf := make([]byte, size)
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if ferr := fn(NewBlock(buf[:n:n])); ferr != nil {
				return ferr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		default:
			return fmt.Errorf("blocks: read chunk: %w", err)
		}
	}
}
