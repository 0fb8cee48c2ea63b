package collab

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/checkpoints/trainstate"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/train"
)

// States keeps the checkpoints of a group's shared state as
// content-addressed blobs. Members of a round hold bitwise the same state,
// so their checkpoints have one CID, and a peer that joins fetches it from
// all of them at once.
type States interface {
	// Put stores a checkpoint (a train checkpoint file) and returns its
	// CID; the store serves it to peers from then on.
	Put(ctx context.Context, state []byte) (cid.Cid, error)
	// Get fetches checkpoint c, from the peers named first (those that
	// announce it), verifying every block, and keeps it to serve.
	Get(ctx context.Context, c cid.Cid, from []peer.ID) ([]byte, error)
}

// BlockStates keeps checkpoints in a block store (layout
// checkpoints/trainstate) and fetches them through a block exchange,
// which spreads a fetch over every peer that has the blocks and moves a
// block to another peer when one leaves mid-transfer.
type BlockStates struct {
	Store    *blocks.Store
	Exchange *blocks.Exchange
}

// Put stores state under a checkpoint manifest.
func (s *BlockStates) Put(ctx context.Context, state []byte) (cid.Cid, error) {
	h, err := train.CheckCheckpoint(state)
	if err != nil {
		return cid.Undef, err
	}
	job, err := train.ParseJob([]byte(h.Job))
	if err != nil {
		return cid.Undef, fmt.Errorf("collab: checkpoint's job file: %w", err)
	}
	im, err := trainstate.Import(ctx, s.Store, trainstate.Manifest{Job: h.Job, Method: job.Method, Step: h.Step, Steps: job.Steps}, state)
	if err != nil {
		return cid.Undef, err
	}
	if err := s.Store.Sync(); err != nil {
		return cid.Undef, fmt.Errorf("collab: checkpoint: %w", err)
	}
	return im.Root, nil
}

// Get fetches checkpoint c, preferring the peers from.
func (s *BlockStates) Get(ctx context.Context, c cid.Cid, from []peer.ID) ([]byte, error) {
	sess := s.Exchange.NewSession(ctx)
	sess.Prefer(from...)
	m, err := trainstate.GetManifest(ctx, sess, c)
	if err != nil {
		return nil, err
	}
	for r := range sess.Download(ctx, m.Chunks()) {
		if r.Err != nil {
			return nil, fmt.Errorf("collab: checkpoint %s: %w", c, r.Err)
		}
	}
	return trainstate.ReadState(ctx, s.Store, m)
}
