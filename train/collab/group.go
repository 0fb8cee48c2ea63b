package collab

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
)

// Mode is how a group averages what its members learn.
type Mode string

const (
	// Sync averages the gradients of every step: the group trains as one
	// machine with the whole batch would.
	Sync Mode = "sync"
	// DiLoCo averages the change of the parameters after InnerSteps
	// local AdamW steps and applies it with an outer Nesterov step.
	DiLoCo Mode = "diloco"
)

// Defaults of Config.
const (
	DefaultInnerSteps    = 100
	DefaultOuterLR       = train.DefaultOuterLR
	DefaultOuterMomentum = train.DefaultOuterMomentum
	DefaultSettle        = time.Second
	DefaultExpectWait    = 5 * time.Second
	DefaultRoundTimeout  = time.Minute
	DefaultJoinWait      = 2 * time.Minute
	DefaultVerify        = 0.05
)

// verifyTolerance bounds how far a recomputed contribution may be from
// the one received, relative to its norm: machines with other kernels or
// thread counts round differently, work done on other data or parameters
// is far off.
const verifyTolerance = 1e-3

// Config configures a member of a group. Zero fields take the defaults.
type Config struct {
	// Job is the job's ID, the topic of its member records (required).
	Job string
	// Mode is Sync (the default) or DiLoCo.
	Mode Mode
	// InnerSteps (H), OuterLR and OuterMomentum set DiLoCo's rounds;
	// OuterLR 0 takes the defaults of both (with Overlap, the lower
	// momentum train.DefaultOverlapMomentum).
	InnerSteps             int
	OuterLR, OuterMomentum float64
	// Encoding is what travels in DiLoCo's averaging (allreduce.Int8 or
	// Q4 with error feedback: what quantisation drops is added to the
	// next round's change). Sync sends float32.
	Encoding allreduce.Encoding
	// Overlap (DiLoCo) averages each round's change during the next
	// round's inner steps and applies it at that round's end: the outer
	// step runs one round late, and the averaging's time hides behind
	// compute. The last round averages its own change as well, so that
	// the job ends with every round's work applied.
	Overlap bool
	// Aggregate is how contributions are averaged (allreduce.Mean, with
	// its norm check, by default).
	Aggregate allreduce.Aggregator
	// MinPeers is the fewest members a round starts with (1).
	MinPeers int
	// Settle is how long the set of members ready for a round must stay
	// the same before a round with members not expected starts (the
	// first round, or after a rejoin).
	Settle time.Duration
	// ExpectWait bounds the wait for the members of the last round, who
	// are expected in the next: one that does not show is left out.
	ExpectWait time.Duration
	// RoundTimeout bounds an averaging.
	RoundTimeout time.Duration
	// Heartbeat is how often the member record is announced again.
	Heartbeat time.Duration
	// CheckpointEvery makes a checkpoint at the start of every
	// CheckpointEvery-th round (0: only when a peer asks to join).
	CheckpointEvery int
	// JoinWait bounds how long the members wait at a round for a peer
	// that asked to join there, and how long a joiner waits for the
	// checkpoint it asked for.
	JoinWait time.Duration
	// Verify is the share of contributions that are checked by
	// recomputing them, and a contribution found different is refused
	// (its sender left out of the job). Sync: every round, each member
	// recomputes the work of the member before it in the round's order
	// with this probability. DiLoCo: after each round, each member whose
	// work is in the average is checked with this probability by another,
	// which replays its round from the inner state it committed to in the
	// next round instead of training its own share (verifyPlan: at most
	// half the members are checked a round). 0: DefaultVerify; below 0:
	// none.
	Verify float64
	// Inner is where DiLoCo members keep the inner state they start each
	// round with, for a verifier to fetch in the round after; nil: the
	// group's States.
	Inner States
	// Log receives the group's events; nil: slog's default.
	Log *slog.Logger
}

func (c *Config) fill() error {
	if c.Job == "" {
		return errors.New("collab: no job ID")
	}
	if c.Mode == "" {
		c.Mode = Sync
	}
	if c.Mode != Sync && c.Mode != DiLoCo {
		return fmt.Errorf("collab: averaging %q: want %q or %q", c.Mode, Sync, DiLoCo)
	}
	if c.InnerSteps <= 0 {
		c.InnerSteps = DefaultInnerSteps
	}
	if c.OuterLR == 0 {
		c.OuterLR, c.OuterMomentum = DefaultOuterLR, DefaultOuterMomentum
		if c.Overlap {
			c.OuterMomentum = train.DefaultOverlapMomentum
		}
	}
	if c.OuterLR < 0 || c.OuterMomentum < 0 || c.OuterMomentum >= 1 {
		return fmt.Errorf("collab: outer lr %v, momentum %v", c.OuterLR, c.OuterMomentum)
	}
	if c.MinPeers <= 0 {
		c.MinPeers = 1
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.Settle, DefaultSettle}, {&c.ExpectWait, DefaultExpectWait}, {&c.RoundTimeout, DefaultRoundTimeout},
		{&c.Heartbeat, DefaultHeartbeat}, {&c.JoinWait, DefaultJoinWait}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if c.Verify == 0 {
		c.Verify = DefaultVerify
	}
	if c.Verify > 1 || c.Verify != c.Verify {
		return fmt.Errorf("collab: verify %v: want a share of at most 1", c.Verify)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.Log = c.Log.With("sys", "train", "job", c.Job)
	return nil
}

// Report is what one round did, as one member saw it.
type Report struct {
	// Round is the round's number, from 0; Step the optimizer steps done
	// after it.
	Round, Step int
	// Members took part; Dropped were left out of the average (they sent
	// nothing in time, or what they sent was refused: Rejected says why).
	Members, Dropped []peer.ID
	Rejected         map[peer.ID]string
	// Loss is the mean loss over the tokens the round trained, all
	// members together; Tokens those tokens, Own this member's.
	Loss        float64
	Tokens, Own int
	// Shares is each member's share of the round in examples (the
	// sequences it trained), in member order, 0 for a member dropped:
	// the same on every member that finished the round, what they sign
	// as its summary (package credit).
	Shares []int
	// State is the hash of the parameters after the round.
	State [32]byte
	// Sent and Received count the averaging's bytes.
	Sent, Received int64
	// Redo counts the sequences the dropped members had to train (and,
	// in DiLoCo, the verifiers', who replayed another's instead), handed
	// back to the data cursor for the next rounds.
	Redo int
	// Verified are the members whose contributions to the round before
	// this member recomputed in this round (DiLoCo) and found as they
	// sent them.
	Verified []peer.ID
	// Compute is the time in forward, backward and optimizer; Wall the
	// whole round's, waiting for the others included.
	Compute, Wall time.Duration
}

// Group is this peer's part in training a job with others: it agrees
// with them on each round's members through the job's member records,
// trains its share, averages over the all-reduce service, checks that
// all hold the same parameters, and catches up from a checkpoint when it
// is behind.
type Group struct {
	cfg    Config
	self   peer.ID
	dir    *Directory
	ar     *allreduce.Service
	t      *train.Trainer
	states States

	outer    *train.Outer // DiLoCo
	residual []float32    // DiLoCo's error feedback
	startAt  innerStart   // DiLoCo: the member's own state at the round's start
	vec      []float32

	round     int
	roundNow  atomic.Int64 // round, for readers outside Run
	attempt   int
	state     [32]byte
	expected  []peer.ID // the last round's members, less those dropped
	excluded  map[peer.ID]uint64
	ckpt      cid.Cid
	ckptAt    int
	joined    bool       // caught up from a checkpoint, and no round since
	past      *pastRound // DiLoCo: the last averaging, checked in this round
	pending   *work      // DiLoCo with Overlap: the last round's work, averaged in this one
	spare     []float32  // DiLoCo: a contribution's buffer to reuse
	ownStart  []float32  // DiLoCo with Overlap: where this member's round starts
	innerSize int        // DiLoCo, checked: the size of the last inner state written

	pubMu sync.Mutex // one publish at a time
	mu    sync.Mutex
	rec   Member       // the record the heartbeat announces
	loss  [][2]float64 // the loss curve so far, thinned
	rate  float64      // tokens per second, smoothed

	// banned are the peers whose contributions the group refused: left
	// out for the rest of the job.
	banned map[peer.ID]string
	// verdicts are the peers whose work this member recomputed and found
	// wrong (DiLoCo), and why: the averagings refuse what they send.
	verdicts map[peer.ID]string

	// beforeAverage, if set, is called with the vector about to be
	// averaged (tests).
	beforeAverage func(round int, vec []float32)
	// innerOffered, if set, gives the inner state a checked member
	// stores and announces in place of its own (tests).
	innerOffered func(round int, state []byte) []byte
}

// ErrRefused is returned by Run when the group refused this member's
// contribution (values not finite, or far outside the others'): the
// others leave it out for the rest of the job.
var ErrRefused = errors.New("collab: the group refused this member's contribution")

// errLastRefused: the checks of the job's last round found members wrong;
// the round is tried again without them.
var errLastRefused = errors.New("the checks of the job's last round found members wrong")

// errBehind: the others are at a later round, or hold other parameters
// that win; this member must take the state from a checkpoint.
var errBehind = errors.New("collab: behind the group")

// New makes t, a trainer of the job, a member of the group training it.
// t must stand where the group starts (a fresh trainer) or at a
// checkpoint of the group; a member that is behind catches up by itself.
func New(h host.Host, dir *Directory, ar *allreduce.Service, t *train.Trainer, states States, cfg Config) (*Group, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	g := &Group{cfg: cfg, self: h.ID(), dir: dir, ar: ar, t: t, states: states,
		excluded: map[peer.ID]uint64{}, banned: map[peer.ID]string{}, verdicts: map[peer.ID]string{}}
	if cfg.Mode == DiLoCo {
		if t.Step%cfg.InnerSteps != 0 {
			return nil, fmt.Errorf("collab: trainer at step %d, not at the end of an outer round of %d steps", t.Step, cfg.InnerSteps)
		}
		g.outer = train.NewOuter(t.Params, cfg.OuterLR, cfg.OuterMomentum)
	}
	g.setRound()
	return g, nil
}

// setRound derives the round from the trainer's step and hashes the
// parameters.
func (g *Group) setRound() {
	g.round = g.t.Step
	if g.cfg.Mode == DiLoCo {
		g.round = g.t.Step / g.cfg.InnerSteps
	}
	g.attempt = 0
	g.state = train.Hash(g.t.Params)
	g.roundNow.Store(int64(g.round))
}

// Step is the optimizer steps done; call it when Run is not running.
func (g *Group) Step() int { return g.t.Step }

// Round is the number of rounds done; it may be called while Run runs.
func (g *Group) Round() int { return int(g.roundNow.Load()) }

// State is the hash of the parameters at the start of the next round.
func (g *Group) State() [32]byte { return g.state }

// done says whether the job's steps are all taken.
func (g *Group) done() bool { return g.t.Step >= g.t.Job.Steps }

// Run trains until the job's steps are done or ctx ends, calling report
// after every round. A round that fails (a member vanished, the members
// disagreed) is tried again; a member that finds itself behind catches up
// from a checkpoint. Run withdraws this member's record when it returns
// with an error; after the job is done the record stays until it expires,
// or until Linger takes it over.
func (g *Group) Run(ctx context.Context, report func(Report)) (err error) {
	hbCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		if err != nil {
			g.withdraw()
		}
	}()
	g.publish(ctx)
	wg.Go(func() { g.heartbeat(hbCtx) })
	for !g.done() {
		rep, err := g.runRound(ctx)
		switch {
		case err == nil:
			g.joined = false
			g.record(rep)
			if report != nil {
				report(rep)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errBehind):
			g.cfg.Log.Info("behind the group; catching up from a checkpoint", "round", g.round)
			if err := g.catchUp(ctx); err != nil {
				return err
			}
		case retryable(err):
			g.cfg.Log.Info("round failed; trying again", "round", g.round, "attempt", g.attempt, "err", err)
			g.attempt++
		default:
			return err
		}
	}
	return nil
}

// record keeps what a round reports for the member record: the loss
// curve and the training rate.
func (g *Group) record(rep Report) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if rep.Tokens > 0 {
		g.loss = thin(append(g.loss, [2]float64{float64(rep.Step), rep.Loss}), MaxLossPoints)
	}
	if s := rep.Wall.Seconds(); s > 0 && rep.Own > 0 {
		r := float64(rep.Own) / s
		if g.rate == 0 {
			g.rate = r
		} else {
			g.rate += 0.3 * (r - g.rate)
		}
	}
}

// thin drops every other point but the last of pts until at most n are
// left.
func thin(pts [][2]float64, n int) [][2]float64 {
	for len(pts) > n {
		out := make([][2]float64, 0, len(pts)/2+1)
		for i := 0; i < len(pts)-1; i += 2 {
			out = append(out, pts[i])
		}
		pts = append(out, pts[len(pts)-1])
	}
	return pts
}

// Linger, once Run has returned (the job done, or Run's context ended:
// the job stopped), stores the state reached as a checkpoint and
// announces it, at the round it stands at, until ctx ends; then it
// withdraws the member's record. Peers that come late take the job's
// result from it, and so does whoever pulls the tuned model.
func (g *Group) Linger(ctx context.Context) (cid.Cid, error) {
	if g.ckptAt != g.round || !g.ckpt.Defined() {
		if err := g.checkpoint(ctx); err != nil {
			return cid.Undef, err
		}
	}
	c := g.ckpt
	g.ready(ctx)
	g.heartbeat(ctx)
	g.withdraw()
	return c, nil
}

// withdraw tells the job's topic that this member left.
func (g *Group) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.dir.withdraw(ctx, g.cfg.Job); err != nil {
		g.cfg.Log.Debug("withdraw", "err", err)
	}
}

// retryable says whether a round that failed with err may be run again.
func retryable(err error) bool {
	for _, e := range []error{errLastRefused, allreduce.ErrMismatch, allreduce.ErrIncomplete, allreduce.ErrLate, allreduce.ErrConflict, allreduce.ErrRoundActive, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// heartbeat announces the member record every Heartbeat.
func (g *Group) heartbeat(ctx context.Context) {
	tick := time.NewTicker(g.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.publish(ctx)
		}
	}
}

// update changes the member record and announces it at once.
func (g *Group) update(ctx context.Context, fn func(*Member)) {
	g.mu.Lock()
	fn(&g.rec)
	g.mu.Unlock()
	g.publish(ctx)
}

// publish announces the member record as it stands. Records are signed
// with rising sequence numbers, so that peers keep the latest: one
// publish at a time, so that a record taken earlier is not signed later.
func (g *Group) publish(ctx context.Context) {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	g.mu.Lock()
	rec := g.rec
	g.mu.Unlock()
	rec.Job = g.cfg.Job
	if err := g.dir.announce(ctx, &rec); err != nil && ctx.Err() == nil {
		g.cfg.Log.Warn("announce member record", "err", err)
	}
}

// ready sets the member record to "ready for the current round".
func (g *Group) ready(ctx context.Context) {
	g.update(ctx, func(m *Member) {
		m.Round, m.Attempt, m.State, m.Joining, m.Start = g.round, g.attempt, hex.EncodeToString(g.state[:]), 0, nil
		m.Loss, m.Rate = slices.Clone(g.loss), g.rate
		if g.ckpt.Defined() {
			m.Checkpoint, m.CheckpointRound = g.ckpt.String(), g.ckptAt
		}
	})
}

// runRound runs the current round: a checkpoint if one is due, the
// gathering of its members, then the mode's round.
func (g *Group) runRound(ctx context.Context) (Report, error) {
	start := time.Now()
	if e := g.cfg.CheckpointEvery; e > 0 && g.round > 0 && g.round%e == 0 && g.ckptAt != g.round {
		if err := g.checkpoint(ctx); err != nil {
			return Report{}, err
		}
	}
	members, err := g.gather(ctx)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	if g.cfg.Mode == DiLoCo {
		rep, err = g.dilocoRound(ctx, members)
	} else {
		rep, err = g.syncRound(ctx, members)
	}
	rep.Wall = time.Since(start)
	return rep, err
}

// view is what the member records say of the current round.
type view struct {
	ready   []peer.ID // at this round and attempt with this state, this member included, sorted
	attempt int       // the highest attempt of the members with this state
	joiners []peer.ID // peers that asked to join at this round
	// start is the set another member started this round and attempt
	// with (one that holds this member if there are several).
	start  []peer.ID
	behind bool
}

// look reads the job's member records.
func (g *Group) look() view {
	v := view{ready: []peer.ID{g.self}, attempt: g.attempt}
	own := hex.EncodeToString(g.state[:])
	ahead := 0
	same := map[string]int{own: 1} // members at this round, by state
	for _, m := range g.dir.Known(g.cfg.Job) {
		if m.Peer == g.self || m.Left || g.banned[m.Peer] != "" {
			continue
		}
		if seq, ok := g.excluded[m.Peer]; ok && m.Seq <= seq {
			continue
		}
		// A peer asking to join is served at whatever round the members
		// stand: waiting for the round it named could stall a group that
		// needs it to reach MinPeers.
		if m.Joining > 0 && m.State == "" {
			v.joiners = append(v.joiners, m.Peer)
		}
		switch {
		case m.State == "":
		case m.Round > g.round:
			ahead++
		case m.Round == g.round:
			same[m.State]++
			if m.State == own {
				if m.Attempt == g.attempt {
					v.ready = append(v.ready, m.Peer)
					if len(m.Start) > 0 && (v.start == nil || !slices.Contains(v.start, g.self) && slices.Contains(m.Start, g.self)) {
						v.start = m.Start
					}
				}
				v.attempt = max(v.attempt, m.Attempt)
			}
		}
	}
	// Peers further on than this member: it missed rounds. Peers at this
	// round with other parameters: the state held by more members wins,
	// ties going to the smaller hash; the losers catch up.
	v.behind = ahead > 0
	for s, n := range same {
		if s != own && (n > same[own] || n == same[own] && s < own) {
			v.behind = true
		}
	}
	slices.Sort(v.ready)
	return v
}

// gather waits until the round's members are known: every member of the
// last round that is still there, the peers that asked to join at this
// round (for at most JoinWait), at least MinPeers, and, when members
// arrive that were not expected, a set unchanged for Settle.
func (g *Group) gather(ctx context.Context) ([]peer.ID, error) {
	watch, stop, err := g.dir.Watch(g.cfg.Job)
	if err != nil {
		return nil, err
	}
	defer stop()
	g.ready(ctx)
	gs := &gathering{begin: time.Now(), joinSeen: map[peer.ID]time.Time{}}
	gs.since = gs.begin
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		v := g.look()
		if v.behind {
			return nil, errBehind
		}
		if v.attempt > g.attempt {
			g.attempt = v.attempt
			g.ready(ctx)
			continue
		}
		switch {
		case v.start != nil:
			// Another member has started the round: with it, or, if it
			// started without this member, not at all (the others move on
			// and this member catches up after them).
			if slices.Contains(v.start, g.self) {
				g.start(ctx, v.start)
				return v.start, nil
			}
		default:
			if len(v.joiners) > 0 && g.ckptAt != g.round {
				if err := g.checkpoint(ctx); err != nil {
					return nil, err
				}
				g.ready(ctx)
			}
			// A member that has just caught up lets the members that waited
			// for it start the round (they may be more than the ones it took
			// the checkpoint from), unless they do not within ExpectWait.
			if g.joined && time.Since(gs.begin) < g.cfg.ExpectWait {
				break
			}
			if set := g.decide(gs, v, time.Now()); set != nil {
				g.start(ctx, set)
				return set, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-watch:
		case <-tick.C:
		}
	}
}

// gathering is what gather keeps between looks.
type gathering struct {
	begin    time.Time
	set      []peer.ID // the ready members, as last seen
	since    time.Time // since when set is unchanged
	joinSeen map[peer.ID]time.Time
}

// decide returns the members to start the round with, or nil while it
// must wait: for the last round's members (ExpectWait), for joiners
// (JoinWait), for MinPeers, and for Settle when members come that were
// not expected.
func (g *Group) decide(gs *gathering, v view, now time.Time) []peer.ID {
	if !slices.Equal(v.ready, gs.set) {
		gs.set, gs.since = v.ready, now
	}
	set := gs.set
	for _, p := range g.expected {
		if !slices.Contains(set, p) && now.Sub(gs.begin) < g.cfg.ExpectWait {
			return nil
		}
	}
	for _, p := range v.joiners {
		if _, ok := gs.joinSeen[p]; !ok {
			gs.joinSeen[p] = now
		}
		if !slices.Contains(set, p) && now.Sub(gs.joinSeen[p]) < g.cfg.JoinWait {
			return nil
		}
	}
	// A joiner this member waited for is expected once it is ready (its
	// record then no longer asks to join).
	expectedAll := len(g.expected) > 0
	for _, p := range set {
		_, joined := gs.joinSeen[p]
		if p != g.self && !slices.Contains(g.expected, p) && !joined {
			expectedAll = false
		}
	}
	if len(set) >= g.cfg.MinPeers && (expectedAll || now.Sub(gs.since) >= g.cfg.Settle) {
		return set
	}
	return nil
}

// start announces that this member starts the current round with
// members.
func (g *Group) start(ctx context.Context, members []peer.ID) {
	g.update(ctx, func(m *Member) { m.Start = slices.Clone(members) })
}

// WriteCheckpoint writes the member's state as a checkpoint file (with
// DiLoCo's outer optimizer, in that mode): between rounds, or after Run
// returned, it is the group's.
func (g *Group) WriteCheckpoint(w io.Writer) error {
	if g.outer != nil {
		g.outer.Pending = nil
		if p := g.pending; p != nil && p.round == g.round-1 {
			g.outer.Pending = &train.PendingRound{Batches: p.batches}
			for _, m := range p.members {
				g.outer.Pending.Members = append(g.outer.Pending.Members, m.String())
			}
		}
		return g.t.WriteOuterCheckpoint(w, g.outer)
	}
	return g.t.WriteCheckpoint(w)
}

// checkpoint stores the state at the start of the current round and
// announces it.
func (g *Group) checkpoint(ctx context.Context) error {
	var b bytes.Buffer
	if err := g.WriteCheckpoint(&b); err != nil {
		return fmt.Errorf("collab: checkpoint of round %d: %w", g.round, err)
	}
	c, err := g.states.Put(ctx, b.Bytes())
	if err != nil {
		return fmt.Errorf("collab: checkpoint of round %d: %w", g.round, err)
	}
	g.ckpt, g.ckptAt = c, g.round
	g.cfg.Log.Info("checkpoint", "round", g.round, "cid", c, "bytes", b.Len())
	return nil
}

// spec is the all-reduce round of the current round and attempt.
func (g *Group) spec(members []peer.ID, weight float64, enc allreduce.Encoding) allreduce.Round {
	return allreduce.Round{
		ID:        fmt.Sprintf("%s/%d/%d", g.cfg.Job, g.round, g.attempt),
		Members:   members,
		Weight:    weight,
		Deadline:  time.Now().Add(g.cfg.RoundTimeout),
		Encoding:  enc,
		Aggregate: g.cfg.Aggregate,
	}
}

// finish records what a round left: who is expected next, who is left
// out until it announces anew, who is banned, and the new state.
func (g *Group) finish(members []peer.ID, res allreduce.Result) {
	for p, why := range res.Rejected {
		switch {
		case p == g.self || why == allreduce.ReasonMismatch:
		case allreduce.Outlier(why):
			// Far from the others: left out of this round (its share is
			// trained again), not out of the job.
			g.cfg.Log.Info("contribution left out of the round", "peer", p, "round", g.round, "why", why)
		default:
			g.banned[p] = why
			g.cfg.Log.Warn("contribution refused; peer left out of the job", "peer", p, "round", g.round, "why", why)
		}
	}
	// A member left out of the round as an outlier is there and holds the
	// same parameters: it is expected in the next round like the others.
	gone := func(p peer.ID) bool {
		why, rejected := res.Rejected[p]
		return slices.Contains(res.Dropped, p) && !(rejected && allreduce.Outlier(why))
	}
	g.expected = g.expected[:0]
	for _, p := range members {
		if p != g.self && !gone(p) && g.banned[p] == "" {
			g.expected = append(g.expected, p)
		}
	}
	if gone(g.self) {
		// The others do not expect this member in the next round: it
		// waits to be taken in (their start, or a settled set) rather
		// than start a round of its own that includes itself.
		g.expected = g.expected[:0]
	}
	for _, p := range res.Dropped {
		if p == g.self || !gone(p) {
			continue
		}
		g.excluded[p] = 0
		for _, m := range g.dir.Known(g.cfg.Job) {
			if m.Peer == p {
				g.excluded[p] = m.Seq
			}
		}
	}
	g.setRound()
}

// refused is ErrRefused, with the group's reason, if res refused this
// member's contribution.
func (g *Group) refused(res allreduce.Result) error {
	if why, ok := res.Rejected[g.self]; ok && why != allreduce.ReasonMismatch && !allreduce.Outlier(why) {
		return fmt.Errorf("%w in round %d: %s", ErrRefused, g.round, why)
	}
	return nil
}

// weightOf is the weight of the contributions in the part holding value
// i of the vector.
func weightOf(res allreduce.Result, i int) float64 {
	for _, p := range res.Parts {
		if i >= p.Offset && i < p.Offset+p.Len {
			return p.Weight
		}
	}
	return 0
}

// syncRound: this member's share of the step's batch, the gradients
// averaged over the members (weighted by trained tokens), the loss with
// them, and the same AdamW update on every member.
func (g *Group) syncRound(ctx context.Context, members []peer.ID) (Report, error) {
	i, n := slices.Index(members, g.self), len(members)
	from := g.t.Cursor
	t0 := time.Now()
	batch := g.t.NextBatch()
	batchIDs := g.t.LastBatch()
	loss, tokens, err := g.t.Gradients(train.Share(batch, i, n))
	if err != nil {
		g.t.Seek(from)
		return Report{}, err
	}
	g.vec = append(train.Flatten(g.t.Params, train.Gradients, g.vec[:0]), float32(loss))
	spec := g.spec(members, float64(tokens), allreduce.F32)
	if n > 1 && g.cfg.Verify > 0 && rand.Float64() < g.cfg.Verify {
		// The member before this one: its share of the same batch on the
		// same parameters gives the same gradients.
		j := (i + n - 1) % n
		lossJ, _, err := g.t.Gradients(train.Share(batch, j, n))
		if err != nil {
			g.t.Seek(from)
			return Report{}, err
		}
		want := append(train.Flatten(g.t.Params, train.Gradients, nil), float32(lossJ))
		spec.Check = func(member, offset int, got []float32) string {
			if member != j {
				return ""
			}
			return compareWork(got, want[offset:offset+len(got)])
		}
	}
	compute := time.Since(t0)
	if g.beforeAverage != nil {
		g.beforeAverage(g.round, g.vec)
	}
	res, err := g.ar.AllReduce(ctx, spec, g.vec)
	if err != nil {
		g.t.Seek(from)
		return Report{}, fmt.Errorf("collab: round %d: %w", g.round, err)
	}
	last := len(g.vec) - 1
	total := weightOf(res, last)
	if total == 0 {
		return Report{}, fmt.Errorf("collab: round %d: the members' shares hold no trained token", g.round)
	}
	if err := train.Unflatten(g.t.Params, train.Gradients, g.vec[:last]); err != nil {
		return Report{}, err
	}
	t1 := time.Now()
	step, err := g.t.ApplyGradients(float64(g.vec[last]), int(total))
	if err != nil {
		return Report{}, err
	}
	compute += time.Since(t1)
	rep := Report{Round: g.round, Step: g.t.Step, Members: members, Dropped: res.Dropped, Rejected: res.Rejected,
		Loss: step.Loss, Tokens: int(total), Own: tokens, Sent: res.BytesSent, Received: res.BytesReceived, Compute: compute}
	rep.Shares = shares(members, res.Dropped, [][]int{batchIDs})
	rep.Redo = g.redo(members, res.Dropped, [][]int{batchIDs})
	g.finish(members, res)
	rep.State = g.state
	return rep, g.refused(res)
}

// redo hands the shares of the round's batches (as LastBatch gave them)
// that the dropped members trained, and that did not make it into the
// average, back to the data cursor: the next batches train them. Every
// member that finished the round sees the same dropped members and the
// same batches, so the cursors stay the same. It returns how many
// sequences go back.
func (g *Group) redo(members, dropped []peer.ID, batches [][]int) int {
	var back []int
	for _, d := range dropped {
		j := slices.Index(members, d)
		if j < 0 {
			continue
		}
		for _, b := range batches {
			from, to := train.ShareRange(len(b), j, len(members))
			back = append(back, b[from:to]...)
		}
	}
	g.t.Redo(back)
	return len(back)
}

// shares is each member's share of the round's batches (as LastBatch
// gave them) in sequences, 0 for the members dropped.
func shares(members, dropped []peer.ID, batches [][]int) []int {
	out := make([]int, len(members))
	for j, p := range members {
		if slices.Contains(dropped, p) {
			continue
		}
		for _, b := range batches {
			from, to := train.ShareRange(len(b), j, len(members))
			out[j] += to - from
		}
	}
	return out
}

// compareWork says why got, a contribution received, is not want, this
// member's recomputation of it ("" when it is, within verifyTolerance).
func compareWork(got, want []float32) string {
	d, w := sqDiff(0, 0, got, want)
	if math.Sqrt(d) <= verifyTolerance*math.Sqrt(w)+1e-6*math.Sqrt(float64(len(got))) {
		return ""
	}
	return fmt.Sprintf("recomputed: its contribution is %.3g (relative) from this member's recomputation of its share", math.Sqrt(d/max(w, 1e-300)))
}

// dilocoRound: InnerSteps local steps on this member's shares of the
// round's batches, then the change of the parameters averaged (weighted
// by trained tokens, quantised with error feedback) and applied by the
// outer optimizer on every member. With Overlap the averaging is of the
// last round's change and runs while this round trains; the last round
// averages its own change too. Every member commits to its inner state
// at the start and keeps the parts of the others' contributions it
// reduces; the plan drawn after the averaging (verifyPlan) says who
// checks whom. A member the last plan makes a verifier replays the member
// it checks (checkDue) instead of training, sends nothing for the round,
// and its shares go back to the data cursor; a member found wrong has its
// contributions refused from then on.
func (g *Group) dilocoRound(ctx context.Context, members []peer.ID) (Report, error) {
	i, n := slices.Index(members, g.self), len(members)
	w := &work{round: g.round, attempt: g.attempt, state: g.state, cursor: g.t.Cursor, step: g.t.Step,
		steps: min(g.cfg.InnerSteps, g.t.Job.Steps-g.t.Step), members: members}
	last := w.step+w.steps >= g.t.Job.Steps
	// A try that fails leaves the member as it began, so that the next
	// try (and the inner state it commits to) starts from the same place;
	// the work pending stays pending.
	g.startAt.take(g.t.Opt, g.residual)
	var offer *innerOffer // the inner state this member commits to
	rollback := func() {
		if offer != nil {
			_ = offer.wait()
		}
		_ = train.Unflatten(g.t.Params, train.Values, g.outer.Start)
		g.t.Seek(w.cursor)
		g.t.Step = w.step
		g.startAt.restore(g.t.Opt, g.residual)
	}
	verify := g.cfg.Verify > 0 && n > 1
	var avg *work // the work this round averages
	if g.cfg.Overlap {
		if p := g.pending; p != nil && p.round == g.round-1 {
			avg = p
		}
	}
	if verify {
		w.start = slices.Clone(g.outer.Start)
		if g.cfg.Overlap {
			w.v = slices.Clone(g.outer.V)
		} else if g.past != nil && g.past.round == g.round-1 {
			w.prevMembers, w.prevKept = g.past.members, g.past.kept
		}
	}
	// With Overlap, the change this member sent for the last round is
	// not in the parameters yet: the round trains from where the outer
	// step would take them if the average were that change (its own, the
	// freshest it has), so that the round's work does not repeat it.
	from := g.outer
	if avg != nil && avg.vec != nil {
		start, err := g.outer.Preview(g.t.Params, avg.vec[:train.VectorLen(g.t.Params)], g.ownStart[:0])
		if err != nil {
			rollback()
			return Report{}, err
		}
		g.ownStart = start
		from = &train.Outer{Start: start}
	}
	if verify {
		var err error
		if offer, err = g.offerInner(ctx); err != nil {
			rollback()
			return Report{}, err
		}
	}
	spec := g.spec(members, 0, g.cfg.Encoding)
	kept := &keptParts{}
	if verify {
		spec.Check = g.keeping(members, kept)
	}
	var bg *averaging
	if g.cfg.Overlap {
		// Members may all have nothing pending (the first round, or a
		// group started again from a checkpoint).
		spec.Empty = true
		bg = g.average(ctx, spec, avg)
	}
	// Compute is the inner steps, or the replay of the member this one
	// checks; committing to the inner state runs beside it.
	t0 := time.Now()
	checked := g.checkDue(ctx, members)
	if checked != "" {
		// The round's batches, as every member draws them; this member
		// trains none of them.
		for range w.steps {
			g.t.NextBatch()
			w.batches = append(w.batches, g.t.LastBatch())
		}
		g.t.Step = w.step + w.steps
	} else {
		tokens, lossSum, batches, err := g.innerSteps(i, n, w.steps)
		if err != nil {
			bg.stop()
			rollback()
			return Report{}, err
		}
		if g.cfg.Encoding != allreduce.F32 && g.residual == nil {
			g.residual = make([]float32, train.VectorLen(g.t.Params))
		}
		w.batches, w.tokens = batches, tokens
		w.vec, _, _ = g.contribution(g.spare[:0], from, g.residual, tokens, lossSum)
		g.spare = nil
	}
	compute := time.Since(t0)
	if verify {
		// Before this member sends the work: a state announced later, once
		// the averaging's result may be known, is not taken.
		if err := offer.wait(); err != nil {
			bg.stop()
			rollback()
			return Report{}, err
		}
		w.commits = g.commits(ctx, members)
	}
	// With the job's last round checked, its outer steps as they stood
	// before it, to undo them.
	var outerAt *train.Outer
	undo := func() {
		if outerAt != nil {
			copy(g.outer.Start, outerAt.Start)
			copy(g.outer.V, outerAt.V)
		}
		rollback()
	}
	fail := func(err error) (Report, error) {
		undo()
		return Report{}, fmt.Errorf("collab: round %d: %w", g.round, err)
	}
	var res allreduce.Result
	if g.cfg.Overlap {
		var err error
		if res, err = bg.wait(); err != nil {
			return fail(err)
		}
		if verify {
			w.prevMembers, w.prevKept = members, kept
		}
	} else {
		avg = w
		var err error
		if res, err = g.average(ctx, spec, avg).wait(); err != nil {
			return fail(err)
		}
	}
	// The averaged change, kept aside while the last round averages its
	// own; the outer steps follow once every averaging has succeeded.
	var closing []float32
	var resLast allreduce.Result
	keptLast := &keptParts{}
	if g.cfg.Overlap && last {
		closing = slices.Clone(g.vec)
		spec := g.spec(members, 0, g.cfg.Encoding)
		spec.ID += "/last"
		if verify {
			spec.Check = g.keeping(members, keptLast)
		}
		var err error
		if resLast, err = g.average(ctx, spec, w).wait(); err != nil {
			return fail(err)
		}
	}
	// The job's last round is checked before the job ends: the outer
	// steps it takes are undone if a member is found wrong.
	if last && verify {
		outerAt = &train.Outer{Start: slices.Clone(g.outer.Start), V: slices.Clone(g.outer.V)}
	}
	t1 := time.Now()
	rep := Report{Round: g.round, Members: members, Own: w.tokens}
	nv := train.VectorLen(g.t.Params)
	lossAt := layoutLen(nv) - allreduce.BlockSize
	steps := []struct {
		res allreduce.Result
		vec []float32
		w   *work
	}{{res, g.vec, avg}}
	if closing != nil {
		steps[0].vec = closing
		steps = append(steps, struct {
			res allreduce.Result
			vec []float32
			w   *work
		}{resLast, g.vec, w})
	}
	// Back to the round's start, then each averaged change in turn.
	if err := train.Unflatten(g.t.Params, train.Values, g.outer.Start); err != nil {
		return fail(err)
	}
	in := contributors(members, res)
	for _, st := range steps {
		weight, err := averaged(st.res)
		if err != nil {
			return fail(err)
		}
		if weight > 0 {
			if err := g.outer.Step(g.t.Params, st.vec[:nv]); err != nil {
				return fail(err)
			}
			rep.Loss, rep.Tokens = float64(st.vec[lossAt]), int(weightOf(st.res, lossAt))
		}
		rep.Sent += st.res.BytesSent
		rep.Received += st.res.BytesReceived
		rep.Dropped = append(rep.Dropped, st.res.Dropped...)
		for p, why := range st.res.Rejected {
			if rep.Rejected == nil {
				rep.Rejected = map[peer.ID]string{}
			}
			rep.Rejected[p] = why
		}
		// The shares of the members whose work is not in the average (the
		// dropped ones, the verifiers, those gone since) go back to the data
		// cursor, in member order, so that every member's cursor takes
		// them alike.
		if st.w != nil {
			inSt := contributors(members, st.res)
			sh := sharesIn(members, inSt, st.w)
			if rep.Shares == nil {
				rep.Shares = sh
			} else {
				for k := range sh {
					rep.Shares[k] += sh[k]
				}
			}
			var idle []peer.ID
			for _, p := range st.w.members {
				if k := slices.Index(members, p); k < 0 || !inSt(k) {
					idle = append(idle, p)
				}
			}
			rep.Redo += g.redo(st.w.members, idle, st.w.batches)
		}
	}
	if outerAt != nil {
		checks := []lastCheck{{w: w, members: members, kept: kept, in: in}}
		if g.cfg.Overlap {
			checks = []lastCheck{{w: w, members: members, kept: keptLast, in: contributors(members, resLast)},
				{w: avg, members: members, kept: kept, in: in}}
		}
		refused, err := g.closingCheck(ctx, checks, compute)
		if err != nil {
			return fail(err)
		}
		if why, ok := refused[g.self]; ok {
			undo()
			return Report{}, fmt.Errorf("%w in the job's last round %d: %s", ErrRefused, g.round, why)
		}
		if len(refused) > 0 {
			for p, why := range refused {
				g.banned[p] = why
				g.cfg.Log.Warn("contribution refused; peer left out of the job", "peer", p, "round", g.round, "why", why)
			}
			return fail(fmt.Errorf("%w: %d of them", errLastRefused, len(refused)))
		}
	}
	compute += time.Since(t1)
	rep.Compute = compute
	if rep.Shares == nil {
		rep.Shares = make([]int, n)
	}
	slices.Sort(rep.Dropped)
	rep.Dropped = slices.Compact(rep.Dropped)
	if checked != "" && g.verdict(checked) == "" {
		rep.Verified = append(rep.Verified, checked)
	}
	round, attempt := g.round, g.attempt
	g.finish(members, allreduce.Result{Dropped: rep.Dropped, Rejected: rep.Rejected})
	rep.Step, rep.State = g.t.Step, g.state
	// The buffer of the work averaged is free again.
	if avg != nil && avg.vec != nil {
		g.spare, avg.vec = avg.vec, nil
	}
	g.pending = nil
	if g.cfg.Overlap && !last {
		g.pending = w
	}
	g.past = nil
	if verify && avg != nil {
		// The checks of this averaging, drawn from its result.
		g.past = &pastRound{round: round, attempt: attempt, members: members, w: avg, kept: kept,
			plan: verifyPlan(g.cfg.Job, round, attempt, g.state, members, in, g.cfg.Verify)}
	}
	return rep, g.refused(allreduce.Result{Rejected: rep.Rejected})
}

// work is a member's training in a DiLoCo round: what it sends to the
// averaging, and where the round started, for the checks of it.
type work struct {
	round, attempt int
	state          [32]byte     // the parameters' hash at the round's start
	start          []float32    // and their values (kept when the group checks)
	v              []float32    // with Overlap: the outer momentum at the start (kept when the group checks)
	cursor         train.Cursor // the data cursor at the round's start
	step, steps    int          // the trainer's step at the start; the inner steps
	members        []peer.ID
	batches        [][]int // the round's batches, as LastBatch gave them
	// commits are the inner states the other members announced for the
	// round before this member sent (nil: it did not see them, having
	// joined after the round).
	commits map[peer.ID]cid.Cid
	// vec is this member's contribution and tokens its weight; nil: none
	// (it checked another member, or joined after the round).
	vec    []float32
	tokens int
	// prevMembers and prevKept are the averaging of the members' work of
	// the round before (with Overlap, the one during this round) and the
	// parts of their contributions this member kept there: each member's
	// residual (and, with Overlap, its start) follows from its own.
	prevMembers []peer.ID
	prevKept    *keptParts
}

// keeping is the Check of an averaging whose contributions this member
// may check later: it refuses those of the members found wrong and keeps
// the parts of the others' in kept.
func (g *Group) keeping(members []peer.ID, kept *keptParts) func(member, offset int, got []float32) string {
	return func(member, offset int, got []float32) string {
		if why := g.verdict(members[member]); why != "" {
			return why
		}
		kept.keep(member, offset, got)
		return ""
	}
}

// averaging is an all-reduce of the group's running in the background.
type averaging struct {
	done   chan struct{}
	cancel context.CancelFunc
	res    allreduce.Result
	err    error
}

// average starts averaging w's contribution (nothing, of weight 0, when w
// holds none) in g.vec, the averaging's buffer, over spec's members.
func (g *Group) average(ctx context.Context, spec allreduce.Round, w *work) *averaging {
	n := layoutLen(train.VectorLen(g.t.Params))
	g.vec = slices.Grow(g.vec[:0], n)[:n]
	if w != nil && w.vec != nil {
		copy(g.vec, w.vec)
		spec.Weight = float64(w.tokens)
	} else {
		clear(g.vec)
	}
	if g.beforeAverage != nil {
		g.beforeAverage(g.round, g.vec)
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &averaging{done: make(chan struct{}), cancel: cancel}
	vec := g.vec
	go func() {
		defer close(a.done)
		a.res, a.err = g.ar.AllReduce(ctx, spec, vec)
	}()
	return a
}

// wait waits for the averaging's end.
func (a *averaging) wait() (allreduce.Result, error) {
	<-a.done
	a.cancel()
	return a.res, a.err
}

// stop ends the averaging (nil: none) and waits for it.
func (a *averaging) stop() {
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// averaged is the weight of res's average: the same in every non-empty
// part, or 0 when no member contributed (an averaging that allows that).
// Parts of which some average work and some none fail the round.
func averaged(res allreduce.Result) (float64, error) {
	weight := -1.0
	for _, p := range res.Parts {
		if p.Len == 0 {
			continue
		}
		if weight >= 0 && (p.Weight == 0) != (weight == 0) {
			return 0, fmt.Errorf("%w: some parts average work and some none", allreduce.ErrIncomplete)
		}
		weight = p.Weight
	}
	return max(weight, 0), nil
}

// sharesIn is each of the averaging's members' share of w's batches in
// sequences, for those whose work is in the average (in), 0 for the
// others.
func sharesIn(members []peer.ID, in func(int) bool, w *work) []int {
	out := make([]int, len(members))
	for k, p := range members {
		j := slices.Index(w.members, p)
		if j < 0 || !in(k) {
			continue
		}
		for _, b := range w.batches {
			from, to := train.ShareRange(len(b), j, len(w.members))
			out[k] += to - from
		}
	}
	return out
}

// innerStart is what a DiLoCo round's inner steps change of a member's
// own state, beyond the group's parameters, cursor and step: the AdamW
// step and moments and the error-feedback residual, kept at the round's
// start so that a try that fails is undone. Its buffers are reused from
// round to round: it holds one copy of the moments and of the residual.
type innerStart struct {
	adamStep int
	moments  bool // the moments were made (the first step makes them)
	m, v     [][]float32
	residual []float32 // nil: none yet (zeros)
}

// take keeps o's step and moments and residual.
func (s *innerStart) take(o *train.AdamW, residual []float32) {
	s.adamStep, s.moments = o.Step, o.M != nil
	s.m, s.v = copyMoments(s.m, o.M), copyMoments(s.v, o.V)
	s.residual = nil
	if residual != nil {
		s.residual = append(s.residual[:0], residual...)
	}
}

// restore sets o and residual back to what take kept.
func (s *innerStart) restore(o *train.AdamW, residual []float32) {
	o.Step = s.adamStep
	if !s.moments {
		o.M, o.V = nil, nil
	} else {
		o.M, o.V = copyMoments(o.M, s.m), copyMoments(o.V, s.v)
	}
	if s.residual != nil {
		copy(residual, s.residual)
	} else {
		clear(residual)
	}
}

// copyMoments copies src into dst's buffers where they are large enough.
func copyMoments(dst, src [][]float32) [][]float32 {
	for len(dst) < len(src) {
		dst = append(dst, nil)
	}
	dst = dst[:len(src)]
	for i, m := range src {
		dst[i] = append(dst[i][:0], m...)
	}
	return dst
}

// innerSteps runs steps local AdamW steps on member i's shares of the
// next batches (of n members) and returns the tokens trained, the sum of
// their losses and the batches (as LastBatch gave them).
func (g *Group) innerSteps(i, n, steps int) (tokens int, lossSum float64, batches [][]int, err error) {
	for range steps {
		share := train.Share(g.t.NextBatch(), i, n)
		batches = append(batches, g.t.LastBatch())
		loss, tok, err := g.t.Gradients(share)
		if err != nil {
			return 0, 0, nil, err
		}
		if _, err := g.t.ApplyGradients(loss, tok); err != nil {
			return 0, 0, nil, err
		}
		tokens += tok
		lossSum += loss * float64(tok)
	}
	return tokens, lossSum, batches, nil
}

// layoutLen is the length of the vector a DiLoCo round averages for nv
// parameters: them padded to a block, then the loss's block.
func layoutLen(nv int) int {
	return (nv+allreduce.BlockSize-1)/allreduce.BlockSize*allreduce.BlockSize + allreduce.BlockSize
}

// contribution builds into dst what a member sends after its inner
// steps: the change of the parameters from o's start (rounded with error feedback
// through residual, which it updates, unless the averaging is float32),
// padded to a block, then the mean loss in a block of its own, so that
// quantisation keeps it whole. It returns the vector, the parameters'
// length and where the loss is.
func (g *Group) contribution(dst []float32, o *train.Outer, residual []float32, tokens int, lossSum float64) (vec []float32, nv, lossAt int) {
	vec = o.Delta(g.t.Params, dst[:0])
	nv = len(vec)
	if g.cfg.Encoding != allreduce.F32 {
		feedback(g.cfg.Encoding, vec, residual)
	}
	for len(vec)%allreduce.BlockSize != 0 {
		vec = append(vec, 0)
	}
	mean := 0.0
	if tokens > 0 {
		mean = lossSum / float64(tokens)
	}
	vec = append(vec, float32(mean))
	for len(vec)%allreduce.BlockSize != 0 {
		vec = append(vec, 0)
	}
	return vec, nv, len(vec) - allreduce.BlockSize
}

// feedback adds the carried residual to v, rounds v to what enc can
// carry (block by block, as the all-reduce quantises) and keeps what the
// rounding dropped as the next residual.
func feedback(enc allreduce.Encoding, v, residual []float32) {
	for j := range v {
		v[j] += residual[j]
	}
	q := make([]float32, len(v))
	if err := allreduce.Dequantize(enc, allreduce.Quantize(enc, v), q); err != nil {
		// v is finite and of a valid length: Dequantize of what Quantize
		// wrote cannot fail.
		panic(err)
	}
	for j := range v {
		residual[j] = v[j] - q[j]
		v[j] = q[j]
	}
}

// catchUp takes the group's state from a checkpoint: it asks to join,
// waits for the checkpoint the members make at the round they stand at,
// fetches it from all of them, checks it against the state they announce
// and takes it.
func (g *Group) catchUp(ctx context.Context) error {
	watch, stop, err := g.dir.Watch(g.cfg.Job)
	if err != nil {
		return err
	}
	defer stop()
	g.update(ctx, func(m *Member) { *m = Member{Joining: g.round + 1} })
	for {
		g.cfg.Log.Info("asking to join", "from round", g.round)
		deadline := time.After(g.cfg.JoinWait)
		ok, err := g.waitCheckpoint(ctx, watch, deadline)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
}

// waitCheckpoint waits for a checkpoint the members make for a joiner
// (at the start of the round they stand at) and takes it; false: it did
// not come
// in time.
func (g *Group) waitCheckpoint(ctx context.Context, watch <-chan struct{}, deadline <-chan time.Time) (bool, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var from []peer.ID
		var c, state string
		at := 0
		for _, m := range g.dir.Known(g.cfg.Job) {
			if m.Peer == g.self || m.State == "" || m.Left || g.banned[m.Peer] != "" {
				continue
			}
			// A checkpoint made at the start of the round its member
			// stands at, newer than this member's state.
			if m.Checkpoint != "" && m.Round == m.CheckpointRound && m.Round > g.round && m.Round >= at {
				if m.Round > at {
					at, c, state, from = m.Round, m.Checkpoint, m.State, nil
				}
				if m.Checkpoint == c && m.State == state {
					from = append(from, m.Peer)
				}
			}
		}
		if c != "" {
			err := g.take(ctx, c, state, from, at)
			if err == nil {
				return true, nil
			}
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			g.cfg.Log.Warn("checkpoint refused", "cid", c, "err", err)
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline:
			return false, nil
		case <-watch:
		case <-tick.C:
		}
	}
}

// take fetches checkpoint c of round target from the peers from, checks
// that it holds the parameters they announce, and makes it this member's
// state.
func (g *Group) take(ctx context.Context, c, state string, from []peer.ID, target int) error {
	id, err := cid.Decode(c)
	if err != nil {
		return err
	}
	t0 := time.Now()
	data, err := g.states.Get(ctx, id, from)
	if err != nil {
		return err
	}
	outer, err := g.t.RestoreOuter(data)
	if err != nil {
		return err
	}
	if (outer != nil) != (g.cfg.Mode == DiLoCo) {
		return fmt.Errorf("collab: checkpoint %s is not of a %s group", c, g.cfg.Mode)
	}
	var pending *work
	if outer != nil && outer.Pending != nil {
		// The round before the checkpoint's, still to be averaged: this
		// member has none of its work, but trains again the shares of
		// those whose work does not arrive, as the others do.
		pending = &work{batches: outer.Pending.Batches}
		for _, s := range outer.Pending.Members {
			p, err := peer.Decode(s)
			if err != nil {
				return fmt.Errorf("collab: checkpoint %s: a member of the round pending: %w", c, err)
			}
			pending.members = append(pending.members, p)
		}
	}
	if g.outer != nil {
		g.outer, g.residual = outer, nil
	}
	g.setRound()
	if pending != nil {
		pending.round = g.round - 1
	}
	if got := hex.EncodeToString(g.state[:]); got != state || g.round != target {
		return fmt.Errorf("collab: checkpoint %s holds round %d with state %s; the members announce round %d with %s", c, g.round, got[:12], target, state[:12])
	}
	g.ckpt, g.ckptAt, g.past, g.pending, g.joined = id, target, nil, pending, true
	g.expected = slices.DeleteFunc(slices.Clone(from), func(p peer.ID) bool { return p == g.self })
	clear(g.excluded)
	g.cfg.Log.Info("caught up", "round", target, "cid", c, "bytes", len(data), "took", time.Since(t0).Round(time.Millisecond))
	return nil
}
