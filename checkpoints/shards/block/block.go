// Package block is the content-addressed block, the unit every Mycel store
// and exchange holds and every layout is cut into: bytes and their CID
// (CIDv1, raw codec, sha2-256), with the size limits that come with it.
//
// It is a leaf, so that the layouts (checkpoints/shards) and the stores
// and exchanges that hold blocks (p2p/blocks, whose Block is this type)
// share one type without depending on each other.
package block

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// ChunkSize is the size of the blocks large content is cut into: 1 MiB,
// well under bitswap's 2 MiB block limit.
const ChunkSize = 1 << 20

// MaxBlockSize is the largest block the exchange will carry (bitswap's
// limit less room for the message framing).
const MaxBlockSize = 2<<20 - 256

// Prefix is how Mycel addresses content: CIDv1, raw codec, sha2-256.
var Prefix = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}

// ErrCorrupt means a block's bytes do not hash to its CID.
var ErrCorrupt = errors.New("blocks: block data does not match its CID")

// ErrNotFound is what a store or an exchange returns (wrapped) for a
// block it does not have.
var ErrNotFound = errors.New("blocks: block not found")

// Block is a piece of content and its address. Data must not be changed
// once the block exists: stores and the exchange share it without copying.
type Block struct {
	CID  cid.Cid
	Data []byte

	// hashed is the Data that New computed CID from, so that Verify need
	// not hash it again (a store verifies what it is given, and a block
	// built by a local import would otherwise be hashed twice). Data set
	// to other bytes afterwards is hashed again.
	hashed []byte
}

// New addresses data with Prefix.
func New(data []byte) Block {
	c, err := Prefix.Sum(data)
	if err != nil {
		// Prefix is a constant that go-multihash always supports.
		panic(fmt.Sprintf("blocks: hash with %v: %v", Prefix, err))
	}
	return Block{CID: c, Data: data, hashed: data}
}

// Verify re-hashes the data with the CID's own hash function and reports
// ErrCorrupt when it does not match. A block made by New, its Data
// unchanged, passes without hashing again.
func (b Block) Verify() error {
	if !b.CID.Defined() {
		return errors.New("blocks: block without CID")
	}
	if len(b.Data) > 0 && len(b.hashed) == len(b.Data) && &b.hashed[0] == &b.Data[0] {
		return nil
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
