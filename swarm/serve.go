package swarm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// Defaults of ServeConfig.
const (
	DefaultRebalanceInterval = time.Minute
	DefaultRebalanceDelay    = 2 * time.Second
	DefaultMargin            = 0.2
)

// LoadFunc fetches and loads the layers of span, and of their routed
// experts those of experts (nil: every one), pulling them from the swarm
// if needed. release frees them once the server is done with them.
type LoadFunc func(ctx context.Context, span Span, experts model.ExpertSet) (w *model.Weights, release func() error, err error)

// ServeConfig configures Serve.
type ServeConfig struct {
	// Model is the model's id (its manifest CID); Layers its layer count.
	Model  string
	Layers int
	// Span, if set, is the layers to serve, for good. If zero, the node
	// chooses the span that helps the swarm most (ChooseSpan) and moves
	// when the swarm changes (Rebalance).
	Span Span
	// MaxLayers bounds how many layers the node holds (0: all).
	MaxLayers int
	// ModelExperts is the model's routed experts a layer (0: a dense
	// model).
	ModelExperts int
	// Experts, if set, are the routed experts of the span's layers to
	// hold, for good (nil: every one, or MaxExperts of them).
	Experts model.ExpertSet
	// MaxExperts, below ModelExperts with Experts nil, is how many
	// experts of each layer the node holds: it picks those the swarm
	// needs most (ChooseExperts), and picks again as the swarm changes.
	MaxExperts int
	// Load loads a span's weights.
	Load LoadFunc
	// Backend runs the server's forward passes.
	Backend kernels.Backend
	// Server is the template of the server's configuration; Model, Span
	// and Experts are filled in, and Holders (the directory's records)
	// where it is nil.
	Server ServerConfig
	// AnnounceInterval is how often the record is announced again
	// (default: a third of the directory's RecordTTL).
	AnnounceInterval time.Duration
	// RebalanceInterval is how often the node checks whether to move,
	// besides whenever the records of the model change.
	RebalanceInterval time.Duration
	// RebalanceDelay is the most a node waits (at random) before acting on
	// a change, so that nodes seeing the same change do not all move to
	// the same gap: the first to move announces it, the others see it.
	RebalanceDelay time.Duration
	// Margin is the hysteresis of Rebalance.
	Margin float64
	// Software goes into the record.
	Software string
	// OnEvent, if set, hears of every span taken.
	OnEvent func(ServeEvent)
}

// ServeEvent reports that a node took a span: at start, or moving from
// another.
type ServeEvent struct {
	Span, From Span
	Moved      bool
	// Throughput is the decode rate measured on the new span (tokens/s).
	Throughput float64
}

func (e ServeEvent) String() string {
	if e.Moved {
		return fmt.Sprintf("moved from layers %s to %s (%.0f tok/s)", e.From, e.Span, e.Throughput)
	}
	return fmt.Sprintf("serving layers %s (%.0f tok/s)", e.Span, e.Throughput)
}

// Serving is a node's service of one model: the span it holds, its
// server, and the loop that announces it and moves it when the swarm
// changes.
type Serving struct {
	h   host.Host
	dir *Directory
	cfg ServeConfig

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	span     Span
	rate     float64
	kvPerPos int64           // KV-cache bytes of one position of one layer
	experts  model.ExpertSet // the experts held (nil: every one)
	// A move held back for another server's, and since when (loop only).
	deferred   Span
	deferredAt time.Time
	srv        *Server
	w          *model.Weights // the span's, kept while suspended
	release    func() error
	closed     bool
	// suspended: Suspend withdrew the record and stopped the server
	// (srv is nil) until Resume.
	suspended bool
	// op serialises take, Suspend and Resume.
	op sync.Mutex
}

// Serve chooses (or takes) a span, loads it, measures its throughput,
// starts a server for it and announces it; then, until Close, it keeps the
// record fresh and moves the span when that helps the swarm. It returns
// once the server is up.
func Serve(ctx context.Context, h host.Host, dir *Directory, cfg ServeConfig) (*Serving, error) {
	if cfg.Load == nil || cfg.Backend == nil {
		return nil, errors.New("swarm: serve: no loader or backend")
	}
	if cfg.Model == "" || cfg.Layers <= 0 {
		return nil, fmt.Errorf("swarm: serve: bad model %q with %d layers", cfg.Model, cfg.Layers)
	}
	fixed := cfg.Span != (Span{})
	if fixed && (cfg.Span.First < 0 || cfg.Span.Last > cfg.Layers || cfg.Span.First >= cfg.Span.Last) {
		return nil, fmt.Errorf("swarm: serve: span %s outside the model's %d layers", cfg.Span, cfg.Layers)
	}
	if cfg.MaxLayers <= 0 || cfg.MaxLayers > cfg.Layers {
		cfg.MaxLayers = cfg.Layers
	}
	if cfg.Experts != nil {
		if cfg.ModelExperts <= 0 {
			return nil, errors.New("swarm: serve: an expert set for a model without routed experts")
		}
		if err := cfg.Experts.Check(cfg.ModelExperts); err != nil {
			return nil, fmt.Errorf("swarm: serve: %w", err)
		}
		cfg.MaxExperts = 0
	}
	if cfg.MaxExperts >= cfg.ModelExperts {
		cfg.MaxExperts = 0
	}
	if cfg.AnnounceInterval <= 0 {
		cfg.AnnounceInterval = dir.Config().RecordTTL / 3
	}
	if cfg.RebalanceInterval <= 0 {
		cfg.RebalanceInterval = DefaultRebalanceInterval
	}
	if cfg.RebalanceDelay <= 0 {
		cfg.RebalanceDelay = DefaultRebalanceDelay
	}
	if cfg.Margin <= 0 {
		cfg.Margin = DefaultMargin
	}
	s := &Serving{h: h, dir: dir, cfg: cfg}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	span, set := cfg.Span, cfg.Experts
	if !fixed || s.autoExperts() {
		recs, err := dir.Servers(ctx, cfg.Model)
		if err != nil {
			s.cancel()
			return nil, err
		}
		if !fixed {
			span = ChooseSpan(NewCoverage(cfg.Layers, cfg.ModelExperts, recs, h.ID()), cfg.MaxLayers, TypicalRate(recs))
		}
		set = s.pickExperts(recs, span)
	}
	if err := s.take(ctx, span, set); err != nil {
		s.cancel()
		// Others counted this node as joining: tell them it is not.
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if werr := dir.Withdraw(wctx, cfg.Model); werr != nil {
			log.Warn("withdraw after a failed start", "model", cfg.Model, "err", werr)
		}
		return nil, err
	}
	// Once the DHT knows it, the node can be found by anyone.
	if err := dir.WaitProvided(ctx, cfg.Model); err != nil {
		log.Warn("servers key not yet provided", "model", cfg.Model, "err", err)
	}
	s.wg.Go(func() { s.loop(!fixed || s.autoExperts()) })
	return s, nil
}

// Config is the configuration the service runs with, defaults filled in.
func (s *Serving) Config() ServeConfig { return s.cfg }

// autoExperts says whether the node picks its experts (MaxExperts).
func (s *Serving) autoExperts() bool { return s.cfg.MaxExperts > 0 }

// pickExperts is the experts to hold at span: the fixed set, or the
// MaxExperts the swarm of recs needs most.
func (s *Serving) pickExperts(recs []ServerRecord, span Span) model.ExpertSet {
	if !s.autoExperts() {
		return s.cfg.Experts
	}
	return ChooseExperts(recs, span, s.cfg.ModelExperts, s.cfg.MaxExperts, s.h.ID())
}

// Experts is the routed experts held now (nil: every one).
func (s *Serving) Experts() model.ExpertSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.experts
}

// serverConfig is the server's configuration for span and set.
func (s *Serving) serverConfig(span Span, set model.ExpertSet) ServerConfig {
	scfg := s.cfg.Server
	scfg.Model, scfg.Span, scfg.Experts = s.cfg.Model, span, set
	if scfg.Holders == nil && set != nil {
		scfg.Holders = func() []ServerRecord { return s.dir.Known(s.cfg.Model) }
	}
	return scfg
}

// Span is the layers served now.
func (s *Serving) Span() Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.span
}

// Throughput is the decode rate measured on the current span.
func (s *Serving) Throughput() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rate
}

// Server is the server of the current span.
func (s *Serving) Server() *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// take loads span with the experts of set, measures it, replaces the
// running server (if any) with one for them and announces it. While it loads, the node announces
// itself as joining span, so that others count it.
func (s *Serving) take(ctx context.Context, span Span, set model.ExpertSet) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.Suspended() {
		return nil // Resume starts the server again
	}
	s.mu.Lock()
	from, moving, fromRate := s.span, s.srv != nil, s.rate
	s.mu.Unlock()
	if err := s.dir.Announce(ctx, ServerRecord{Model: s.cfg.Model, Span: span, Experts: set, State: StateJoining, Software: s.cfg.Software}); err != nil {
		log.Warn("announce joining", "model", s.cfg.Model, "span", span, "err", err)
	}
	w, release, err := s.cfg.Load(ctx, span, set)
	if err != nil {
		return fmt.Errorf("swarm: serve: load layers %s: %w", span, err)
	}
	var rate float64
	if moving && fromRate > 0 && from.Len() > 0 {
		// The running server computes on the backend a measurement would
		// need (a backend runs one pass at a time): the same machine runs
		// a span in time proportional to its layers.
		rate = fromRate * float64(from.Len()) / float64(span.Len())
	} else if rate, err = MeasureThroughput(w, s.cfg.Backend, span); err != nil {
		release()
		return fmt.Errorf("swarm: serve: measure layers %s: %w", span, err)
	}
	srv, err := NewServer(s.h, w, s.cfg.Backend, s.serverConfig(span, set))
	if err != nil {
		release()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		release()
		return ErrClosed
	}
	old, oldRelease := s.srv, s.release
	s.span, s.experts, s.rate, s.srv, s.w, s.release = span, set, rate, srv, w, release
	s.kvPerPos = model.CacheBytes(&w.Config, srv.e.KVType(), 1, 1)
	s.mu.Unlock()
	if old != nil {
		old.Close()
		oldRelease()
	}
	if err := srv.Start(); err != nil {
		return err
	}
	s.announce(ctx)
	ev := ServeEvent{Span: span, From: from, Moved: moving, Throughput: rate}
	log.Info("serve", "model", s.cfg.Model, "event", ev.String())
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(ev)
	}
	return nil
}

// record is the current state as a record to announce.
func (s *Serving) record() ServerRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ServerRecord{Model: s.cfg.Model, Span: s.span, Experts: s.experts, Throughput: s.rate, State: StateServing, Software: s.cfg.Software}
	if s.srv != nil {
		if s.srv.routes != nil {
			r.ExpertLoad = s.srv.routes.announced()
		}
		cfg := s.srv.Config()
		st := s.srv.Stats()
		if per := s.kvPerPos * int64(s.span.Len()); per > 0 {
			r.FreePositions = int(max(cfg.MemoryBudget-st.ReservedBytes, 0) / per)
		}
		r.MaxPositions = cfg.MaxPositions
	}
	return r
}

func (s *Serving) announce(ctx context.Context) {
	if err := s.dir.Announce(ctx, s.record()); err != nil && s.ctx.Err() == nil {
		log.Warn("announce", "model", s.cfg.Model, "err", err)
	}
}

// loop re-announces the record and, if the span is not fixed, checks
// whether to move: every RebalanceInterval and after each change of the
// model's records, once a random delay has passed.
func (s *Serving) loop(rebalance bool) {
	announce := time.NewTicker(s.cfg.AnnounceInterval)
	defer announce.Stop()
	var changed <-chan struct{}
	if rebalance {
		ch, stop, err := s.dir.Watch(s.cfg.Model)
		if err == nil {
			defer stop()
			changed = ch
		}
	}
	check := time.NewTimer(s.cfg.RebalanceInterval)
	defer check.Stop()
	due := time.Now().Add(s.cfg.RebalanceInterval)
	if !rebalance {
		check.Stop()
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-announce.C:
			if !s.Suspended() {
				s.announce(s.ctx)
			}
		case <-changed:
			// Bring the next check forward (never push it back, or a
			// busy swarm's stream of announcements would put it off for
			// ever).
			if d := rand.N(s.cfg.RebalanceDelay) + time.Millisecond; time.Until(due) > d {
				check.Reset(d)
				due = time.Now().Add(d)
			}
		case <-check.C:
			next := time.Duration(0)
			if !s.Suspended() {
				next = s.rebalance()
			}
			if next <= 0 {
				next = s.cfg.RebalanceInterval
			}
			check.Reset(next)
			due = time.Now().Add(next)
		}
	}
}

// rebalance moves the span if Rebalance says so, and returns when to
// check again if it held back (0: at the usual interval).
//
// Servers that see the same change would all move to the same gap, so
// they hold an election without a word: each works out, from the same
// records, which server's move helps the swarm most (ties: the lowest
// peer ID), and only that one moves; the others look again a little later
// and see its new record. A server that still wants the same move on that
// second look moves anyway, so a winner that is gone or sees otherwise
// does not stall the swarm.
func (s *Serving) rebalance() time.Duration {
	recs := s.dir.Known(s.cfg.Model)
	if s.cfg.Span == (Span{}) {
		if wait, acted := s.rebalanceSpan(recs); acted {
			return wait
		}
	}
	if s.autoExperts() {
		s.rebalanceExperts(recs)
	}
	return 0
}

// rebalanceExperts picks the experts again where some expert of the
// span has no holder but this node could take it: it swaps experts only
// when one of the span's experts is held by no other server and this
// node does not hold it, and drops only experts that others hold too,
// so that a swap never opens a gap of its own.
func (s *Serving) rebalanceExperts(recs []ServerRecord) {
	s.mu.Lock()
	cur, set := s.span, s.experts
	s.mu.Unlock()
	n := s.cfg.ModelExperts
	others := ExpertCoverage(recs, cur, n, s.h.ID())
	gap := false
	for e := range n {
		gap = gap || (others[e] == 0 && !set.Has(e))
	}
	if !gap {
		return
	}
	want := s.pickExperts(recs, cur)
	if want.String() == set.String() {
		return
	}
	for _, e := range set.List(n) {
		if !want.Has(e) && others[e] == 0 {
			return
		}
	}
	log.Info("picking experts again", "model", s.cfg.Model, "span", cur, "from", set, "to", want)
	if err := s.take(s.ctx, cur, want); err != nil && s.ctx.Err() == nil {
		log.Warn("pick experts", "model", s.cfg.Model, "to", want, "err", err)
		s.announce(s.ctx)
	}
}

// rebalanceSpan is rebalance's part about the layers: acted says it
// moved, or held back until wait has passed.
func (s *Serving) rebalanceSpan(recs []ServerRecord) (wait time.Duration, acted bool) {
	s.mu.Lock()
	cur, rate := s.span, s.rate
	s.mu.Unlock()
	next, move := Rebalance(NewCoverage(s.cfg.Layers, s.cfg.ModelExperts, recs, s.h.ID()), cur, rate, s.cfg.Margin)
	if !move {
		s.deferred = Span{}
		return 0, false
	}
	hold := 3*s.cfg.RebalanceDelay + time.Second
	if s.deferred != next || time.Since(s.deferredAt) < hold {
		if w := Mover(s.cfg.Layers, s.cfg.ModelExperts, recs, s.cfg.Margin); w != "" && w != s.h.ID() {
			log.Debug("another server moves first", "model", s.cfg.Model, "winner", w, "next", next)
			if s.deferred != next {
				s.deferred, s.deferredAt = next, time.Now()
			}
			return hold - time.Since(s.deferredAt) + time.Millisecond, true
		}
	}
	s.deferred = Span{}
	log.Info("moving span", "model", s.cfg.Model, "from", cur, "to", next)
	if err := s.take(s.ctx, next, s.pickExperts(recs, next)); err != nil && s.ctx.Err() == nil {
		log.Warn("move span", "model", s.cfg.Model, "to", next, "err", err)
		s.announce(s.ctx) // back to the current span
	}
	return 0, true
}

// Mover picks, among the servers of recs, the one whose move (by
// Rebalance) would leave the swarm best, ties going to the lowest peer
// ID; "" if none would move. layers and experts are the model's, as in
// NewCoverage.
func Mover(layers, experts int, recs []ServerRecord, margin float64) peer.ID {
	var best peer.ID
	var bestCov Coverage
	typical := TypicalRate(recs)
	for i := range recs {
		r := &recs[i]
		if r.State == StateLeaving {
			continue
		}
		rate := r.Throughput
		if rate <= 0 {
			rate = typical
		}
		others := NewCoverage(layers, experts, recs, r.Peer)
		next, move := Rebalance(others, r.Span, rate, margin)
		if !move {
			continue
		}
		cov := others.Add(next, rate)
		if bestCov == nil || better(cov, bestCov, 0) || (!better(bestCov, cov, 0) && r.Peer < best) {
			best, bestCov = r.Peer, cov
		}
	}
	return best
}

// Suspended reports whether Suspend stopped the service.
func (s *Serving) Suspended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.suspended
}

// Suspend stops serving for a while, keeping the span's weights: it
// withdraws the node's record (so that clients plan routes without it),
// drains the server (the clients of its open sessions re-route at their
// next step; Server.Drain) until every session is gone or grace has
// passed,
// then stops it. The loop neither announces nor moves until Resume.
// Suspending a suspended or closed service does nothing.
func (s *Serving) Suspend(ctx context.Context, grace time.Duration) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	if s.closed || s.suspended {
		s.mu.Unlock()
		return nil
	}
	s.suspended = true
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	err := s.dir.Withdraw(ctx, s.cfg.Model)
	if srv != nil {
		dctx, cancel := context.WithTimeout(ctx, grace)
		derr := srv.Drain(dctx)
		cancel()
		if derr != nil {
			log.Info("sessions left after the drain are reset", "model", s.cfg.Model, "err", derr)
		}
		srv.Close()
	}
	log.Info("serving suspended", "model", s.cfg.Model, "span", s.Span())
	if err != nil {
		return fmt.Errorf("swarm: suspend: withdraw: %w", err)
	}
	return nil
}

// Resume serves again what Suspend stopped: a new server over the same
// span and weights, announced at once (the loop moves it later if the
// swarm changed meanwhile). Resuming a service that is not suspended does
// nothing.
func (s *Serving) Resume(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	if s.closed || !s.suspended {
		s.mu.Unlock()
		return nil
	}
	span, set, w := s.span, s.experts, s.w
	s.mu.Unlock()
	srv, err := NewServer(s.h, w, s.cfg.Backend, s.serverConfig(span, set))
	if err != nil {
		return fmt.Errorf("swarm: resume: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.srv, s.suspended = srv, false
	s.mu.Unlock()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("swarm: resume: %w", err)
	}
	s.announce(ctx)
	log.Info("serving resumed", "model", s.cfg.Model, "span", span)
	return nil
}

// Close withdraws the node's record (telling the swarm at once, so that
// others can take over its layers), stops the server and frees the
// weights.
func (s *Serving) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.op.Lock() // a Suspend or Resume under way ends first
	defer s.op.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.dir.Withdraw(ctx, s.cfg.Model)
	s.mu.Lock()
	srv, release := s.srv, s.release
	s.srv, s.w, s.release = nil, nil, nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	if release != nil {
		err = errors.Join(err, release())
	}
	return err
}

// MeasureThroughput runs a few decode steps of span on be and returns the
// tokens per second of one session. Of the routed experts it runs those
// the weights hold (the others' rows would run elsewhere).
func MeasureThroughput(w *model.Weights, be kernels.Backend, span Span) (float64, error) {
	const warm, steps = 2, 8
	var opts []model.Option
	if w.Config.Experts > 0 && lacksExperts(w, span) {
		opts = append(opts, model.RemoteExperts(skipExperts{}))
	}
	e := model.NewEngine(w, be, opts...)
	c, err := e.NewCache(span.First, span.Last, warm+steps)
	if err != nil {
		return 0, err
	}
	x := make([]float32, w.Config.Dim)
	for i := range x {
		x[i] = float32(i%7-3) * 0.1
	}
	var start time.Time
	for i := range warm + steps {
		if i == warm {
			start = time.Now()
		}
		if err := e.Forward(c, x, 1); err != nil {
			return 0, err
		}
		for j := range x {
			x[j] = max(min(x[j], 10), -10)
		}
	}
	d := time.Since(start)
	return float64(steps) / max(d.Seconds(), 1e-9), nil
}

// skipExperts runs no expert: the measure of a span whose weights lack
// some experts counts the ones held.
type skipExperts struct{}

func (skipExperts) RunExperts(int, []float32, int, int, []int32, []float32, []float32) error {
	return nil
}
