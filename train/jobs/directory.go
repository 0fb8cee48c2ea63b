package jobs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/records"
)

// log is the package's logger; --log-level info,jobs=debug turns it up.
var log = logging.Logger("jobs")

// jobsNamespace prefixes the pubsub topic and the DHT key of the node
// records; jobsTopic is their one topic.
const (
	jobsNamespace = "/mycel/train/jobs/"
	jobsTopic     = "all"
)

// DefaultRecordTTL is the life of a node record: the jobs of a node that
// stops announcing are forgotten within it, unless others carry them.
const DefaultRecordTTL = 10 * time.Minute

// ErrFull is returned by Carry when this node's record has no room left
// for another job (MaxCarried jobs, or MaxRecordBytes).
var ErrFull = errors.New("jobs: this node carries as many jobs as its record holds")

// Directory knows the jobs published on the swarm. Each node announces
// one record on the jobs topic, the sealed jobs it carries, through the
// record machinery (package p2p/records: pubsub, the DHT and the pull
// protocol p2p.JobsProtocol). A job lives as long as some node carries
// it: its submitter going offline does not end it. A node that hears a
// stopped version of a job it carries carries that instead, so the stop
// spreads with the job.
type Directory struct {
	dir *records.Directory[nodeRecord, *nodeRecord]
	cfg DirectoryConfig

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // announce now

	annMu sync.Mutex // one announcement at a time, in order

	mu      sync.Mutex
	carried map[string]carriedJob
	closed  bool
}

type carriedJob struct {
	job    *Job
	sealed []byte
}

// DirectoryConfig configures a Directory; zero fields take the defaults.
type DirectoryConfig struct {
	// PubSub carries node records as they change; nil: lookups only.
	PubSub *pubsub.PubSub
	// Routing finds the nodes that carry jobs on the DHT; nil: pubsub and
	// the peers already known only.
	Routing routing.ContentRouting
	// RecordTTL is the life of a node record (DefaultRecordTTL, at most
	// MaxRecordTTL).
	RecordTTL time.Duration
	// Announce is how often the node announces its record again, less
	// than RecordTTL (RecordTTL/3).
	Announce time.Duration
}

// NewDirectory starts a directory on h: it registers the jobs protocol's
// handler, joins the jobs topic and starts the goroutine that announces
// this node's record and takes up the stops it hears. Close stops it.
func NewDirectory(h host.Host, cfg DirectoryConfig) (*Directory, error) {
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = DefaultRecordTTL
	}
	cfg.RecordTTL = min(cfg.RecordTTL, MaxRecordTTL)
	if cfg.Announce <= 0 || cfg.Announce >= cfg.RecordTTL {
		cfg.Announce = cfg.RecordTTL / 3
	}
	dir, err := records.New(h, nodes, records.Config{
		Protocol:  p2p.JobsProtocol,
		Namespace: jobsNamespace,
		Routing:   cfg.Routing,
		PubSub:    cfg.PubSub,
		RecordTTL: cfg.RecordTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	changed, stop, err := dir.Watch(jobsTopic)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("jobs: %w", err)
	}
	d := &Directory{dir: dir, cfg: cfg, kick: make(chan struct{}, 1), carried: map[string]carriedJob{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Go(func() {
		defer stop()
		d.run(changed)
	})
	return d, nil
}

// run announces this node's record every Announce and when kicked, and
// takes up the stopped versions of carried jobs when the records change,
// until the directory closes.
func (d *Directory) run(changed <-chan struct{}) {
	t := time.NewTicker(d.cfg.Announce)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-changed:
			if !d.takeStops() {
				continue
			}
		case <-d.kick:
		case <-t.C:
		}
		if err := d.announce(d.ctx); err != nil && d.ctx.Err() == nil {
			log.Warn("announce the jobs carried", "err", err)
		}
	}
}

// takeStops replaces each carried job whose stopped version some record
// holds with that version; it says whether it replaced any.
func (d *Directory) takeStops() bool {
	heard := d.heard()
	d.mu.Lock()
	defer d.mu.Unlock()
	took := false
	for id, c := range d.carried {
		if h, ok := heard[id]; ok && better(h, c) {
			d.carried[id] = h
			took = true
			log.Info("job stopped by its submitter", "job", id, "submitter", h.job.Submitter)
		}
	}
	return took
}

// better says whether a is the version of a job to keep rather than b: a
// stopped version over a running one, and of two stopped ones the first
// stop (ties to the smaller bytes, so that every node picks the same).
func better(a, b carriedJob) bool {
	as, bs := !a.job.Stopped.IsZero(), !b.job.Stopped.IsZero()
	switch {
	case as != bs:
		return as
	case !as:
		return false
	case !a.job.Stopped.Equal(b.job.Stopped):
		return a.job.Stopped.Before(b.job.Stopped)
	}
	return bytes.Compare(a.sealed, b.sealed) < 0
}

// heard returns the best version of every job the valid records hold.
func (d *Directory) heard() map[string]carriedJob {
	out := map[string]carriedJob{}
	for _, r := range d.dir.Known(jobsTopic) {
		for i, j := range r.opened {
			c := carriedJob{job: j, sealed: r.Jobs[i]}
			if old, ok := out[j.ID]; !ok || better(c, old) {
				out[j.ID] = c
			}
		}
	}
	return out
}

// announce signs and publishes this node's record: the jobs it carries,
// or its withdrawal when it carries none.
func (d *Directory) announce(ctx context.Context) error {
	d.annMu.Lock()
	defer d.annMu.Unlock()
	d.mu.Lock()
	carried := make([]carriedJob, 0, len(d.carried))
	for _, c := range d.carried {
		carried = append(carried, c)
	}
	d.mu.Unlock()
	if len(carried) == 0 {
		return d.dir.Withdraw(ctx, jobsTopic)
	}
	slices.SortFunc(carried, func(a, b carriedJob) int { return cmp.Compare(a.job.ID, b.job.ID) })
	r := &nodeRecord{Scope: jobsTopic}
	for _, c := range carried {
		r.Jobs = append(r.Jobs, c.sealed)
	}
	return d.dir.Announce(ctx, r)
}

// Carry opens a sealed job and adds it to the jobs this node announces
// (a stopped version replaces a running one; a running one does not
// replace a stopped one), then announces at once. It returns the version
// carried. A job this node carries lives on while the node does, its
// submitter gone or not.
func (d *Directory) Carry(ctx context.Context, sealed []byte) (*Job, error) {
	j, err := Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("jobs: carry: %w", err)
	}
	c := carriedJob{job: j, sealed: bytes.Clone(sealed)}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, records.ErrClosed
	}
	old, had := d.carried[j.ID]
	if !had {
		size := recordCost(c.sealed)
		for _, o := range d.carried {
			size += recordCost(o.sealed)
		}
		if len(d.carried) >= MaxCarried || size > MaxRecordBytes-recordSlack {
			d.mu.Unlock()
			return nil, ErrFull
		}
	}
	if had && !better(c, old) {
		c = old
	} else {
		d.carried[j.ID] = c
	}
	d.mu.Unlock()
	if err := d.announce(ctx); err != nil {
		return clone(c.job), fmt.Errorf("jobs: carry %s: %w", j.ID, err)
	}
	return clone(c.job), nil
}

// Drop stops carrying the job id; the node announces its record without
// it soon after.
func (d *Directory) Drop(id string) {
	d.mu.Lock()
	_, had := d.carried[id]
	delete(d.carried, id)
	d.mu.Unlock()
	if had {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// Jobs returns every valid job known, carried here or heard in a node
// record: one per ID, a stopped version winning over a running one,
// sorted by Created then ID.
func (d *Directory) Jobs() []*Job {
	all := d.all()
	out := make([]*Job, 0, len(all))
	for _, c := range all {
		out = append(out, clone(c.job))
	}
	slices.SortFunc(out, func(a, b *Job) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// Job returns the job id, in its best known version, and its sealed
// bytes (to relay or carry).
func (d *Directory) Job(id string) (*Job, []byte, bool) {
	c, ok := d.all()[id]
	if !ok {
		return nil, nil, false
	}
	return clone(c.job), bytes.Clone(c.sealed), true
}

// all merges the jobs heard with those carried here.
func (d *Directory) all() map[string]carriedJob {
	all := d.heard()
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, c := range d.carried {
		if old, ok := all[id]; !ok || better(c, old) {
			all[id] = c
		}
	}
	return all
}

// Lookup asks the network for the node records (records.Directory's
// Lookup: the DHT's providers, the peers known, the topic's peers and
// this node's neighbours).
func (d *Directory) Lookup(ctx context.Context) error {
	if err := d.dir.Lookup(ctx, jobsTopic); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	return nil
}

// Watch returns a channel that receives a value (coalesced) whenever the
// node records change, and a function that stops the watch.
func (d *Directory) Watch() (<-chan struct{}, func(), error) { return d.dir.Watch(jobsTopic) }

// Close stops the directory: its goroutine, handler and subscription. It
// does not withdraw this node's record; the others forget it when it
// expires. It may be called more than once.
func (d *Directory) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return d.dir.Close()
}

// clone copies j, so that callers cannot change what the directory holds.
func clone(j *Job) *Job {
	c := *j
	c.Spec = bytes.Clone(j.Spec)
	return &c
}
