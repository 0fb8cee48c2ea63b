package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/checkpoints/trainstate"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/train"
)

// Training checkpoints are kept like data sets: the trainer's checkpoint
// file as content-addressed blocks under a small manifest
// (checkpoints/trainstate), a list of those kept (checkpointsFile) in
// which a name stands for the latest checkpoint kept under it, announced
// on the DHT, pulled from whichever peers have them, and kept by store GC.

// Files of the data directory: the checkpoints kept, and the pulls of
// checkpoints begun and not completed.
const (
	checkpointsFile     = "checkpoints.json"
	checkpointPullsFile = "checkpoint-pulls.json"
)

// maxCheckpointName bounds the name a checkpoint is kept under.
const maxCheckpointName = 256

// resolveCheckpoint turns a checkpoint reference into its CID: a CID
// stands for itself; a name for the checkpoint last kept under it.
func (n *Node) resolveCheckpoint(ref string) (cid.Cid, error) {
	if ref == "" {
		return cid.Undef, fmt.Errorf("%w: no checkpoint given (a CID, or a name from mycel train checkpoints)", api.ErrBadRequest)
	}
	if c, err := cid.Decode(ref); err == nil {
		return c, nil
	}
	var last *api.ModelEntry
	for _, e := range n.ckpts.entries() {
		if e.Name == ref && (last == nil || !e.Added.Before(last.Added)) {
			last = &e
		}
	}
	if last == nil {
		return cid.Undef, fmt.Errorf("%w: checkpoint %q is neither a CID nor the name of a checkpoint on this node (mycel train checkpoints)", api.ErrNotFound, ref)
	}
	return cid.Decode(last.CID)
}

// PutCheckpoint reads a trainer's checkpoint file, checks it
// (train.CheckCheckpoint: magic, CRC, lengths, the job file), and stores
// it as blocks under a manifest that names its job, step, and the CIDs of
// its base model and data set when the job names them as CIDs or as names
// this node knows. It keeps the checkpoint under name and announces it.
// Nothing is stored from a file that does not check.
func (n *Node) PutCheckpoint(ctx context.Context, name string, state io.Reader) (api.CheckpointInfo, error) {
	var res api.CheckpointInfo
	if len(name) > maxCheckpointName || !utf8.ValidString(name) {
		return res, fmt.Errorf("%w: a checkpoint's name is at most %d bytes of UTF-8", api.ErrBadRequest, maxCheckpointName)
	}
	data, err := io.ReadAll(io.LimitReader(state, trainstate.MaxStateBytes+1))
	if err != nil {
		return res, fmt.Errorf("checkpoint: reading the file: %w", err)
	}
	if int64(len(data)) > trainstate.MaxStateBytes {
		return res, fmt.Errorf("%w: checkpoint of more than %d bytes", api.ErrBadRequest, int64(trainstate.MaxStateBytes))
	}
	h, err := train.CheckCheckpoint(data)
	if err != nil {
		return res, kindOf(err, api.ErrBadRequest)
	}
	job, err := train.ParseJob([]byte(h.Job))
	if err != nil {
		return res, fmt.Errorf("%w: checkpoint's job file: %w", api.ErrBadRequest, err)
	}
	m := trainstate.Manifest{Job: h.Job, Method: job.Method, Step: h.Step, Steps: job.Steps}
	if c, err := n.resolve(job.Model); err == nil {
		m.Base = &shards.Link{CID: c}
	}
	if c, err := n.resolveData(job.Data); err == nil {
		m.Data = &shards.Link{CID: c}
	}
	defer n.beginBlockWrites()()
	im, err := trainstate.Import(ctx, n.store, m, data)
	if err != nil {
		return res, kindOf(err, api.ErrBadRequest)
	}
	if err := n.store.Sync(); err != nil {
		return res, fmt.Errorf("checkpoint: %w", err)
	}
	entry := api.ModelEntry{CID: im.Root.String(), Name: name, Added: time.Now().UTC()}
	if err := n.ckpts.add(entry); err != nil {
		return res, err
	}
	n.announce([]cid.Cid{im.Root})
	info := checkpointInfo(entry, im.Manifest)
	info.LocalBlocks, info.Whole = info.TotalBlocks, true
	return info, nil
}

// checkpointInfo summarises manifest m kept as e.
func checkpointInfo(e api.ModelEntry, m *trainstate.Manifest) api.CheckpointInfo {
	info := api.CheckpointInfo{ModelEntry: e, Method: m.Method, Step: m.Step, Steps: m.Steps,
		Bytes: m.State.Size, TotalBlocks: len(m.State.Chunks)}
	if m.Base != nil {
		info.Base = m.Base.CID.String()
	}
	if m.Data != nil {
		info.Data = m.Data.CID.String()
	}
	return info
}

// checkpointInfo describes checkpoint c from the blocks here, and returns
// its manifest.
func (n *Node) checkpointInfo(ctx context.Context, c cid.Cid) (api.CheckpointInfo, *trainstate.Manifest, error) {
	e := api.ModelEntry{CID: c.String()}
	for _, x := range n.ckpts.entries() {
		if x.CID == e.CID {
			e = x
		}
	}
	m, err := trainstate.GetManifest(ctx, n.store, c)
	switch {
	case errors.Is(err, blocks.ErrNotFound):
		return api.CheckpointInfo{ModelEntry: e}, nil, fmt.Errorf("%w: checkpoint %s is not on this node", api.ErrNotFound, c)
	case errors.Is(err, trainstate.ErrNotCheckpoint):
		return api.CheckpointInfo{ModelEntry: e}, nil, kindOf(err, api.ErrBadRequest)
	case err != nil:
		return api.CheckpointInfo{ModelEntry: e}, nil, err
	}
	info := checkpointInfo(e, m)
	for _, ch := range m.Chunks() {
		has, err := n.store.Has(ctx, ch)
		if err != nil {
			return info, nil, err
		}
		if has {
			info.LocalBlocks++
		}
	}
	info.Whole = info.LocalBlocks == info.TotalBlocks
	return info, m, nil
}

// ListCheckpoints describes every kept checkpoint, oldest first.
func (n *Node) ListCheckpoints(ctx context.Context) []api.CheckpointInfo {
	out := []api.CheckpointInfo{}
	for _, e := range n.ckpts.entries() {
		c, err := cid.Decode(e.CID)
		if err != nil {
			continue
		}
		info, _, err := n.checkpointInfo(ctx, c)
		if err != nil {
			info = api.CheckpointInfo{ModelEntry: e}
		}
		out = append(out, info)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Added.Before(out[j].Added) })
	return out
}

// InspectCheckpoint describes a checkpoint (by CID or name) from the
// blocks here.
func (n *Node) InspectCheckpoint(ctx context.Context, ref string) (api.CheckpointInfo, error) {
	c, err := n.resolveCheckpoint(ref)
	if err != nil {
		return api.CheckpointInfo{}, err
	}
	info, _, err := n.checkpointInfo(ctx, c)
	return info, err
}

// CheckpointState returns a checkpoint's state file (by CID or name):
// from the store when it is all here, else pulled from the peers that
// have it first (and then kept). This is what export and resume read.
func (n *Node) CheckpointState(ctx context.Context, ref string) ([]byte, error) {
	c, err := n.resolveCheckpoint(ref)
	if err != nil {
		return nil, err
	}
	info, m, err := n.checkpointInfo(ctx, c)
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		return nil, err
	}
	if err != nil || !info.Whole {
		err := n.pullBlob(ctx, n.ckptPulls, c, "", func(api.PullProgress) {}, func(ctx context.Context, get shards.Getter) (*shards.Blob, error) {
			got, err := trainstate.GetManifest(ctx, get, c)
			if errors.Is(err, trainstate.ErrNotCheckpoint) {
				return nil, kindOf(err, api.ErrBadRequest)
			}
			if err != nil {
				return nil, err
			}
			m = got
			return &m.State, nil
		}, func() error {
			if slices.ContainsFunc(n.ckpts.entries(), func(e api.ModelEntry) bool { return e.CID == c.String() }) {
				return nil
			}
			return n.ckpts.add(api.ModelEntry{CID: c.String(), Added: time.Now().UTC()})
		})
		if err != nil {
			return nil, err
		}
	}
	return trainstate.ReadState(ctx, n.store, m)
}

// RemoveCheckpoint forgets a checkpoint and deletes its blocks, except
// those something else kept also uses.
func (n *Node) RemoveCheckpoint(ctx context.Context, ref string) (int, error) {
	c, err := n.resolveCheckpoint(ref)
	if err != nil {
		return 0, err
	}
	found, err := n.ckpts.remove(c.String())
	if err != nil {
		return 0, err
	}
	if unfinished, err := n.ckptPulls.remove(c.String()); err != nil {
		return 0, err
	} else if unfinished {
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%w: checkpoint %s is not on this node", api.ErrNotFound, c)
	}
	return n.deleteUnkept(ctx, c, n.checkpointBlocks)
}

// checkpointBlocks lists the blocks of checkpoint c: its manifest (which
// must be here) and its state's chunks.
func (n *Node) checkpointBlocks(ctx context.Context, c cid.Cid) ([]cid.Cid, error) {
	m, err := trainstate.GetManifest(ctx, n.store, c)
	if err != nil {
		return nil, err
	}
	return append([]cid.Cid{c}, m.Chunks()...), nil
}
