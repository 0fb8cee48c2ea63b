package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// resolve turns a model reference into the model's CID: a CID stands for
// itself; a name is looked up among the models the node keeps, then among
// those it has loaded to answer for (swarm clients, whole models from
// blocks). Every path that takes a model resolves it here: the control
// API, the OpenAI API and serving.
func (n *Node) resolve(ref string) (cid.Cid, error) {
	if ref == "" {
		return cid.Undef, fmt.Errorf("%w: no model given (a CID, or a name from mycel models ls)", api.ErrBadRequest)
	}
	if c, err := cid.Decode(ref); err == nil {
		return c, nil
	}
	var found []string
	add := func(c string) {
		if !slices.Contains(found, c) {
			found = append(found, c)
		}
	}
	for _, e := range n.models.entries() {
		if e.Name == ref {
			add(e.CID)
		}
	}
	n.swarmMu.Lock()
	for c, sm := range n.swarmModels {
		if sm.name == ref {
			add(c)
		}
	}
	for c, lm := range n.blockModels {
		if lm.name == ref {
			add(c)
		}
	}
	n.swarmMu.Unlock()
	switch len(found) {
	case 0:
		return cid.Undef, fmt.Errorf("%w: model %q is neither a CID nor the name of a model on this node (mycel models ls)", api.ErrNotFound, ref)
	case 1:
		return cid.Decode(found[0])
	}
	sort.Strings(found)
	return cid.Undef, fmt.Errorf("%w: %d models are named %q (%s): give the CID of the one you mean", api.ErrBadRequest, len(found), ref, strings.Join(found, ", "))
}

// Resolve reports the CID of a model reference (a CID, or the name of a
// model the node knows) and the model's name, if it has one here.
func (n *Node) Resolve(ref string) (api.ModelEntry, error) {
	c, err := n.resolve(ref)
	if err != nil {
		return api.ModelEntry{}, err
	}
	e := api.ModelEntry{CID: c.String()}
	for _, x := range n.models.entries() {
		if x.CID == e.CID {
			e = x
		}
	}
	if e.Name == "" && ref != e.CID {
		e.Name = ref
	}
	return e, nil
}

// Import stores a model file as blocks, records it and announces it on the
// DHT in the background.
func (n *Node) Import(ctx context.Context, req api.ImportRequest) (api.ImportResult, error) {
	var res api.ImportResult
	defer n.beginBlockWrites()()
	src, err := checkpoints.Load(req.Path)
	if err != nil {
		return res, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	defer src.Close()
	// A model without a tokenizer could be stored but never run.
	if src.Tokenizer == nil && req.Tokenizer == "" {
		return res, fmt.Errorf("%w: %s has no tokenizer inside (llama2.c checkpoints keep it in a separate tokenizer.bin): import it with its tokenizer, -z tokenizer.bin (\"tokenizer\" in the API request)", api.ErrBadRequest, req.Path)
	}
	opts := []shards.ImportOption{shards.Name(req.Name)}
	if req.DType != "" {
		dt, err := kernels.ParseDType(req.DType)
		if err != nil {
			return res, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
		}
		opts = append(opts, shards.Quantize(dt))
	}
	if req.Tokenizer != "" {
		tok, err := tokenizer.LoadLlama2C(req.Tokenizer, src.Weights.Config.Vocab)
		if err != nil {
			return res, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
		}
		opts = append(opts, shards.WithTokenizer(tok))
	}
	start := time.Now()
	im, err := shards.Import(ctx, src, n.store, opts...)
	if err != nil {
		return res, err
	}
	if err := n.models.add(api.ModelEntry{CID: im.Root.String(), Name: req.Name, Added: time.Now().UTC()}); err != nil {
		return res, err
	}
	n.announce(im.Announce)
	return api.ImportResult{CID: im.Root.String(), Name: req.Name, Bytes: im.Bytes, Blocks: im.Blocks,
		MBps: float64(im.Bytes) / 1e6 / time.Since(start).Seconds()}, nil
}

// announce provides CIDs on the DHT in the background; the node's context
// bounds it. A node that knows no peer yet leaves it to the reprovide loop,
// which announces everything kept once the first peer joins.
func (n *Node) announce(cids []cid.Cid) {
	if !n.host.DHT().Routable() {
		log.Debug("announce once a peer joins the DHT", "cids", len(cids))
		return
	}
	n.wg.Go(func() {
		if err := n.ex.Provide(n.ctx, cids...); err != nil && n.ctx.Err() == nil {
			log.Warn("announce on the DHT", "cids", len(cids), "err", err)
		}
	})
}

// pullSyncEvery is how many bytes a pull receives between background
// syncs of the store.
const pullSyncEvery = 64 << 20

// Pull fetches the blocks of a model (or a span) that the node lacks, from
// whichever peers have them, calling progress as blocks arrive. Blocks
// already here are not fetched again, so a pull that stopped resumes.
func (n *Node) Pull(ctx context.Context, req api.PullRequest, progress func(api.PullProgress)) error {
	// A name the node knows stands for the CID: a pull that stopped
	// resumes by name.
	root, err := n.resolve(req.CID)
	if err != nil {
		return err
	}
	timeout := 10 * time.Minute
	if req.Timeout != "" {
		if timeout, err = time.ParseDuration(req.Timeout); err != nil || timeout <= 0 {
			return fmt.Errorf("%w: timeout %q", api.ErrBadRequest, req.Timeout)
		}
	}
	endPull, err := n.beginPull(n.pulls, root)
	if err != nil {
		return err
	}
	defer endPull()
	var finding sync.WaitGroup
	defer finding.Wait()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// One session for the whole pull: the peers that had the manifest are
	// asked straight for the parts and the chunks.
	sess := n.ex.NewSession(ctx)
	// The model's providers are looked up on the DHT, dialled and
	// preferred by the session while it asks the peers already connected:
	// a node that is not yet connected to a provider need not wait for
	// bitswap's own provider search, which starts after a delay, and a
	// node with many connected peers asks the providers first.
	finding.Go(func() { n.connectProviders(ctx, root, sess) })
	m, err := shards.GetManifest(ctx, sess, root)
	if err != nil {
		return err
	}
	span := shards.Whole(m.Config.Layers)
	if req.Layers != "" {
		if span.First, span.Last, err = shards.ParseLayers(req.Layers, m.Config.Layers); err != nil {
			return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
		}
		span.Embedding, span.Head, span.Tokenizer = false, false, false
	}
	if req.Experts != "" {
		if m.Config.Experts == 0 {
			return fmt.Errorf("%w: experts %q of model %s, which has no routed experts", api.ErrBadRequest, req.Experts, root)
		}
		if span.Experts, err = model.ParseExperts(req.Experts, m.Config.Experts); err != nil {
			return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
		}
	}
	// The parts (a small block each) come in one fetch rather than one
	// round trip each; BlocksFor then reads them from the store.
	for r := range sess.Fetch(ctx, m.Parts(span)) {
		if r.Err != nil {
			return fmt.Errorf("pull %s: part %s: %w", root, r.CID, r.Err)
		}
	}
	need, total, err := shards.BlocksFor(ctx, sess, root, span)
	if err != nil {
		return err
	}
	p, err := n.download(ctx, sess, root, need, total, progress)
	if err != nil {
		return err
	}
	name := m.Name
	if err := n.models.add(api.ModelEntry{CID: root.String(), Name: name, Added: time.Now().UTC()}); err != nil {
		return err
	}
	if err := n.pullDone(n.pulls, root); err != nil {
		return err
	}
	n.announce(append([]cid.Cid{root}, m.Parts(span)...))
	p.Done, p.CID, p.DoneBytes = true, root.String(), total
	progress(p)
	return nil
}

// download fetches the blocks of need (total bytes in all) that the store
// lacks through sess, calling progress as they arrive, and syncs the store:
// the body of a pull of root, a model's or a data set's. It returns the
// last progress.
func (n *Node) download(ctx context.Context, sess *blocks.Session, root cid.Cid, need []cid.Cid, total int64, progress func(api.PullProgress)) (api.PullProgress, error) {
	var missing []cid.Cid
	var held int64 // bytes of the blocks of need the store holds
	for _, c := range need {
		if size, err := n.store.GetSize(ctx, c); errors.Is(err, blocks.ErrNotFound) {
			missing = append(missing, c)
		} else if err != nil {
			return api.PullProgress{}, err
		} else {
			held += int64(size)
		}
	}
	// A pull the store's cap has no room for fails now, not when the
	// store is full.
	if err := n.checkStoreRoom(root, max(total-held, 0)); err != nil {
		return api.PullProgress{}, err
	}
	p := api.PullProgress{TotalBlocks: len(need), DoneBlocks: len(need) - len(missing), TotalBytes: total}
	p.DoneBytes = total - int64(len(missing))*blocks.ChunkSize // an estimate until blocks arrive
	p.DoneBytes = max(p.DoneBytes, 0)
	progress(p)
	// The store writes without waiting for the disk; a pull is reported
	// done only once its blocks are on disk (store.Sync). Syncing in the
	// background as the blocks come makes the disk work alongside the
	// network, so that little is left for the last Sync.
	var (
		syncs     sync.WaitGroup
		syncing   atomic.Bool
		sinceSync int64
	)
	defer syncs.Wait()
	last := time.Now()
	// The chunks are only stored (Download), not handed over: the exchange
	// reuses its buffers instead of allocating one per chunk.
	for r := range sess.Download(ctx, missing) {
		if r.Err != nil {
			return p, fmt.Errorf("pull %s: %w", root, r.Err)
		}
		p.DoneBlocks++
		p.DoneBytes = min(p.DoneBytes+int64(r.Size), total)
		if sinceSync += int64(r.Size); sinceSync >= pullSyncEvery && syncing.CompareAndSwap(false, true) {
			sinceSync = 0
			syncs.Go(func() {
				defer syncing.Store(false)
				if err := n.store.Sync(); err != nil {
					log.Debug("sync during pull", "err", err)
				}
			})
		}
		if time.Since(last) > 200*time.Millisecond {
			progress(p)
			last = time.Now()
		}
	}
	syncs.Wait()
	if err := n.store.Sync(); err != nil {
		return p, fmt.Errorf("pull %s: %w", root, err)
	}
	return p, nil
}

// connectProviders dials a few providers of root found on the DHT and
// has sess prefer them.
func (n *Node) connectProviders(ctx context.Context, root cid.Cid, sess *blocks.Session) {
	n.waitJoined(ctx)
	provs, err := n.ex.FindProviders(ctx, root, 4)
	if err != nil {
		log.Debug("find providers for a pull", "cid", root, "err", err)
		return
	}
	for _, ai := range provs {
		if err := n.host.Connect(ctx, ai); err != nil {
			log.Debug("connect to a provider", "peer", ai.ID, "err", err)
			continue
		}
		sess.Prefer(ai.ID)
	}
}

// Inspect reports a model's parts and which are local, reading only local
// blocks.
func (n *Node) Inspect(ctx context.Context, c cid.Cid) (api.ModelInfo, error) {
	info := api.ModelInfo{ModelEntry: api.ModelEntry{CID: c.String()}}
	for _, e := range n.models.entries() {
		if e.CID == c.String() {
			info.ModelEntry = e
		}
	}
	in, err := shards.Inspect(ctx, n.store, n.store, c)
	if err != nil {
		if errors.Is(err, blocks.ErrNotFound) {
			return info, fmt.Errorf("%w: model %s is not on this node (pull it first)", api.ErrNotFound, c)
		}
		return info, err
	}
	info.Manifest = in.Manifest
	for i := range in.Parts {
		p := &in.Parts[i]
		pi := api.PartInfo{Name: p.String(), CID: p.CID.String(), Bytes: p.Bytes, Tensors: p.Tensors, Local: p.Local()}
		if pi.Local {
			info.LocalParts++
			info.Bytes += pi.Bytes
		}
		info.TotalParts++
		info.Parts = append(info.Parts, pi)
	}
	info.Whole = info.LocalParts == info.TotalParts && in.TokenizerLocalChunks == in.TokenizerChunks && in.RopeFreqsLocalChunks == in.RopeFreqsChunks
	return info, nil
}

// RemoveModel forgets a model and deletes its blocks, except those another
// kept model also uses.
func (n *Node) RemoveModel(ctx context.Context, c cid.Cid) (int, error) {
	found, err := n.models.remove(c.String())
	if err != nil {
		return 0, err
	}
	if unfinished, err := n.pulls.remove(c.String()); err != nil {
		return 0, err
	} else if unfinished {
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%w: model %s is not on this node", api.ErrNotFound, c)
	}
	// A whole model loaded from these blocks goes with them.
	n.swarmMu.Lock()
	lm := n.blockModels[c.String()]
	delete(n.blockModels, c.String())
	n.swarmMu.Unlock()
	if lm != nil {
		lm.Close()
	}
	return n.deleteUnkept(ctx, c, n.localBlocks)
}

// localBlocks lists the blocks of a model reachable through local blocks.
func (n *Node) localBlocks(ctx context.Context, c cid.Cid) ([]cid.Cid, error) {
	m, err := shards.GetManifest(ctx, n.store, c)
	if err != nil {
		return nil, err
	}
	out := []cid.Cid{c}
	// A layer part of routed experts links its expert parts.
	parts := m.Parts(shards.Whole(len(m.Layers)))
	for len(parts) > 0 {
		pc := parts[0]
		parts = parts[1:]
		out = append(out, pc)
		b, err := n.store.Get(ctx, pc)
		if errors.Is(err, blocks.ErrNotFound) || errors.Is(err, blocks.ErrCorrupt) {
			continue // not here: nor is anything known below it
		}
		if err != nil {
			return nil, err
		}
		part, err := shards.DecodePart(b.Data)
		if err != nil {
			continue
		}
		for _, t := range part.Tensors {
			for _, ch := range t.Chunks {
				out = append(out, ch.CID)
			}
		}
		for _, l := range part.Experts {
			parts = append(parts, l.CID)
		}
	}
	return append(out, m.OwnChunks()...), nil
}

// wholeHere checks that every block of model c is in the store: the
// manifest, every part with its chunks, and the tokenizer.
func (n *Node) wholeHere(ctx context.Context, c cid.Cid) (api.ModelInfo, error) {
	info, err := n.Inspect(ctx, c)
	if err != nil || info.Whole {
		return info, err
	}
	what := fmt.Sprintf("%d of %d parts", info.LocalParts, info.TotalParts)
	if info.LocalParts == info.TotalParts {
		what = "every part but its tokenizer or rotary factors"
	}
	return info, fmt.Errorf("%w: only part of model %s is on this node (%s): fetch the rest with mycel models pull %s", api.ErrNotFound, c, what, c)
}

// ListModels describes every kept model (without its manifest and parts),
// oldest first.
func (n *Node) ListModels(ctx context.Context) []api.ModelInfo {
	out := []api.ModelInfo{}
	for _, e := range n.models.entries() {
		c, err := cid.Decode(e.CID)
		if err != nil {
			continue
		}
		info, err := n.Inspect(ctx, c)
		if err != nil {
			info = api.ModelInfo{ModelEntry: e}
		}
		info.Parts, info.Manifest = nil, nil
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Added.Before(out[j].Added) })
	return out
}

// ExportModel writes model c as a GGUF file into w. A model not all here
// is refused before anything is written.
func (n *Node) ExportModel(ctx context.Context, c cid.Cid, w io.Writer) error {
	if _, err := n.wholeHere(ctx, c); err != nil {
		return err
	}
	if err := shards.Export(ctx, n.store, c, w); err != nil {
		log.Warn("export", "cid", c, "err", err)
		return fmt.Errorf("export %s: %w", c, err)
	}
	return nil
}

// Block reads a block from the local store; it does not fetch.
func (n *Node) Block(ctx context.Context, c cid.Cid) ([]byte, error) {
	b, err := n.store.Get(ctx, c)
	if errors.Is(err, blocks.ErrNotFound) {
		return nil, kindOf(err, api.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return b.Data, nil
}
