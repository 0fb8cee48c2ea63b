package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
)

var log = logging.Logger("swarm")

// Span is a range of layers [First, Last).
type Span struct{ First, Last int }

func (s Span) String() string { return fmt.Sprintf("[%d,%d)", s.First, s.Last) }

// Len is the number of layers in the span.
func (s Span) Len() int { return s.Last - s.First }

// Contains reports whether o lies within s.
func (s Span) Contains(o Span) bool {
	return o.First >= s.First && o.Last <= s.Last && o.First < o.Last
}

// Defaults of ServerConfig.
const (
	DefaultMemoryBudget = 1 << 30
	DefaultMaxStep      = 512
	DefaultIdleTimeout  = 2 * time.Minute
	DefaultIOTimeout    = 30 * time.Second
	DefaultMaxBatch     = 32
	DefaultBatchWait    = 5 * time.Millisecond
	// DefaultCheckExperts: one request to holders of experts in twenty is
	// checked at a second holder, at the cost of a twentieth more work
	// for the holders.
	DefaultCheckExperts = 0.05
)

// ServerConfig configures a Server. Zero fields take the defaults above.
type ServerConfig struct {
	// Model names the model served; OPEN must name the same.
	Model string
	// Span is the layers served; the weights must hold them all.
	Span Span
	// MemoryBudget bounds the bytes of all sessions' KV caches and step
	// buffers together. A session that would exceed it is refused.
	MemoryBudget int64
	// PeerBudget bounds what the sessions of one peer may hold together
	// (0: half the MemoryBudget), so that one client cannot lock out the
	// others.
	PeerBudget int64
	// MaxPositions bounds one session's positions (0: the model's context).
	MaxPositions int
	// MaxStep bounds the positions of one STEP.
	MaxStep int
	// IdleTimeout frees a session that sends nothing for this long.
	IdleTimeout time.Duration
	// IOTimeout bounds the rest of a frame once its first byte came, and
	// every write.
	IOTimeout time.Duration
	// MaxBatch is the most single-position steps of different sessions run
	// as one batch; 1 turns batching off.
	MaxBatch int
	// BatchWait is how long the worker holds single-position steps for
	// the next steps of other decoding sessions to join their batch; it
	// waits up to four times as long for sessions whose round trips are
	// that long (negative: no waiting). Waiting draws sessions into one
	// group that moves through the pipeline together: the best use of
	// machines that share their cores, or that serve many more sessions
	// than the pipeline has stages. A pipeline of servers with cores of
	// their own and fewer sessions than stages may do better without it,
	// the sessions spread over the stages.
	BatchWait time.Duration
	// Counters, if set, are added to as the server works. Servers given
	// the same Counters add up: a node's over every span it serves, and
	// across the moves of a span.
	Counters *Counters
	// Experts are the routed experts of the span's layers of experts that
	// the server holds (nil: every one; the weights must hold the set).
	// The server answers EXPERTS for them, and runs the rows that chose
	// others on their holders, found among Holders' records.
	Experts model.ExpertSet
	// Holders returns the records of the model's servers at hand (a
	// Directory's Known): where a server of some experts finds the
	// holders of the others. Needed when Experts is not every expert.
	Holders func() []ServerRecord
	// ExpertDType is the type of the rows sent to holders of experts and
	// of their answers: F32 (the default), F16 or BF16.
	ExpertDType kernels.DType
	// CheckExperts is the share of the requests to holders of experts
	// that also go to a second holder of the same experts, to compare
	// the answers (0: DefaultCheckExperts; negative: none; 1: every one
	// where a second holder is at hand). A holder caught answering wrong
	// is banned by this server.
	CheckExperts float64
	// OnSessionEnd, if set, is called when a session that ran at least
	// one step ends (CLOSE, the end of the stream, an idle timeout, the
	// server's Close), with what it did: the receipt a server issues
	// (package credit). It runs on the session's goroutine and must not
	// block.
	OnSessionEnd func(SessionEnd)
}

// SessionEnd is what a session did, as its server counted it.
type SessionEnd struct {
	Peer    peer.ID // the client
	Session uint64
	Model   string
	Span    Span
	// Positions is the positions of every RESULT sent: each prompt and
	// generated token once, again for a step asked twice.
	Positions  int64
	Start, End time.Time
}

// Counters are running totals of the work of servers. They only grow,
// except Open.
type Counters struct {
	Steps     atomic.Int64 // steps run, as ServerStats.Steps (a batch counts each of its rows)
	Positions atomic.Int64 // positions run through the span: a prompt's step counts each of its tokens
	Passes    atomic.Int64 // forward passes run (a batch is one pass)
	Sessions  atomic.Int64 // sessions opened
	Open      atomic.Int64 // sessions open now
	Refused   atomic.Int64 // sessions refused for lack of memory
}

func (c *ServerConfig) validate(w *model.Weights) error {
	mc := &w.Config
	if c.Model == "" {
		return errors.New("swarm: server: no model id")
	}
	if c.Span.First < 0 || c.Span.Last > mc.Layers || c.Span.First >= c.Span.Last {
		return fmt.Errorf("swarm: server: span %s outside the model's %d layers", c.Span, mc.Layers)
	}
	if !w.HasLayers(c.Span.First, c.Span.Last) {
		return fmt.Errorf("swarm: server: the weights do not hold every layer of %s", c.Span)
	}
	if err := c.validateExperts(w); err != nil {
		return err
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = DefaultMemoryBudget
	}
	if c.PeerBudget <= 0 || c.PeerBudget > c.MemoryBudget {
		c.PeerBudget = c.MemoryBudget / 2
	}
	if c.MaxPositions <= 0 || c.MaxPositions > mc.Context {
		c.MaxPositions = mc.Context
	}
	if c.MaxStep <= 0 {
		c.MaxStep = DefaultMaxStep
	}
	c.MaxStep = min(c.MaxStep, c.MaxPositions)
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.CheckExperts == 0 {
		c.CheckExperts = DefaultCheckExperts
	}
	return nil
}

// validateExperts checks the expert set against the weights.
func (c *ServerConfig) validateExperts(w *model.Weights) error {
	mc := &w.Config
	if c.ExpertDType == 0 {
		c.ExpertDType = kernels.F32
	}
	if activationSize(c.ExpertDType) == 0 {
		return fmt.Errorf("swarm: server: experts' rows of %s: want f32, f16 or bf16", c.ExpertDType)
	}
	if c.Experts == nil {
		if mc.Experts > 0 && lacksExperts(w, c.Span) {
			return fmt.Errorf("swarm: server: the weights of %s lack some routed experts: name the ones they hold", c.Span)
		}
		return nil
	}
	if mc.Experts == 0 {
		return errors.New("swarm: server: an expert set for a model without routed experts")
	}
	if err := c.Experts.Check(mc.Experts); err != nil {
		return fmt.Errorf("swarm: server: %w", err)
	}
	if c.Experts.Count(mc.Experts) == 0 {
		return errors.New("swarm: server: an empty expert set")
	}
	for li := c.Span.First; li < c.Span.Last; li++ {
		x := w.Layers[li].Experts
		for e := range mc.Experts {
			if x != nil && c.Experts.Has(e) && !x.Holds(e) {
				return fmt.Errorf("swarm: server: the weights lack expert %d of layer %d, which the set %v names", e, li, c.Experts)
			}
		}
	}
	if !c.Experts.Covers(mc.Experts) && c.Holders == nil {
		return errors.New("swarm: server: some experts held elsewhere, but no Holders to find them")
	}
	return nil
}

// ServerStats is a snapshot of a server's state.
type ServerStats struct {
	Sessions      int   // streams being served (sessions open or opening)
	ReservedBytes int64 // of the memory budget
	Steps         int64 // steps run (a batch counts each of its rows)
	Passes        int64 // forward passes run (a batch is one pass)
	Batches       int64 // forward passes that ran more than one session's step
	Waits         int64 // passes that waited for other sessions' steps (BatchWait)
	WaitsExpired  int64 // of those, waits that ran out before every step came
	Refused       int64 // sessions refused for lack of memory
	// ExpertFailovers counts requests to holders of experts that failed
	// (their rows answered by other holders of the same experts), checks
	// at a second holder included.
	ExpertFailovers int64
	// ExpertChecks counts requests to holders of experts whose answers
	// were compared with a second holder's (CheckExperts); ExpertLiars
	// the holders banned for answering wrong.
	ExpertChecks, ExpertLiars int64
	// BatchRows counts passes by their rows: BatchRows[i] passes ran
	// between 2^(i-1)+1 and 2^i rows (1, 2, 3–4, 5–8, 9–16, …).
	BatchRows [BatchBuckets]int64
}

// BatchBuckets is the length of ServerStats.BatchRows.
const BatchBuckets = 8

// AvgBatch is the mean number of steps per forward pass.
func (st ServerStats) AvgBatch() float64 {
	if st.Passes == 0 {
		return 0
	}
	return float64(st.Steps) / float64(st.Passes)
}

// batchBucket is the index of ServerStats.BatchRows for a pass of n rows.
func batchBucket(n int) int {
	b := 0
	for m := 1; m < n && b < BatchBuckets-1; m <<= 1 {
		b++
	}
	return b
}

// Server serves a span of a model's layers over /mycel/infer/1. One
// worker goroutine runs every forward pass, so the engine is never used
// concurrently; single-position steps of different sessions that wait at
// the same time run as one batch.
type Server struct {
	h   host.Host
	e   *model.Engine
	cfg ServerConfig

	ctx    context.Context
	cancel context.CancelFunc
	jobs   chan *job
	left   chan struct{} // a session ended: wakes a waiting worker
	wg     sync.WaitGroup

	mu       sync.Mutex
	started  bool
	closed   bool
	draining bool
	drained  chan struct{} // closed once draining and no stream is left
	reserved int64
	perPeer  map[peer.ID]int64
	streams  map[network.Stream]struct{}
	nextID   uint64

	live map[*session]struct{} // open sessions; under mu
	// The worker's buffers for run.
	rows, group []*job
	caches      []*model.Cache
	x           []float32

	steps, passes, batches, refused atomic.Int64
	waits, waitsExpired             atomic.Int64
	batchRows                       [BatchBuckets]atomic.Int64

	serverExperts
}

// count records a forward pass of n rows.
// count records a pass of n steps over positions positions in all.
func (s *Server) count(n, positions int) {
	s.steps.Add(int64(n))
	s.passes.Add(1)
	if c := s.cfg.Counters; c != nil {
		c.Steps.Add(int64(n))
		c.Positions.Add(int64(positions))
		c.Passes.Add(1)
	}
	if n > 1 {
		s.batches.Add(1)
	}
	s.batchRows[batchBucket(n)].Add(1)
}

func (s *Server) countRefused() {
	s.refused.Add(1)
	if c := s.cfg.Counters; c != nil {
		c.Refused.Add(1)
	}
}

// NewServer returns a server for cfg.Span of w, computing on be. It starts
// nothing; call Start. The server owns neither w nor be.
func NewServer(h host.Host, w *model.Weights, be kernels.Backend, cfg ServerConfig) (*Server, error) {
	if err := cfg.validate(w); err != nil {
		return nil, err
	}
	s := &Server{
		h: h, cfg: cfg,
		jobs:    make(chan *job),
		left:    make(chan struct{}, 1),
		streams: map[network.Stream]struct{}{},
		live:    map[*session]struct{}{},
		perPeer: map[peer.ID]int64{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.e = model.NewEngine(w, be, s.initExperts(w, be)...)
	return s, nil
}

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() ServerConfig { return s.cfg }

// Start registers the protocol handler and starts the worker.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started {
		return errors.New("swarm: server already started")
	}
	s.started = true
	s.wg.Go(s.worker)
	s.h.SetStreamHandler(p2p.InferProtocol, s.handle)
	if s.xe != nil {
		s.h.SetStreamHandler(p2p.ExpertsProtocol, s.handleExperts)
	}
	log.Info("serving", "model", s.cfg.Model, "span", s.cfg.Span, "budget", s.cfg.MemoryBudget)
	return nil
}

// Close stops serving: it removes the handler, resets every session's
// stream and waits for every goroutine it started. Safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	for st := range s.streams {
		st.Reset()
	}
	s.mu.Unlock()
	if started {
		s.h.RemoveStreamHandler(p2p.InferProtocol)
		if s.xe != nil {
			s.h.RemoveStreamHandler(p2p.ExpertsProtocol)
		}
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Drain asks the clients of the server's sessions to go elsewhere, so
// that the server can stop without costing them more than a re-route: it
// answers every session's next STEP with ERROR (shutting down) and ends
// the stream, and refuses new sessions so, while the steps in hand run to
// their end and their results go out. A client takes an ERROR of that
// code as the server's leaving (ErrLeft): it re-routes the hop at once and
// replays it elsewhere. Drain returns once no session is left, or with
// ctx's error when ctx ends first; Close then resets what is left.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		s.drained = make(chan struct{})
		if len(s.streams) == 0 {
			close(s.drained)
		}
	}
	drained := s.drained
	s.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isDraining reports whether Drain was called.
func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Stats returns a snapshot of the server's sessions and work.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ServerStats{
		Sessions: len(s.streams), ReservedBytes: s.reserved,
		Steps: s.steps.Load(), Passes: s.passes.Load(), Batches: s.batches.Load(), Refused: s.refused.Load(),
		Waits: s.waits.Load(), WaitsExpired: s.waitsExpired.Load(), ExpertFailovers: s.expertFailovers.Load(),
		ExpertChecks: s.expertChecks.Load(), ExpertLiars: s.expertLiars.Load(),
	}
	for i := range st.BatchRows {
		st.BatchRows[i] = s.batchRows[i].Load()
	}
	return st
}

// session is the server's state for one stream. Only its handler
// goroutine touches it, except the cache, which the worker uses while the
// handler waits for the job.
type session struct {
	id    uint64
	span  Span
	dtype kernels.DType
	cache *model.Cache
	bytes int64 // reserved from the budget

	// The last step, kept so that a retry returns the same bytes.
	lastID     uint64
	lastStart  int
	lastN      int
	lastResult []byte // encoded activations

	x   []float32 // activations of the step in flight
	job job       // the step in flight, as handed to the worker

	// For the worker's guess of when the session sends its next step
	// (UnixNano): when it last handed the worker a single-position step,
	// when the worker finished its last step, and the smoothed time from
	// the one to the next (0: no guess yet).
	lastRow, doneAt, gap atomic.Int64

	opened    time.Time
	positions int64 // of every RESULT sent (the handler's only)
}

// job is one step handed to the worker; each session reuses its own.
type job struct {
	sess *session
	n    int
	// more: the session's next frame has already arrived (a replay, or
	// pipelined steps), so waiting for other sessions would only delay it.
	more bool
	done chan error // buffered: the worker never blocks on it
}

// sessionBytes is what a session reserves: keys and values of every layer
// for every position (in the engine's KV cache type), and the step buffers
// (input, output, activations).
func (s *Server) sessionBytes(span Span, maxPos int, dt kernels.DType) int64 {
	c := &s.e.Weights().Config
	kv := model.CacheBytes(c, s.e.KVType(), span.Len(), maxPos)
	step := int64(s.cfg.MaxStep) * int64(c.Dim) * (4 + 2*int64(activationSize(dt)))
	return kv + step
}

// track counts a stream a handler serves, so that Close waits for it
// and a drain ends when the last one does; it resets the stream and
// returns false once the server is closed.
func (s *Server) track(st network.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		st.Reset()
		return false
	}
	s.wg.Add(1)
	s.streams[st] = struct{}{}
	return true
}

// untrack ends what track began, running release (if not nil) under the
// server's lock, and ends a drain that waited for this last stream.
func (s *Server) untrack(st network.Stream, release func()) {
	s.mu.Lock()
	delete(s.streams, st)
	if release != nil {
		release()
	}
	if s.draining && len(s.streams) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
	s.mu.Unlock()
	s.wg.Done()
}

// handle serves one stream: OPEN, then STEPs until CLOSE, an idle
// timeout, a framing error or the server's Close.
func (s *Server) handle(st network.Stream) {
	if !s.track(st) {
		return
	}
	c := newConn(st)
	peerID := st.Conn().RemotePeer()
	var sess *session
	defer s.untrack(st, func() {
		if sess != nil {
			s.release(peerID, sess.bytes)
		}
	})

	sess, err := s.open(c, peerID)
	if err != nil {
		log.Debug("session not opened", "peer", peerID, "err", err)
		return
	}
	log.Debug("session open", "peer", peerID, "session", sess.id, "span", sess.span, "positions", sess.cache.Cap)
	if c := s.cfg.Counters; c != nil {
		c.Sessions.Add(1)
		c.Open.Add(1)
		defer c.Open.Add(-1)
	}
	s.mu.Lock()
	s.live[sess] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.live, sess)
		s.mu.Unlock()
		// A worker waiting for this session's next step need not.
		select {
		case s.left <- struct{}{}:
		default:
		}
	}()
	if err := s.serve(c, sess); err != nil {
		log.Debug("session ended", "peer", peerID, "session", sess.id, "err", err)
	}
	if f := s.cfg.OnSessionEnd; f != nil && sess.positions > 0 {
		f(SessionEnd{Peer: peerID, Session: sess.id, Model: s.cfg.Model, Span: sess.span,
			Positions: sess.positions, Start: sess.opened, End: time.Now()})
	}
}

// refuse sends an ERROR and ends the stream gracefully.
func (s *Server) refuse(c *conn, code ErrorCode, step uint64, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	err := c.send(&Error{Code: code, Step: step, Message: msg}, s.cfg.IOTimeout)
	c.finish()
	return errors.Join(&RemoteError{Code: code, Step: step, Message: msg}, err)
}

// reply sends an ERROR and keeps the session.
func (s *Server) reply(c *conn, code ErrorCode, step uint64, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	if err := c.send(&Error{Code: code, Step: step, Message: msg}, s.cfg.IOTimeout); err != nil {
		c.reset()
		return err
	}
	return nil
}

// release returns n reserved bytes of p to the budget; s.mu is held.
func (s *Server) release(p peer.ID, n int64) {
	s.reserved -= n
	if s.perPeer[p] -= n; s.perPeer[p] <= 0 {
		delete(s.perPeer, p)
	}
}

func (s *Server) open(c *conn, p peer.ID) (*session, error) {
	m, err := c.recv(MaxControlFrame, s.cfg.IOTimeout, s.cfg.IOTimeout)
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			return nil, s.refuse(c, CodeBadMessage, 0, "%v", err)
		}
		c.reset()
		return nil, err
	}
	o, ok := m.(*Open)
	if !ok {
		return nil, s.refuse(c, CodeBadMessage, 0, "expected OPEN, got %s", m.Type())
	}
	mc := &s.e.Weights().Config
	span := Span{o.First, o.Last}
	switch {
	case o.Model != s.cfg.Model:
		return nil, s.refuse(c, CodeUnknownModel, 0, "model %q not served here (serving %q)", o.Model, s.cfg.Model)
	case !s.cfg.Span.Contains(span):
		return nil, s.refuse(c, CodeBadSpan, 0, "span %s not within the layers served, %s", span, s.cfg.Span)
	case o.MaxPositions < 1 || o.MaxPositions > s.cfg.MaxPositions:
		return nil, s.refuse(c, CodeBadMessage, 0, "max positions %d outside 1..%d", o.MaxPositions, s.cfg.MaxPositions)
	}
	need := s.sessionBytes(span, o.MaxPositions, o.DType)
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		return nil, s.refuse(c, CodeShutdown, 0, "server closing: try another")
	}
	free := s.cfg.MemoryBudget - s.reserved
	if need > free {
		s.mu.Unlock()
		s.countRefused()
		return nil, s.refuse(c, CodeBusy, 0, "out of memory: a session of %d positions over %s needs %d bytes, %d of %d free",
			o.MaxPositions, span, need, free, s.cfg.MemoryBudget)
	}
	if held := s.perPeer[p]; held+need > s.cfg.PeerBudget {
		s.mu.Unlock()
		s.countRefused()
		return nil, s.refuse(c, CodeBusy, 0, "out of memory for this peer: a session of %d positions over %s needs %d bytes, the peer holds %d of its %d",
			o.MaxPositions, span, need, held, s.cfg.PeerBudget)
	}
	s.reserved += need
	s.perPeer[p] += need
	s.nextID++
	sess := &session{id: s.nextID, span: span, dtype: o.DType, bytes: need, opened: time.Now()}
	sess.job = job{sess: sess, done: make(chan error, 1)}
	s.mu.Unlock()

	// From here on the handler's deferred release returns sess.bytes.
	cache, err := s.e.NewCache(span.First, span.Last, o.MaxPositions)
	if err != nil {
		s.mu.Lock()
		s.release(p, need)
		s.mu.Unlock()
		return nil, s.refuse(c, CodeInternal, 0, "%v", err)
	}
	sess.cache = cache
	ok2 := &OK{Session: sess.id, First: span.First, Last: span.Last, MaxPositions: o.MaxPositions,
		Dim: mc.Dim, MaxStep: s.cfg.MaxStep, IdleMillis: int(s.cfg.IdleTimeout / time.Millisecond)}
	if err := c.send(ok2, s.cfg.IOTimeout); err != nil {
		c.reset()
		s.mu.Lock()
		s.release(p, need)
		s.mu.Unlock()
		return nil, err
	}
	return sess, nil
}

func (s *Server) serve(c *conn, sess *session) error {
	dim := s.e.Weights().Config.Dim
	maxFrame := max(MaxControlFrame, tensorFrameMax(s.cfg.MaxStep, dim, sess.dtype))
	for {
		m, err := c.recv(maxFrame, s.cfg.IdleTimeout, s.cfg.IOTimeout)
		if err != nil {
			if errors.Is(err, ErrUnknownType) {
				// The frame was read whole: say so and go on.
				if err := s.reply(c, CodeBadMessage, 0, "%v", err); err != nil {
					return err
				}
				continue
			}
			if errors.Is(err, ErrProtocol) {
				return s.refuse(c, CodeBadMessage, 0, "%v", err)
			}
			c.reset()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch m := m.(type) {
		case *Step:
			if s.isDraining() {
				return s.refuse(c, CodeShutdown, m.ID, "server pausing: take this session elsewhere")
			}
			if err := s.step(c, sess, m); err != nil {
				return err
			}
		case *Close:
			c.finish()
			return nil
		default:
			if err := s.reply(c, CodeBadMessage, 0, "unexpected %s in an open session", m.Type()); err != nil {
				return err
			}
		}
	}
}

// step checks a STEP, runs it (or replays the last result) and answers.
// An error return ends the session.
func (s *Server) step(c *conn, sess *session, m *Step) error {
	dim := s.e.Weights().Config.Dim
	cache := sess.cache
	t := &m.Tensor
	switch {
	case m.ID == 0:
		return s.reply(c, CodeBadStep, m.ID, "step id 0 is reserved")
	case m.N < 1 || m.N > s.cfg.MaxStep:
		return s.reply(c, CodeBadStep, m.ID, "%d positions outside 1..%d", m.N, s.cfg.MaxStep)
	case t.DType != sess.dtype:
		return s.reply(c, CodeBadStep, m.ID, "tensor of %s in a session of %s", t.DType, sess.dtype)
	case len(t.Shape) != 2 || t.Shape[0] != m.N || t.Shape[1] != dim:
		return s.reply(c, CodeBadStep, m.ID, "tensor of shape %v, want [%d %d]", t.Shape, m.N, dim)
	case m.Start+m.N > cache.Cap:
		return s.reply(c, CodeContextFull, m.ID, "positions %d..%d past the session's %d", m.Start, m.Start+m.N-1, cache.Cap)
	case m.ID == sess.lastID && (m.Start != sess.lastStart || m.N != sess.lastN):
		return s.reply(c, CodeBadStep, m.ID, "step %d repeated with positions %d+%d, first sent with %d+%d",
			m.ID, m.Start, m.N, sess.lastStart, sess.lastN)
	case m.ID == sess.lastID && cache.Len == m.Start+m.N:
		// A retry of the last step: the cache already holds its
		// positions, so answer with the same bytes.
		return s.sendResult(c, sess, m.ID, m.N)
	case m.Start > cache.Len:
		return s.reply(c, CodeBadStep, m.ID, "step starts at position %d, the session holds %d", m.Start, cache.Len)
	}
	// Positions from Start on are recomputed: drop them first, so the
	// cache never holds a position twice.
	cache.Truncate(m.Start)
	sess.lastID = 0 // the kept result is stale from here on
	if cap(sess.x) < m.N*dim {
		sess.x = make([]float32, s.cfg.MaxStep*dim)
	}
	sess.x = sess.x[:m.N*dim]
	kernels.Decode(sess.x, t.DType, t.Data)

	if m.N == 1 {
		now := time.Now().UnixNano()
		if done := sess.doneAt.Load(); done > 0 && now > done {
			g, old := now-done, sess.gap.Load()
			if old > 0 {
				g = old + (g-old)/4
			}
			sess.gap.Store(g)
		}
		sess.lastRow.Store(now)
	}
	j := &sess.job
	j.n, j.more = m.N, c.Buffered() > 0
	select {
	case s.jobs <- j:
	case <-s.ctx.Done():
		return s.refuse(c, CodeShutdown, m.ID, "server closing")
	}
	if err := <-j.done; err != nil {
		cache.Truncate(m.Start)
		return s.reply(c, CodeInternal, m.ID, "forward pass: %v", err)
	}
	sess.lastID, sess.lastStart, sess.lastN = m.ID, m.Start, m.N
	sess.lastResult = kernels.Encode(sess.lastResult[:0], sess.dtype, sess.x)
	return s.sendResult(c, sess, m.ID, m.N)
}

func (s *Server) sendResult(c *conn, sess *session, id uint64, n int) error {
	dim := s.e.Weights().Config.Dim
	r := &Result{ID: id, Tensor: Tensor{DType: sess.dtype, Shape: []int{n, dim}, Data: sess.lastResult}}
	if err := c.send(r, s.cfg.IOTimeout); err != nil {
		c.reset()
		return err
	}
	sess.positions += int64(n)
	return nil
}

// worker runs the jobs one pass at a time until the server closes. Every
// job it takes gets an answer.
func (s *Server) worker() {
	var batch []*job
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	for {
		select {
		case j := <-s.jobs:
			batch = append(batch[:0], j)
		case <-s.ctx.Done():
			return
		}
		// Steps that arrive while the worker is busy wait in the channel;
		// take all of them now.
	drain:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case j := <-s.jobs:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		if s.cfg.BatchWait > 0 && s.cfg.MaxBatch > 1 {
			batch = s.gather(batch, wait)
		}
		s.compute(func() { s.run(batch) })
		clear(batch)
	}
}

// gather waits for the next single-position steps of the other sessions
// on their way back, as long as expected says, so that they join batch.
// It waits for nothing when a step in batch is not a single position or
// its session has more input waiting already (a replay, where waiting
// only delays it), and returns as soon as every session it waits for is
// in.
func (s *Server) gather(batch []*job, wait *time.Timer) []*job {
	urgent := func(j *job) bool { return j.n != 1 || j.more }
	if slices.ContainsFunc(batch, urgent) || len(batch) >= s.cfg.MaxBatch {
		return batch
	}
	n, d := s.expected(time.Now())
	want := min(len(batch)+n, s.cfg.MaxBatch)
	if len(batch) >= want {
		return batch
	}
	s.waits.Add(1)
	wait.Reset(d)
	defer wait.Stop()
	for len(batch) < want {
		select {
		case j := <-s.jobs:
			batch = append(batch, j)
			if urgent(j) {
				return batch
			}
		case <-s.left:
			n, _ := s.expected(time.Now())
			want = min(len(batch)+n, s.cfg.MaxBatch)
		case <-wait.C:
			s.waitsExpired.Add(1)
			return batch
		case <-s.ctx.Done():
			return batch
		}
	}
	return batch
}

// activeFor is how recently a session must have sent a single-position
// step to be waited for, in multiples of BatchWait: one that sent nothing
// for longer is thinking (a person reading), or gone.
const activeFor = 50

// maxWaits bounds a wait for a batch, in multiples of BatchWait.
const maxWaits = 4

// expected counts the sessions on their way back to this server: those
// decoding (a single-position step lately) whose next step is not here
// yet and that left this server at least half their usual round trip
// ago (their gap: from the end of a step here to the next one's arrival).
// A session that left more recently is ahead in the pipeline, not behind:
// waiting for it would wait for most of a round, and it may be waiting
// for this very batch at the next server. Skipping it lets the group
// behind go on and meet the one ahead where that one waits for it.
// It also returns how long to wait for them: BatchWait, or until a
// quarter of a gap after the latest is due where that is later (a loaded
// machine stretches every gap), up to maxWaits·BatchWait.
func (s *Server) expected(now time.Time) (n int, wait time.Duration) {
	t := now.UnixNano()
	since := now.Add(-activeFor * s.cfg.BatchWait).UnixNano()
	w, most := int64(s.cfg.BatchWait), int64(maxWaits*s.cfg.BatchWait)
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.live {
		last, done, gap := sess.lastRow.Load(), sess.doneAt.Load(), sess.gap.Load()
		if last < since || last >= done {
			continue // not decoding, or its step is here already
		}
		if t-done >= gap/2 {
			n++
			w = max(w, min(done+gap+gap/4-t, most))
		}
	}
	return n, time.Duration(w)
}

// finish hands a job's outcome back to its handler; the worker must not
// touch the job afterwards.
func finish(j *job, err error) {
	j.sess.doneAt.Store(time.Now().UnixNano())
	j.done <- err
}

// run executes a batch: single-position steps over the same span go
// through the layers together, everything else alone. Its buffers are the
// worker's, reused from pass to pass.
func (s *Server) run(batch []*job) {
	dim := s.e.Weights().Config.Dim
	rows := s.rows[:0]
	for _, j := range batch {
		if j.n != 1 || s.cfg.MaxBatch == 1 {
			err := s.e.Forward(j.sess.cache, j.sess.x, j.n)
			s.count(1, j.n) // before the answer, so Stats never lags it
			finish(j, err)
			continue
		}
		rows = append(rows, j)
	}
	for len(rows) > 0 {
		// Take the rows with the first row's span; keep the others, in
		// order, for the next pass.
		span := rows[0].sess.span
		group, rest := s.group[:0], rows[:0]
		for _, j := range rows {
			if j.sess.span == span {
				group = append(group, j)
			} else {
				rest = append(rest, j)
			}
		}
		rows = rest
		if len(group) == 1 {
			j := group[0]
			err := s.e.Forward(j.sess.cache, j.sess.x, 1)
			s.count(1, 1)
			finish(j, err)
			continue
		}
		caches := s.caches[:0]
		if cap(s.x) < len(group)*dim {
			s.x = make([]float32, s.cfg.MaxBatch*dim)
		}
		x := s.x[:len(group)*dim]
		for i, j := range group {
			caches = append(caches, j.sess.cache)
			copy(x[i*dim:], j.sess.x)
		}
		err := s.e.ForwardRows(caches, x)
		s.count(len(group), len(group))
		for i, j := range group {
			copy(j.sess.x, x[i*dim:(i+1)*dim])
			finish(j, err)
		}
		clear(caches)
		s.caches, s.group = caches, group
		clear(group)
	}
	clear(rows[:cap(rows)])
	s.rows = rows
}
