package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/shards"
)

// Blocks reads the blocks the node holds through the control API (GET
// /api/v0/blocks/{cid}), verifying each against its CID: a shards.Getter,
// so that a model the node holds loads in the caller's process. A block
// the node lacks is shards.ErrNotFound; the node fetches nothing for it.
func (c *Client) Blocks() shards.Getter { return blockGetter{c} }

type blockGetter struct{ c *Client }

func (g blockGetter) Get(ctx context.Context, id cid.Cid) (shards.Block, error) {
	data, err := g.c.Block(ctx, id.String())
	if errors.Is(err, ErrNotFound) {
		return shards.Block{}, fmt.Errorf("%w: %s is not on the node (mycel models pull it first)", shards.ErrNotFound, id)
	}
	if err != nil {
		return shards.Block{}, err
	}
	b := shards.Block{CID: id, Data: data}
	if err := b.Verify(); err != nil {
		return shards.Block{}, err
	}
	return b, nil
}

// LoadModel loads the whole model root, every block of which the node
// holds, into this process.
func (c *Client) LoadModel(ctx context.Context, root cid.Cid) (*shards.Loaded, error) {
	get := c.Blocks()
	m, err := shards.GetManifest(ctx, get, root)
	if err != nil {
		return nil, err
	}
	return shards.Load(ctx, get, root, shards.Whole(m.Config.Layers))
}
