package blocks

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// ChunkSize is the size of the blocks Split and Import cut a stream into:
// 1 MiB, well under bitswap's 2 MiB block limit.
const ChunkSize = 1 << 20

// MaxBlockSize is the largest block the exchange will carry (bitswap's limit
// less room for the message framing).
const MaxBlockSize = 2<<20 - 256

// Prefix is how Mycel addresses content: CIDv1, raw codec, sha2-256.
var Prefix = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}

// ErrCorrupt means a block's bytes do not hash to its CID.
var ErrCorrupt = errors.New("blocks: block data does not match its CID")

// Block is a piece of content and its address. Data must not be changed once
// the block exists: stores and the exchange share it without copying.
type Block struct {
	CID  cid.Cid
	Data []byte
}

// NewBlock addresses data with Prefix.
func NewBlock(data []byte) Block {
	c, err := Prefix.Sum(data)
	if err != nil {
		// Prefix is a constant that go-multihash always supports.
		panic(fmt.Sprintf("blocks: hash with %v: %v", Prefix, err))
	}
	return Block{CID: c, Data: data}
}

// Verify re-hashes the data with the CID's own hash function and reports
// ErrCorrupt when it does not match.
func (b Block) Verify() error {
	if !b.CID.Defined() {
		return errors.New("blocks: block without CID")
	}
	got, err := b.CID.Prefix().Sum(b.Data)
	if err != nil {
		return fmt.Errorf("blocks: hash block %s: %w", b.CID, err)
	}
	if !bytes.Equal(got.Hash(), b.CID.Hash()) {
		return fmt.Errorf("%w: %s", ErrCorrupt, b.CID)
	}
	return nil
}

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
