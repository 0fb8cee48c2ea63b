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
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints/datasets"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/train"
)

// Data sets are kept like models: the file as content-addressed blocks
// under a small manifest (checkpoints/datasets), a list of those kept
// (dataFile) in which a name stands for its CID, announced on the DHT,
// pulled from whichever peers have them, and kept by store GC.

// Files of the data directory: the data sets kept, and the pulls of data
// sets begun and not completed.
const (
	dataFile      = "datasets.json"
	dataPullsFile = "data-pulls.json"
)

// resolveData turns a data set reference into its CID: a CID stands for
// itself; a name is looked up among the data sets the node keeps.
func (n *Node) resolveData(ref string) (cid.Cid, error) {
	if ref == "" {
		return cid.Undef, fmt.Errorf("%w: no data set given (a CID, or a name from mycel data ls)", api.ErrBadRequest)
	}
	if c, err := cid.Decode(ref); err == nil {
		return c, nil
	}
	var found []string
	for _, e := range n.data.entries() {
		if e.Name == ref && !slices.Contains(found, e.CID) {
			found = append(found, e.CID)
		}
	}
	switch len(found) {
	case 0:
		return cid.Undef, fmt.Errorf("%w: data set %q is neither a CID nor the name of a data set on this node (mycel data ls)", api.ErrNotFound, ref)
	case 1:
		return cid.Decode(found[0])
	}
	sort.Strings(found)
	return cid.Undef, fmt.Errorf("%w: %d data sets are named %q (%s): give the CID of the one you mean", api.ErrBadRequest, len(found), ref, strings.Join(found, ", "))
}

// ImportData reads a data set file (at most train.MaxDataBytes), parses it
// with train.ParseData, and stores it as blocks under name (may be empty),
// records it and announces it on the DHT in the background. A file that
// does not parse is refused with the parser's error, and nothing is
// stored.
func (n *Node) ImportData(ctx context.Context, name string, file io.Reader) (api.DataImportResult, error) {
	var res api.DataImportResult
	if len(name) > datasets.MaxNameBytes || !utf8.ValidString(name) {
		return res, fmt.Errorf("%w: a data set's name is at most %d bytes of UTF-8", api.ErrBadRequest, datasets.MaxNameBytes)
	}
	data, err := io.ReadAll(io.LimitReader(file, train.MaxDataBytes+1))
	if err != nil {
		return res, fmt.Errorf("data import: reading the file: %w", err)
	}
	format, recs, err := train.ParseData(data)
	if err != nil {
		return res, kindOf(err, api.ErrBadRequest)
	}
	defer n.beginBlockWrites()()
	im, err := datasets.Import(ctx, n.store, data, name, format, len(recs))
	if err != nil {
		return res, err
	}
	if err := n.store.Sync(); err != nil {
		return res, fmt.Errorf("data import: %w", err)
	}
	if err := n.data.add(api.ModelEntry{CID: im.Root.String(), Name: name, Added: time.Now().UTC()}); err != nil {
		return res, err
	}
	n.announce([]cid.Cid{im.Root})
	return api.DataImportResult{CID: im.Root.String(), Name: name, Format: format, Examples: len(recs),
		Bytes: int64(len(data)), Blocks: im.Blocks}, nil
}

// PullData fetches the blocks of a data set that the node lacks, from
// whichever peers have it, calling progress as blocks arrive, and keeps
// it under the name its manifest gives. Blocks already here are not
// fetched again, so a pull that stopped resumes.
func (n *Node) PullData(ctx context.Context, req api.DataPullRequest, progress func(api.PullProgress)) error {
	root, err := n.resolveData(req.CID)
	if err != nil {
		return err
	}
	var m *datasets.Manifest
	return n.pullBlob(ctx, n.dataPulls, root, req.Timeout, progress, func(ctx context.Context, get shards.Getter) (*shards.Blob, error) {
		m, err = datasets.GetManifest(ctx, get, root)
		if errors.Is(err, datasets.ErrNotDataSet) {
			return nil, kindOf(err, api.ErrBadRequest)
		}
		if err != nil {
			return nil, err
		}
		return &m.File, nil
	}, func() error {
		return n.data.add(api.ModelEntry{CID: root.String(), Name: m.Name, Added: time.Now().UTC()})
	})
}

// pullBlob fetches what the node lacks of an object made of a manifest
// over one blob (a data set, a checkpoint) from whichever peers have it:
// manifest fetches and decodes the manifest at root through get and
// returns its blob, keep records the object once it is whole. The pull
// is listed in pulls while it runs and until it completes; timeout ("" =
// 10 minutes) bounds it.
func (n *Node) pullBlob(ctx context.Context, pulls *registry, root cid.Cid, timeout string, progress func(api.PullProgress),
	manifest func(context.Context, shards.Getter) (*shards.Blob, error), keep func() error) error {
	limit := 10 * time.Minute
	if timeout != "" {
		var err error
		if limit, err = time.ParseDuration(timeout); err != nil || limit <= 0 {
			return fmt.Errorf("%w: timeout %q", api.ErrBadRequest, timeout)
		}
	}
	endPull, err := n.beginPull(pulls, root)
	if err != nil {
		return err
	}
	defer endPull()
	var finding sync.WaitGroup
	defer finding.Wait()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// As a model's pull: one session, which prefers the providers found
	// on the DHT while it asks the peers already connected.
	sess := n.ex.NewSession(ctx)
	finding.Go(func() { n.connectProviders(ctx, root, sess) })
	blob, err := manifest(ctx, sess)
	if err != nil {
		return err
	}
	chunks := make([]cid.Cid, len(blob.Chunks))
	for i, l := range blob.Chunks {
		chunks[i] = l.CID
	}
	p, err := n.download(ctx, sess, root, chunks, blob.Size, progress)
	if err != nil {
		return err
	}
	if err := keep(); err != nil {
		return err
	}
	if err := n.pullDone(pulls, root); err != nil {
		return err
	}
	n.announce([]cid.Cid{root})
	p.Done, p.CID, p.DoneBytes = true, root.String(), blob.Size
	progress(p)
	return nil
}

// dataInfo describes data set c from the blocks here, and returns its
// manifest.
func (n *Node) dataInfo(ctx context.Context, c cid.Cid) (api.DataInfo, *datasets.Manifest, error) {
	info := api.DataInfo{ModelEntry: api.ModelEntry{CID: c.String()}}
	for _, e := range n.data.entries() {
		if e.CID == info.CID {
			info.ModelEntry = e
		}
	}
	m, err := datasets.GetManifest(ctx, n.store, c)
	switch {
	case errors.Is(err, blocks.ErrNotFound):
		return info, nil, fmt.Errorf("%w: data set %s is not on this node (mycel data pull it first)", api.ErrNotFound, c)
	case errors.Is(err, datasets.ErrNotDataSet):
		return info, nil, kindOf(err, api.ErrBadRequest)
	case err != nil:
		return info, nil, err
	}
	if info.Name == "" {
		info.Name = m.Name
	}
	info.Format, info.Examples, info.Bytes = m.DataFormat, m.Examples, m.File.Size
	info.TotalBlocks = len(m.File.Chunks)
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

// ListData describes every kept data set, oldest first.
func (n *Node) ListData(ctx context.Context) []api.DataInfo {
	out := []api.DataInfo{}
	for _, e := range n.data.entries() {
		c, err := cid.Decode(e.CID)
		if err != nil {
			continue
		}
		info, _, err := n.dataInfo(ctx, c)
		if err != nil {
			info = api.DataInfo{ModelEntry: e}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Added.Before(out[j].Added) })
	return out
}

// InspectData describes a data set (by CID or name) from the blocks here:
// its entry, and with o.Sample its first examples, with o.Model (a model's
// CID or name) the token counts with that model's tokenizer, as training
// tokenizes them. A data set only partly here has no sample, and cannot
// be counted.
func (n *Node) InspectData(ctx context.Context, ref string, o api.DataInspectOptions) (api.DataInfo, error) {
	c, err := n.resolveData(ref)
	if err != nil {
		return api.DataInfo{}, err
	}
	info, m, err := n.dataInfo(ctx, c)
	if err != nil || (o.Sample == 0 && o.Model == "") {
		return info, err
	}
	if !info.Whole {
		if o.Model == "" {
			return info, nil
		}
		return info, fmt.Errorf("%w: only %d of %d blocks of data set %s are on this node: fetch the rest with mycel data pull %s", api.ErrNotFound, info.LocalBlocks, info.TotalBlocks, c, c)
	}
	data, err := datasets.ReadFile(ctx, n.store, m)
	if err != nil {
		return info, err
	}
	_, recs, err := train.ParseData(data)
	if err != nil {
		return info, fmt.Errorf("data set %s: %w", c, err)
	}
	for _, r := range recs[:min(o.Sample, len(recs))] {
		s := api.DataSample{Record: r}
		for _, f := range []*string{&s.Text, &s.Prompt, &s.Completion} {
			if len(*f) > api.SampleChars {
				*f, s.Cut = cutUTF8(*f, api.SampleChars), true
			}
		}
		info.Sample = append(info.Sample, s)
	}
	if o.Model == "" {
		return info, nil
	}
	tok, root, err := n.modelTokenizer(ctx, o.Model)
	if err != nil {
		return info, err
	}
	t := &api.DataTokens{Model: root.String()}
	for i, ex := range train.Tokenize(recs, tok) {
		trained := 0
		for _, l := range ex.Loss {
			if l {
				trained++
			}
		}
		t.Tokens += int64(len(ex.Tokens))
		t.Trained += int64(trained)
		t.Longest = max(t.Longest, len(ex.Tokens))
		if i < len(info.Sample) {
			info.Sample[i].Tokens, info.Sample[i].Trained = len(ex.Tokens), trained
		}
	}
	info.Tokens = t
	return info, nil
}

// cutUTF8 cuts s to at most n bytes, at a character boundary.
func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// modelTokenizer fetches the tokenizer of a model (a CID or a name the
// node knows), from the store or the swarm.
func (n *Node) modelTokenizer(ctx context.Context, ref string) (tokenizer.Tokenizer, cid.Cid, error) {
	root, err := n.resolve(ref)
	if err != nil {
		return nil, cid.Undef, err
	}
	if err := n.findModel(ctx, root); err != nil {
		return nil, cid.Undef, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := shards.Load(ctx, n.ex, root, shards.Span{Tokenizer: true})
	if err != nil {
		return nil, cid.Undef, fmt.Errorf("model %s: %w", root, err)
	}
	if l.Tokenizer == nil {
		return nil, cid.Undef, fmt.Errorf("%w: model %s has no tokenizer in its manifest", api.ErrBadRequest, root)
	}
	return l.Tokenizer, root, nil
}

// DataBytes returns a data set's file (by CID or name): from the store
// when it is all here, else pulled from the peers that have it first (and
// then kept, like any pulled data set). This is what a trainer reads.
func (n *Node) DataBytes(ctx context.Context, ref string) ([]byte, error) {
	c, err := n.resolveData(ref)
	if err != nil {
		return nil, err
	}
	info, m, err := n.dataInfo(ctx, c)
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		return nil, err
	}
	if err != nil || !info.Whole {
		if err := n.PullData(ctx, api.DataPullRequest{CID: c.String()}, func(api.PullProgress) {}); err != nil {
			return nil, err
		}
		if m, err = datasets.GetManifest(ctx, n.store, c); err != nil {
			return nil, err
		}
	}
	return datasets.ReadFile(ctx, n.store, m)
}

// RemoveData forgets a data set and deletes its blocks, except those a
// kept model or another kept data set also uses.
func (n *Node) RemoveData(ctx context.Context, ref string) (int, error) {
	c, err := n.resolveData(ref)
	if err != nil {
		return 0, err
	}
	found, err := n.data.remove(c.String())
	if err != nil {
		return 0, err
	}
	if unfinished, err := n.dataPulls.remove(c.String()); err != nil {
		return 0, err
	} else if unfinished {
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%w: data set %s is not on this node", api.ErrNotFound, c)
	}
	return n.deleteUnkept(ctx, c, n.dataBlocks)
}

// deleteUnkept deletes the blocks of object c (as blocksOf lists them)
// that are here and that nothing kept reaches, once c has been forgotten;
// an object whose manifest is gone has nothing left to delete.
func (n *Node) deleteUnkept(ctx context.Context, c cid.Cid, blocksOf func(context.Context, cid.Cid) ([]cid.Cid, error)) (int, error) {
	keep, err := n.reachable(ctx)
	if err != nil {
		return 0, err
	}
	cs, err := blocksOf(ctx, c)
	if errors.Is(err, blocks.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, x := range cs {
		if keep[string(x.Hash())] {
			continue
		}
		if has, err := n.store.Has(ctx, x); err != nil {
			return deleted, err
		} else if !has {
			continue
		}
		if err := n.store.Delete(ctx, x); err != nil {
			return deleted, err
		}
		deleted++
	}
	return deleted, nil
}

// dataBlocks lists the blocks of data set c: its manifest (which must be
// here) and its file's chunks.
func (n *Node) dataBlocks(ctx context.Context, c cid.Cid) ([]cid.Cid, error) {
	m, err := datasets.GetManifest(ctx, n.store, c)
	if err != nil {
		return nil, err
	}
	return append([]cid.Cid{c}, m.Chunks()...), nil
}
