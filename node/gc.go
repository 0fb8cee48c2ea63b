package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// The block store keeps what the node's models, data sets and training
// checkpoints are made of. A block none of them reaches is unreferenced: an import
// that stopped before its manifest was written leaves its chunks and parts
// so, and nothing else would ever remove them. Store GC removes
// unreferenced blocks.
//
// A pull that stopped is not unreferenced: pulls resume, so the node
// lists every pull from its start until it completes (pullsFile, and
// dataPullsFile for data sets, checkpointPullsFile for checkpoints), and
// keeps what such a pull fetched until it is resumed or the model, data
// set or checkpoint removed (mycel models rm CID, mycel data rm CID,
// mycel train rm CID).
//
// GC runs when nothing writes blocks: imports and pulls hold blockOps
// shared while they run, and GC takes it exclusively or, where an import
// or pull runs, refuses. The node collects once at start (New), before it
// serves anything, and `mycel store gc` on request.

// pullsFile lists the pulls begun and not yet completed.
const pullsFile = "pulls.json"

// GC removes the blocks of the store that no kept model, data set or
// checkpoint and no unfinished pull reaches. It refuses while an import or pull runs.
func (n *Node) GC(ctx context.Context, req api.GCRequest) (api.GCResult, error) {
	if !n.blockOps.TryLock() {
		return api.GCResult{}, fmt.Errorf("%w: store gc: an import or pull is running; run gc again once it has finished", api.ErrBusy)
	}
	defer n.blockOps.Unlock()
	return n.collect(ctx, req.DryRun)
}

// collectAtStart removes unreferenced blocks before the node serves
// anything (New), and says how much it freed.
func (n *Node) collectAtStart() {
	res, err := n.collect(n.ctx, false)
	if err != nil {
		log.Warn("store gc at start", "err", err)
		return
	}
	if res.Blocks > 0 {
		log.Info("removed unreferenced blocks at start", "blocks", res.Blocks, "bytes", res.Bytes)
	}
}

// unreferencedBytes is what GC would remove now, or -1 while an import or
// pull runs (their blocks are unreferenced until they end).
func (n *Node) unreferencedBytes(ctx context.Context) int64 {
	if !n.blockOps.TryLock() {
		return -1
	}
	defer n.blockOps.Unlock()
	res, err := n.collect(ctx, true)
	if err != nil {
		log.Debug("count unreferenced blocks", "err", err)
		return -1
	}
	return res.Bytes
}

// beginBlockWrites marks an import or pull running until the returned
// function is called: GC waits for it, or refuses.
func (n *Node) beginBlockWrites() func() {
	n.blockOps.RLock()
	return n.blockOps.RUnlock
}

// beginPull marks a pull of root running, and unfinished (in list:
// n.pulls or n.dataPulls) until pullDone. The returned function says the
// pull returned: a pull that stopped before its manifest was here has
// nothing to resume from and is not kept.
func (n *Node) beginPull(list *registry, root cid.Cid) (func(), error) {
	end := n.beginBlockWrites()
	if err := list.add(api.ModelEntry{CID: root.String(), Added: time.Now().UTC()}); err != nil {
		end()
		return nil, err
	}
	return func() {
		defer end()
		if has, err := n.store.Has(context.Background(), root); err == nil && !has {
			if _, err := list.remove(root.String()); err != nil {
				log.Warn("forget a pull that fetched nothing", "cid", root, "err", err)
			}
		}
	}, nil
}

// pullDone records that the pull of root, listed in list, completed.
func (n *Node) pullDone(list *registry, root cid.Cid) error {
	_, err := list.remove(root.String())
	return err
}

// collect removes (or with dryRun, counts) the unreferenced blocks. The
// caller holds blockOps, or nothing else runs yet.
func (n *Node) collect(ctx context.Context, dryRun bool) (api.GCResult, error) {
	res := api.GCResult{DryRun: dryRun}
	keep, err := n.reachable(ctx)
	if err != nil {
		return res, fmt.Errorf("store gc: %w", err)
	}
	all, err := n.store.AllKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("store gc: %w", err)
	}
	for _, c := range all {
		if keep[string(c.Hash())] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("store gc: %w", err)
		}
		size, err := n.store.GetSize(ctx, c)
		if errors.Is(err, blocks.ErrNotFound) {
			continue
		}
		if err != nil {
			return res, fmt.Errorf("store gc: %w", err)
		}
		if !dryRun {
			if err := n.store.Delete(ctx, c); err != nil {
				return res, fmt.Errorf("store gc: %w", err)
			}
		}
		res.Blocks++
		res.Bytes += int64(size)
	}
	// Sync frees the disk space of deleted blocks.
	if !dryRun && res.Blocks > 0 {
		if err := n.store.Sync(); err != nil {
			return res, fmt.Errorf("store gc: %w", err)
		}
	}
	for _, e := range slices.Concat(n.pulls.entries(), n.dataPulls.entries(), n.ckptPulls.entries()) {
		res.Unfinished = append(res.Unfinished, e.CID)
	}
	return res, nil
}

// reachable is the set of multihashes of the blocks to keep: every block
// reachable through blocks here from a kept model, data set or checkpoint, or an
// unfinished pull of one.
func (n *Node) reachable(ctx context.Context) (map[string]bool, error) {
	keep := map[string]bool{}
	mark := func(what string, list []api.ModelEntry, blocksOf func(context.Context, cid.Cid) ([]cid.Cid, error)) error {
		for _, e := range list {
			c, err := cid.Decode(e.CID)
			if err != nil {
				return fmt.Errorf("%s list: %q is not a CID: %w", what, e.CID, err)
			}
			cs, err := blocksOf(ctx, c)
			if errors.Is(err, blocks.ErrNotFound) {
				continue // not even its manifest is here
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", what, c, err)
			}
			for _, x := range cs {
				keep[string(x.Hash())] = true
			}
		}
		return nil
	}
	if err := mark("model", append(n.models.entries(), n.pulls.entries()...), n.localBlocks); err != nil {
		return nil, err
	}
	if err := mark("data set", append(n.data.entries(), n.dataPulls.entries()...), n.dataBlocks); err != nil {
		return nil, err
	}
	if err := mark("checkpoint", append(n.ckpts.entries(), n.ckptPulls.entries()...), n.checkpointBlocks); err != nil {
		return nil, err
	}
	return keep, nil
}
