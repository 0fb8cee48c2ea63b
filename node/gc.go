package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/p2p/blocks"
)

// The block store keeps what the node's models are made of. A block no
// kept model reaches is unreferenced: an import that stopped before its
// manifest was written leaves its chunks and parts so, and nothing else
// would ever remove them. Store GC removes unreferenced blocks.
//
// A pull that stopped is not unreferenced: pulls resume, so the node
// lists every pull from its start until it completes (pullsFile), and
// keeps what such a pull fetched until it is resumed or the model removed
// (mycel models rm CID).
//
// GC runs when nothing writes blocks: imports and pulls hold blockOps
// shared while they run, and GC takes it exclusively or, where an import
// or pull runs, refuses. The node collects once at start (New), before it
// serves anything, and `mycel store gc` on request.

// pullsFile lists the pulls begun and not yet completed.
const pullsFile = "pulls.json"

// errBusy means the store is in use by an import or pull.
var errBusy = errors.New("busy")

// GCResult reports a collection of the block store.
type GCResult struct {
	// Blocks and Bytes are the unreferenced blocks removed; with DryRun,
	// those that would be.
	Blocks int   `json:"blocks"`
	Bytes  int64 `json:"bytes"`
	DryRun bool  `json:"dry_run,omitempty"`
	// Unfinished are the CIDs of pulls begun and not completed, whose
	// blocks are kept for the pull to resume.
	Unfinished []string `json:"unfinished,omitempty"`
}

// GCRequest asks the node to collect its block store.
type GCRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
}

// GC removes the blocks of the store that no kept model and no unfinished
// pull reaches. It refuses while an import or pull runs.
func (n *Node) GC(ctx context.Context, req GCRequest) (GCResult, error) {
	if !n.blockOps.TryLock() {
		return GCResult{}, fmt.Errorf("%w: store gc: an import or pull is running; run gc again once it has finished", errBusy)
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

// beginPull marks a pull of root running, and unfinished until pullDone.
// The returned function says the pull returned: a pull that stopped before
// its manifest was here has nothing to resume from and is not kept.
func (n *Node) beginPull(root cid.Cid) (func(), error) {
	end := n.beginBlockWrites()
	if err := n.pulls.add(ModelEntry{CID: root.String(), Added: time.Now().UTC()}); err != nil {
		end()
		return nil, err
	}
	return func() {
		defer end()
		if has, err := n.store.Has(context.Background(), root); err == nil && !has {
			if _, err := n.pulls.remove(root.String()); err != nil {
				log.Warn("forget a pull that fetched nothing", "cid", root, "err", err)
			}
		}
	}, nil
}

// pullDone records that the pull of root completed.
func (n *Node) pullDone(root cid.Cid) error {
	_, err := n.pulls.remove(root.String())
	return err
}

// collect removes (or with dryRun, counts) the unreferenced blocks. The
// caller holds blockOps, or nothing else runs yet.
func (n *Node) collect(ctx context.Context, dryRun bool) (GCResult, error) {
	res := GCResult{DryRun: dryRun}
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
	for _, e := range n.pulls.entries() {
		res.Unfinished = append(res.Unfinished, e.CID)
	}
	return res, nil
}

// reachable is the set of multihashes of the blocks to keep: every block
// reachable through blocks here from a kept model or an unfinished pull.
func (n *Node) reachable(ctx context.Context) (map[string]bool, error) {
	keep := map[string]bool{}
	for _, e := range append(n.models.entries(), n.pulls.entries()...) {
		c, err := cid.Decode(e.CID)
		if err != nil {
			return nil, fmt.Errorf("model list: %q is not a CID: %w", e.CID, err)
		}
		cs, err := n.localBlocks(ctx, c)
		if errors.Is(err, blocks.ErrNotFound) {
			continue // not even its manifest is here
		}
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", c, err)
		}
		for _, x := range cs {
			keep[string(x.Hash())] = true
		}
	}
	return keep, nil
}

func (n *Node) storeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+APIPrefix+"/store/gc", func(w http.ResponseWriter, r *http.Request) {
		var req GCRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("store gc: want {\"dry_run\": true|false}: %w", err))
			return
		}
		res, err := n.GC(r.Context(), req)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// GC asks the node to remove the blocks no kept model or unfinished pull
// uses (with req.DryRun, only to count them).
func (c *Client) GC(ctx context.Context, req GCRequest) (GCResult, error) {
	var res GCResult
	b, _ := json.Marshal(req)
	err := c.do(ctx, http.MethodPost, "/store/gc", strings.NewReader(string(b)), &res)
	return res, err
}
