package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
)

// Hop is one server of a route and the layers it runs for the session.
type Hop struct {
	Peer peer.ID
	Span Span
}

func (h Hop) String() string { return h.Span.String() + "@" + h.Peer.ShortString() }

// EventKind says what an Event reports.
type EventKind int

const (
	// EventRoute: a session with a hop of the initial route is open.
	EventRoute EventKind = iota
	// EventHopFailed: a hop failed (Err says how); a replacement is sought.
	// A server that left is not reported so: see EventLeft.
	EventHopFailed
	// EventReroute: a replacement hop took over a failed hop's layers,
	// after the inputs kept for them were replayed to it, or a hop's
	// shadow took its place (Replayed is then 0: it was already in step).
	EventReroute
	// EventBanned: the client banned Hop.Peer for ClientConfig.BanDuration
	// (Err says why); no session of the client uses it until the ban ends.
	EventBanned
	// EventMismatch: with ClientConfig.Verify, Hop's server and its shadow
	// (Other) returned different activations for the same step (Err, which
	// wraps ErrVerification, says by how much); a referee is sought.
	EventMismatch
	// EventUnverified: with ClientConfig.Verify, no shadow could be found
	// for Hop (Err says why): its results are used unchecked until a
	// failover or a verdict gives it one.
	EventUnverified
	// EventShadow: with ClientConfig.Verify, a shadow session with Hop's
	// server runs the same steps as the hop's primary, Other.
	EventShadow
	// EventLeft: the server Replaced left (Err, which wraps ErrLeft, says
	// how: its stream or connection closed or reset, it could not be
	// reached, or it no longer serves the span). That is no fault of its
	// own: it is not banned, only avoided for ClientConfig.LeftAvoid.
	// Hop.Span is the layers it ran; Chain the servers that took them
	// over, in order, after Replayed positions were replayed to them, and
	// Hop.Peer that server when there is one. For a shadow that left
	// (of the primary Other) Chain is empty: EventShadow reports its
	// successor.
	EventLeft
)

func (k EventKind) String() string {
	switch k {
	case EventRoute:
		return "route"
	case EventHopFailed:
		return "hop failed"
	case EventReroute:
		return "re-route"
	case EventBanned:
		return "banned"
	case EventMismatch:
		return "mismatch"
	case EventUnverified:
		return "unverified"
	case EventShadow:
		return "shadow"
	case EventLeft:
		return "left"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is a change in a session's route.
type Event struct {
	Kind EventKind
	Hop  Hop
	// Replaced is the failed peer an EventReroute's hop took over from,
	// or the server that left (EventLeft).
	Replaced peer.ID
	// Other is the second server of an EventMismatch (Hop is the first,
	// the primary), or the primary an EventShadow's hop follows or an
	// EventLeft's shadow followed.
	Other peer.ID
	// Replayed is the number of positions replayed to the new hop.
	Replayed int
	// Chain is the servers that took over an EventLeft's layers.
	Chain []Hop
	// Err is why the hop failed (EventHopFailed), why the peer is banned
	// (EventBanned), how two results differ (EventMismatch), why there is
	// no shadow (EventUnverified) or how the server left (EventLeft).
	Err error
}

func (e Event) String() string {
	switch e.Kind {
	case EventHopFailed:
		return fmt.Sprintf("%s %s: %v", e.Kind, e.Hop, e.Err)
	case EventReroute:
		return fmt.Sprintf("%s %s (replaces %s, %d positions replayed)", e.Kind, e.Hop, e.Replaced.ShortString(), e.Replayed)
	case EventBanned:
		return fmt.Sprintf("%s %s: %v", e.Kind, e.Hop.Peer, e.Err)
	case EventMismatch:
		return fmt.Sprintf("%s %s vs %s: %v", e.Kind, e.Hop, e.Other.ShortString(), e.Err)
	case EventUnverified:
		return fmt.Sprintf("%s %s: %v", e.Kind, e.Hop, e.Err)
	case EventShadow:
		return fmt.Sprintf("%s %s (follows %s, %d positions replayed)", e.Kind, e.Hop, e.Other.ShortString(), e.Replayed)
	case EventLeft:
		if len(e.Chain) == 0 {
			return fmt.Sprintf("%s %s (shadow of %s at %s): %v", e.Kind, e.Replaced.ShortString(), e.Other.ShortString(), e.Hop.Span, e.Err)
		}
		return fmt.Sprintf("%s %s: %v takes over %s (%d positions replayed): %v", e.Kind, e.Replaced.ShortString(), e.Chain, e.Hop.Span, e.Replayed, e.Err)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Hop)
}

// Defaults of ClientConfig.
const (
	DefaultStepTimeout = 30 * time.Second
	DefaultOpenTimeout = 10 * time.Second
	DefaultMaxReroutes = 8
	DefaultBanDuration = 10 * time.Minute
	DefaultBusyBan     = 30 * time.Second
	DefaultLeftAvoid   = time.Minute
)

// ErrBanned is wrapped by the error of a hop whose peer the client bans.
var ErrBanned = errors.New("peer banned")

// ClientConfig configures a Client. Zero durations take the defaults.
type ClientConfig struct {
	// Model is the model id sent in OPEN.
	Model string
	// DType is the activations' type on the wire: F32, F16 or BF16.
	DType kernels.DType
	// StepTimeout bounds one step's round trip through one hop, and each
	// result of a replay.
	StepTimeout time.Duration
	// OpenTimeout bounds opening a stream and a session.
	OpenTimeout time.Duration
	// Alternatives are spare servers: when a hop fails, those with exactly
	// its span are tried in order.
	Alternatives []Hop
	// Replan, if set, is asked for a chain of hops covering a failed hop's
	// span once the alternatives are spent, and, with Verify, for a single
	// server of exactly a hop's span to shadow it or referee it. exclude
	// lists the peers not to offer: those that failed in this session,
	// those the client bans or avoids (Client.Excluded) and, for a shadow
	// or referee, the servers already running that span.
	Replan func(ctx context.Context, span Span, exclude []peer.ID) ([]Hop, error)
	// OnEvent, if set, is called with every route change, on the
	// goroutine that runs the session.
	OnEvent func(Event)
	// MaxReroutes bounds the servers a session adds after Open (failover
	// replacements, shadows and referees) over its life.
	MaxReroutes int
	// BanDuration is how long a peer that failed a hop or was caught
	// returning wrong activations stays banned.
	BanDuration time.Duration
	// BusyBan is how long a server that refused a session as busy (its
	// memory budget spent: no fault of its own) is left alone.
	BusyBan time.Duration
	// LeftAvoid is how long a server that left (EventLeft) is passed over
	// by the client's sessions: it may come back, and is not banned.
	LeftAvoid time.Duration
	// HeadWait bounds how long a session that reaches the output head
	// waits for the client's other sessions in a step, so that one pass
	// over the head's weights serves them all (0: DefaultHeadWait;
	// negative: never wait, every session computes its own).
	HeadWait time.Duration
	// Verify runs every step of every hop on a second server of the same
	// span, the hop's shadow, and compares the two results; see
	// VerifyTolerance and the package documentation.
	Verify bool
	// OnResult, if set, is called with every RESULT a server sent that
	// the session took: what the server's receipt for the session is
	// checked against (package credit). It runs on the session's
	// goroutine and must not block.
	OnResult func(ResultFrom)
	// VerifyTolerance is how far two results may differ and still agree:
	// row by row, max|a-b| <= VerifyTolerance × max(max|a|, max|b|, 1).
	// Zero means DefaultVerifyTolerance.
	VerifyTolerance float32
}

// ResultFrom is one RESULT a session took from a server.
type ResultFrom struct {
	Peer      peer.ID
	Session   uint64 // the server's session id (its OK)
	Model     string
	Span      Span
	Positions int
}

// Client runs generation through a pipeline of servers. It holds the
// embedding, final norm and output head and computes those itself.
type Client struct {
	h   host.Host
	cfg ClientConfig

	mu     sync.Mutex // guards e, hx, hl: one embedding or head pass at a time
	e      *model.Engine
	hx, hl []float32 // a batched head pass's rows and logits

	// The sessions reaching the output head together share one pass
	// (head.go).
	hmu                   sync.Mutex
	hq                    []*headReq
	leading               bool
	inStep                int
	headKick              chan struct{}
	headBatches, headRows atomic.Int64

	banMu sync.Mutex
	bans  map[peer.ID]ban
}

// ban is why and until when a peer is banned, or avoided because it
// left.
type ban struct {
	until  time.Time
	reason error
	left   bool
}

// NewClient returns a client that embeds tokens and computes logits with
// w (which needs only Embedding, FinalNorm and Output) on be.
func NewClient(h host.Host, w *model.Weights, be kernels.Backend, cfg ClientConfig) (*Client, error) {
	if w.Embedding == nil || w.Output == nil || w.FinalNorm == nil {
		return nil, errors.New("swarm: client: the weights lack the embedding or the output head")
	}
	if activationSize(cfg.DType) == 0 {
		return nil, fmt.Errorf("swarm: client: %s cannot travel as activations (f32, f16 or bf16)", cfg.DType)
	}
	if cfg.Model == "" {
		return nil, errors.New("swarm: client: no model id")
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = DefaultStepTimeout
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	if cfg.MaxReroutes <= 0 {
		cfg.MaxReroutes = DefaultMaxReroutes
	}
	if cfg.BanDuration <= 0 {
		cfg.BanDuration = DefaultBanDuration
	}
	if cfg.BusyBan <= 0 {
		cfg.BusyBan = DefaultBusyBan
	}
	if cfg.LeftAvoid <= 0 {
		cfg.LeftAvoid = DefaultLeftAvoid
	}
	if cfg.HeadWait == 0 {
		cfg.HeadWait = DefaultHeadWait
	}
	if cfg.VerifyTolerance < 0 || cfg.VerifyTolerance != cfg.VerifyTolerance {
		return nil, fmt.Errorf("swarm: client: verify tolerance %g", cfg.VerifyTolerance)
	}
	if cfg.VerifyTolerance == 0 {
		cfg.VerifyTolerance = DefaultVerifyTolerance
	}
	return &Client{h: h, cfg: cfg, e: model.NewEngine(w, be), bans: map[peer.ID]ban{}, headKick: make(chan struct{}, 1)}, nil
}

// Ban keeps every session of the client away from p for d (zero or less:
// ClientConfig.BanDuration): it is neither opened nor offered as a
// replacement, shadow or referee, and ClientConfig.Replan gets it in its
// exclude list. A longer ban already in force is kept. Sessions already
// using p go on using it.
func (cl *Client) Ban(p peer.ID, d time.Duration, reason error) {
	if d <= 0 {
		d = cl.cfg.BanDuration
	}
	cl.keepAway(p, ban{until: time.Now().Add(d), reason: reason})
	log.Debug("peer banned", "peer", p, "for", d, "reason", reason)
}

// avoid keeps every session of the client away from p, a server that
// left (reason says how), for ClientConfig.LeftAvoid: as a ban does, but
// p is not listed by Banned.
func (cl *Client) avoid(p peer.ID, reason error) {
	cl.keepAway(p, ban{until: time.Now().Add(cl.cfg.LeftAvoid), reason: reason, left: true})
	log.Debug("server left: avoided", "peer", p, "for", cl.cfg.LeftAvoid, "reason", reason)
}

// keepAway records b for p, unless a ban that lasts longer is in force
// (a ban replaces any avoidance; an avoidance never shortens a ban).
func (cl *Client) keepAway(p peer.ID, b ban) {
	cl.banMu.Lock()
	defer cl.banMu.Unlock()
	if old, ok := cl.bans[p]; ok && time.Now().Before(old.until) {
		switch {
		case b.left && !old.left: // a ban in force stays a ban
			return
		case b.left == old.left && old.until.After(b.until): // and is not shortened
			return
		}
	}
	cl.bans[p] = b
}

// Banned returns the peers banned now, in order, and forgets expired bans.
// Servers that left and are only avoided are not among them.
func (cl *Client) Banned() []peer.ID { return cl.kept(false) }

// Excluded returns every peer the client's sessions keep away from now,
// in order: those banned and the servers that left within
// ClientConfig.LeftAvoid.
func (cl *Client) Excluded() []peer.ID { return cl.kept(true) }

// kept lists the peers banned now and, with avoided, those avoided, in
// order, and forgets what expired.
func (cl *Client) kept(avoided bool) []peer.ID {
	now := time.Now()
	cl.banMu.Lock()
	defer cl.banMu.Unlock()
	var out []peer.ID
	for p, b := range cl.bans {
		if !now.Before(b.until) {
			delete(cl.bans, p)
			continue
		}
		if avoided || !b.left {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// banReason returns why p is banned, or nil if it is not (an expired ban
// is forgotten).
func (cl *Client) banReason(p peer.ID) error {
	cl.banMu.Lock()
	defer cl.banMu.Unlock()
	b, ok := cl.bans[p]
	if !ok {
		return nil
	}
	if !time.Now().Before(b.until) {
		delete(cl.bans, p)
		return nil
	}
	switch {
	case b.left:
		return fmt.Errorf("%w: %w", errAvoided, b.reason)
	case b.reason == nil:
		return ErrBanned
	}
	return fmt.Errorf("%w: %w", ErrBanned, b.reason)
}

// errAvoided is wrapped, with how it left, by the error of a hop whose
// server the client avoids because it left.
var errAvoided = errors.New("avoided since it left")

func (cl *Client) isBanned(p peer.ID) bool { return cl.banReason(p) != nil }

func (cl *Client) emit(ev Event) {
	if cl.cfg.OnEvent != nil {
		cl.cfg.OnEvent(ev)
	}
}

// emit reports a change of the session's route to the client's and the
// session's listeners.
func (s *Session) emit(ev Event) {
	s.cl.emit(ev)
	if s.onEvent != nil {
		s.onEvent(ev)
	}
}

// checkChain reports whether hops cover span exactly, in order.
func checkChain(hops []Hop, span Span) error {
	if len(hops) == 0 {
		return fmt.Errorf("swarm: empty route for %s", span)
	}
	at := span.First
	for i, h := range hops {
		if h.Span.First != at || h.Span.Last <= h.Span.First {
			return fmt.Errorf("swarm: route hop %d %s does not continue at layer %d", i, h, at)
		}
		at = h.Span.Last
	}
	if at != span.Last {
		return fmt.Errorf("swarm: route ends at layer %d, not %d", at, span.Last)
	}
	return nil
}

// record is a step's input as sent to a hop, kept for replay.
type record struct {
	id       uint64
	start, n int
	data     []byte // activations in the wire dtype
}

// hopState is a live session with one server. A hop's primary keeps the
// inputs sent to the hop; the primary and its shadow each keep their own
// outputs for them.
type hopState struct {
	hop    Hop
	c      *conn
	ok     OK
	hist   []record  // inputs, in order (the primary's only)
	outs   [][]byte  // this server's output for each record of hist (without Verify, the last only)
	shadow *hopState // the second server running the same steps (Verify)
}

// Session is one sequence being generated through a route. It is used by
// one goroutine at a time.
type Session struct {
	cl      *Client
	onEvent func(Event) // this session's own listener, if any
	hr      headReq     // the session's request for the output head
	maxPos  int
	dim     int

	hops     []*hopState
	pos      int
	nextStep uint64
	failed   map[peer.ID]bool
	reroutes int
	opened   bool  // Open is done: new servers count against MaxReroutes
	err      error // set once the session is unusable

	mu    sync.Mutex // guards conns against an aborting context
	conns map[*conn]struct{}

	x   []float32
	cmp [2][]float32 // rows being compared (verify)
}

// Open opens a session with every hop of route, which must cover all the
// model's layers in order, for up to maxPositions positions. A hop whose
// server cannot be opened, or which the client bans, is replaced as a
// failed hop would be. With ClientConfig.Verify every hop then gets a
// shadow where one can be found.
func (cl *Client) Open(ctx context.Context, route []Hop, maxPositions int) (*Session, error) {
	return cl.OpenWithEvents(ctx, route, maxPositions, nil)
}

// OpenWithEvents is Open, with the session's own events (those of no
// other session) also passed to onEvent, on the goroutine that runs the
// session, after ClientConfig.OnEvent.
func (cl *Client) OpenWithEvents(ctx context.Context, route []Hop, maxPositions int, onEvent func(Event)) (*Session, error) {
	mc := &cl.e.Weights().Config
	if err := checkChain(route, Span{0, mc.Layers}); err != nil {
		return nil, err
	}
	if maxPositions < 1 || maxPositions > mc.Context {
		return nil, fmt.Errorf("swarm: %d positions outside 1..%d", maxPositions, mc.Context)
	}
	s := &Session{cl: cl, onEvent: onEvent, maxPos: maxPositions, dim: mc.Dim, nextStep: 1,
		failed: map[peer.ID]bool{}, conns: map[*conn]struct{}{}}
	for _, h := range route {
		s.hops = append(s.hops, &hopState{hop: h})
	}
	// A hop that cannot be opened is replaced as a failed one would be,
	// with nothing to replay.
	for k := 0; k < len(s.hops); k++ {
		h := s.hops[k].hop
		err := cl.banReason(h.Peer)
		if err != nil {
			err = fmt.Errorf("swarm: hop %s at %s: %w", h.Span, h.Peer, err)
		} else {
			var hs *hopState
			if hs, err = s.openHop(ctx, h); err == nil {
				s.hops[k] = hs
				s.emit(Event{Kind: EventRoute, Hop: hs.hop})
				continue
			}
		}
		if k, err = s.failover(ctx, k, err); err != nil {
			s.Close()
			return nil, err
		}
	}
	if cl.cfg.Verify {
		for k := range s.hops {
			if err := s.findShadow(ctx, k); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	s.opened = true
	return s, nil
}

// Route returns the hops the session uses now.
func (s *Session) Route() []Hop {
	r := make([]Hop, len(s.hops))
	for i, h := range s.hops {
		r[i] = h.hop
	}
	return r
}

// Shadows returns, for each hop of Route, the server that verifies it
// (ClientConfig.Verify), or a zero Hop where there is none.
func (s *Session) Shadows() []Hop {
	r := make([]Hop, len(s.hops))
	for i, h := range s.hops {
		if h.shadow != nil {
			r[i] = h.shadow.hop
		}
	}
	return r
}

// Pos is the number of positions the session holds.
func (s *Session) Pos() int { return s.pos }

// MaxStep is the most positions one Step may carry on the current route.
func (s *Session) MaxStep() int {
	m := s.maxPos
	for _, h := range s.hops {
		m = min(m, h.ok.MaxStep)
		if h.shadow != nil {
			m = min(m, h.shadow.ok.MaxStep)
		}
	}
	return m
}

func (s *Session) track(c *conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Session) drop(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.reset()
}

// abort resets every stream, unblocking whatever waits on them.
func (s *Session) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.reset()
	}
}

// closeHop ends hs's session gracefully (CLOSE, then the end of the
// stream).
func (s *Session) closeHop(hs *hopState) {
	if hs.c == nil {
		return
	}
	hs.c.send(&Close{}, time.Second)
	hs.c.finish()
	s.mu.Lock()
	delete(s.conns, hs.c)
	s.mu.Unlock()
	hs.c = nil
}

// errUnfit marks a server that cannot take a hop's place for a reason
// that is no fault of its own (its step limit is below the steps to
// replay): the session passes it over without banning it.
var errUnfit = errors.New("server unfit for the replay")

// fault records that h failed, lied or left: the session does not use
// it again, and the client bans it (EventBanned) unless it is banned or
// avoided already, is merely unfit for the replay, or the failure is the
// context's. A server that left (ErrLeft) is not banned: the client only
// avoids it for a while.
func (s *Session) fault(ctx context.Context, h Hop, err error) {
	s.failed[h.Peer] = true
	if ctx.Err() != nil || errors.Is(err, ErrBanned) || errors.Is(err, errAvoided) || errors.Is(err, errUnfit) {
		return
	}
	if errors.Is(err, ErrLeft) {
		s.cl.avoid(h.Peer, err)
		return
	}
	d := time.Duration(0) // the client's BanDuration
	if errors.Is(err, ErrBusy) {
		// An honest server that is full: try it again soon.
		d = min(s.cl.cfg.BusyBan, s.cl.cfg.BanDuration)
	}
	s.cl.Ban(h.Peer, d, err)
	s.emit(Event{Kind: EventBanned, Hop: h, Err: err})
}

// hopFailed reports that h failed with err (EventHopFailed), unless its
// server left: EventLeft reports that, with its replacement.
func (s *Session) hopFailed(h Hop, err error) {
	if !errors.Is(err, ErrLeft) {
		s.emit(Event{Kind: EventHopFailed, Hop: h, Err: err})
	}
}

// replaced reports that hops took over the layers of old, which failed
// with cause, after replayed positions were replayed to them: one
// EventLeft if old's server left, else an EventReroute for each hop.
func (s *Session) replaced(old Hop, hops []Hop, replayed int, cause error) {
	if errors.Is(cause, ErrLeft) {
		ev := Event{Kind: EventLeft, Hop: Hop{Span: old.Span}, Replaced: old.Peer, Chain: hops, Replayed: replayed, Err: cause}
		if len(hops) == 1 {
			ev.Hop.Peer = hops[0].Peer
		}
		s.emit(ev)
		return
	}
	for _, h := range hops {
		s.emit(Event{Kind: EventReroute, Hop: h, Replaced: old.Peer, Replayed: replayed})
	}
}

// excluded reports whether p may not serve this session.
func (s *Session) excluded(p peer.ID) bool { return s.failed[p] || s.cl.isBanned(p) }

// exclusions lists the peers failed in this session, those the client
// bans or avoids and extra, sorted and without repeats.
func (s *Session) exclusions(extra ...peer.ID) []peer.ID {
	ex := s.cl.Excluded()
	for p := range s.failed {
		ex = append(ex, p)
	}
	ex = append(ex, extra...)
	slices.Sort(ex)
	return slices.Compact(ex)
}

func (s *Session) openHop(ctx context.Context, h Hop) (_ *hopState, err error) {
	cfg := &s.cl.cfg
	defer func() {
		if err != nil {
			err = fmt.Errorf("swarm: hop %s at %s: open: %w", h.Span, h.Peer, markLeft(err))
		}
	}()
	octx, cancel := context.WithTimeout(ctx, cfg.OpenTimeout)
	defer cancel()
	st, err := s.cl.h.NewStream(octx, h.Peer, p2p.InferProtocol)
	if err != nil {
		return nil, err
	}
	c := newConn(st)
	s.track(c)
	defer func() {
		if err != nil {
			s.drop(c)
		}
	}()
	open := &Open{Model: cfg.Model, First: h.Span.First, Last: h.Span.Last, MaxPositions: s.maxPos, DType: cfg.DType}
	if err := c.send(open, cfg.OpenTimeout); err != nil {
		return nil, err
	}
	m, err := c.recv(MaxControlFrame, cfg.OpenTimeout, cfg.OpenTimeout)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *OK:
		switch {
		case m.First != h.Span.First || m.Last != h.Span.Last:
			return nil, fmt.Errorf("%w: OK for span [%d,%d)", ErrProtocol, m.First, m.Last)
		case m.MaxPositions != s.maxPos:
			return nil, fmt.Errorf("%w: OK for %d positions, asked %d", ErrProtocol, m.MaxPositions, s.maxPos)
		case m.Dim != s.dim:
			return nil, fmt.Errorf("%w: OK says dim %d, the model's is %d", ErrProtocol, m.Dim, s.dim)
		case m.MaxStep < 1:
			return nil, fmt.Errorf("%w: OK allows %d positions per step", ErrProtocol, m.MaxStep)
		}
		return &hopState{hop: h, c: c, ok: *m}, nil
	case *Error:
		return nil, &RemoteError{Code: m.Code, Step: m.Step, Message: m.Message}
	default:
		return nil, fmt.Errorf("%w: %s in answer to OPEN", ErrProtocol, m.Type())
	}
}

// result reads the answer to rec from hs and returns a copy of its
// activations.
func (s *Session) result(hs *hopState, rec record) ([]byte, error) {
	cfg := &s.cl.cfg
	maxFrame := max(MaxControlFrame, tensorFrameMax(rec.n, s.dim, cfg.DType))
	m, err := hs.c.recv(maxFrame, cfg.StepTimeout, cfg.StepTimeout)
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *Result:
		t := &m.Tensor
		switch {
		case m.ID != rec.id:
			return nil, fmt.Errorf("%w: RESULT for step %d", ErrProtocol, m.ID)
		case t.DType != cfg.DType:
			return nil, fmt.Errorf("%w: RESULT of %s, the session's dtype is %s", ErrProtocol, t.DType, cfg.DType)
		case len(t.Shape) != 2 || t.Shape[0] != rec.n || t.Shape[1] != s.dim:
			return nil, fmt.Errorf("%w: RESULT of shape %v, want [%d %d]", ErrProtocol, t.Shape, rec.n, s.dim)
		}
		if f := cfg.OnResult; f != nil {
			f(ResultFrom{Peer: hs.hop.Peer, Session: hs.ok.Session, Model: cfg.Model, Span: hs.hop.Span, Positions: rec.n})
		}
		return bytes.Clone(t.Data), nil
	case *Error:
		return nil, &RemoteError{Code: m.Code, Step: m.Step, Message: m.Message}
	default:
		return nil, fmt.Errorf("%w: %s in answer to STEP", ErrProtocol, m.Type())
	}
}

// roundTrip sends rec to hs and waits for its output.
func (s *Session) roundTrip(hs *hopState, rec record) ([]byte, error) {
	cfg := &s.cl.cfg
	if err := hs.c.send(s.stepMsg(rec), cfg.StepTimeout); err != nil {
		return nil, err
	}
	return s.result(hs, rec)
}

// roundTrip2 sends rec to a and to b, then reads both answers, so that
// the two servers compute at the same time. Each server reads its whole
// frame before it answers, so the second write cannot wait on the first
// answer.
func (s *Session) roundTrip2(a, b *hopState, rec record) (outA, outB []byte, errA, errB error) {
	cfg := &s.cl.cfg
	st := s.stepMsg(rec)
	errA = a.c.send(st, cfg.StepTimeout)
	errB = b.c.send(st, cfg.StepTimeout)
	if errA == nil {
		outA, errA = s.result(a, rec)
	}
	if errB == nil {
		outB, errB = s.result(b, rec)
	}
	return outA, outB, errA, errB
}

func (s *Session) stepMsg(r record) *Step {
	return &Step{ID: r.id, Start: r.start, N: r.n,
		Tensor: Tensor{DType: s.cl.cfg.DType, Shape: []int{r.n, s.dim}, Data: r.data}}
}

// replay sends every record to hs, all at once, and returns the outputs
// in order. A writer goroutine sends while this one reads, so neither
// side's buffers can fill up and stall the other.
func (s *Session) replay(hs *hopState, recs []record) ([][]byte, error) {
	cfg := &s.cl.cfg
	werr := make(chan error, 1)
	go func() {
		var buf []byte
		for _, r := range recs {
			buf = AppendMessage(buf[:0], &Step{ID: r.id, Start: r.start, N: r.n,
				Tensor: Tensor{DType: cfg.DType, Shape: []int{r.n, s.dim}, Data: r.data}})
			if _, err := hs.c.s.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	outs := make([][]byte, 0, len(recs))
	for _, r := range recs {
		out, err := s.result(hs, r)
		if err != nil {
			hs.c.reset() // unblocks the writer
			<-werr
			return nil, err
		}
		outs = append(outs, out)
	}
	if err := <-werr; err != nil {
		return nil, err
	}
	return outs, nil
}

// Step runs ids, the next len(ids) tokens of the sequence, through the
// route and writes the logits of the last one to logits (Vocab values).
// len(ids) must not exceed MaxStep. When a hop fails the session moves
// its layers to another server, replays what that hop was sent, and goes
// on; the result is the same as without the failure. With
// ClientConfig.Verify each hop's result is checked against its shadow's
// before it goes on to the next hop.
func (s *Session) Step(ctx context.Context, ids []int, logits []float32) error {
	if s.err != nil {
		return s.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := len(ids)
	switch {
	case n == 0:
		return errors.New("swarm: step of no tokens")
	case s.pos+n > s.maxPos:
		return fmt.Errorf("swarm: %d tokens after %d: %w (session of %d positions)", n, s.pos, model.ErrContextFull, s.maxPos)
	case n > s.MaxStep():
		return fmt.Errorf("swarm: %d tokens in one step, the route takes at most %d", n, s.MaxStep())
	}
	stop := context.AfterFunc(ctx, s.abort)
	defer stop()

	cfg := &s.cl.cfg
	if cap(s.x) < n*s.dim {
		s.x = make([]float32, n*s.dim)
	}
	x := s.x[:n*s.dim]
	s.cl.mu.Lock()
	err := s.cl.e.Embed(x, ids)
	s.cl.mu.Unlock()
	if err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	s.cl.enterStep()
	left := false
	leave := func() {
		if !left {
			left = true
			s.cl.leaveStep()
		}
	}
	defer leave()
	data := kernels.Encode(nil, cfg.DType, x)
	id := s.nextStep
	s.nextStep++
	for k := 0; k < len(s.hops); {
		if err := s.advance(ctx, k, []record{{id: id, start: s.pos, n: n, data: data}}, false); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("swarm: step %d: %w", id, ctx.Err())
			}
			s.err = err
			s.Close()
			return err
		}
		// A failover may have put a chain of hops in the place of hop k,
		// each of which has run the step already.
		if !s.holds(k) {
			s.err = fmt.Errorf("swarm: step %d: hop %s did not keep the step", id, s.hops[k].hop)
			s.Close()
			return s.err
		}
		for k < len(s.hops) && s.holds(k) {
			k++
		}
		hs := s.hops[k-1]
		data = hs.outs[len(hs.outs)-1]
	}
	// The last row of the output is the new token's hidden state.
	last := x[:s.dim]
	kernels.Decode(last, cfg.DType, data[(n-1)*s.dim*activationSize(cfg.DType):])
	s.hr.x, s.hr.logits = last, logits
	err = s.cl.head(&s.hr)
	leave()
	if err != nil {
		return err
	}
	s.pos += n
	return nil
}

// holds reports whether hop k has run the step at the current position.
func (s *Session) holds(k int) bool {
	h := s.hops[k].hist
	return len(h) > 0 && h[len(h)-1].start == s.pos
}

// advance runs recs through hop k's primary and its shadow, if any, and
// keeps their outputs: appended to the hop's history for a new step, or,
// with redo, in place of the whole history (recs then hold every input
// anew, as a refeed sends them). A failed shadow is dropped and another
// sought; a failed primary is replaced by its shadow, or else by
// failover; results that disagree go to a referee (mismatch).
func (s *Session) advance(ctx context.Context, k int, recs []record, redo bool) error {
	hs := s.hops[k]
	sh := hs.shadow
	if redo {
		hs.hist = recs
	} else {
		hs.hist = append(hs.hist, recs...)
	}
	var outP, outS [][]byte
	var errP, errS error
	if !redo && len(recs) == 1 {
		var p, q []byte
		if sh == nil {
			p, errP = s.roundTrip(hs, recs[0])
		} else {
			p, q, errP, errS = s.roundTrip2(hs, sh, recs[0])
		}
		outP, outS = [][]byte{p}, [][]byte{q}
	} else {
		outP, errP = s.replay(hs, recs)
		if sh != nil {
			outS, errS = s.replay(sh, recs)
		}
	}
	if (errP != nil || errS != nil) && ctx.Err() != nil {
		return ctx.Err()
	}
	keep := func(st *hopState, outs [][]byte) {
		switch {
		case redo:
			st.outs = outs
		case !s.cl.cfg.Verify:
			// Only verification looks back; the last output is enough.
			st.outs = append(st.outs[:0], outs...)
		default:
			st.outs = append(st.outs, outs...)
		}
	}
	last := recs[len(recs)-1]
	describe := func(st *hopState, err error) error {
		return fmt.Errorf("swarm: hop %s at %s, session %d, step %d: %w", st.hop.Span, st.hop.Peer, st.ok.Session, last.id, markLeft(err))
	}
	if errS != nil {
		s.loseShadow(ctx, hs, describe(sh, errS))
		sh = nil
	}
	switch {
	case errP != nil && sh == nil:
		_, err := s.failover(ctx, k, describe(hs, errP))
		return err
	case errP != nil:
		// The shadow ran every step the primary did: it takes over as it
		// is, and a new shadow is sought.
		err := describe(hs, errP)
		s.hopFailed(hs.hop, err)
		s.drop(hs.c)
		hs.c = nil
		s.fault(ctx, hs.hop, err)
		keep(sh, outS)
		sh.hist, hs.shadow = hs.hist, nil
		s.hops[k] = sh
		s.replaced(hs.hop, []Hop{sh.hop}, 0, err)
		if err := s.findShadow(ctx, k); err != nil {
			return err
		}
	default:
		keep(hs, outP)
		if sh != nil {
			keep(sh, outS)
			if i, _, _ := s.differ(hs.outs, sh.outs, len(hs.outs)-len(outP)); i >= 0 {
				if err := s.mismatch(ctx, k); err != nil {
					return err
				}
			}
		} else if errS != nil {
			if err := s.findShadow(ctx, k); err != nil {
				return err
			}
		}
	}
	if redo {
		return s.refeed(ctx, k+1, s.hops[k].outs)
	}
	return nil
}

// loseShadow drops hs's shadow, which failed with err.
func (s *Session) loseShadow(ctx context.Context, hs *hopState, err error) {
	sh := hs.shadow
	hs.shadow = nil
	if errors.Is(err, ErrLeft) {
		s.emit(Event{Kind: EventLeft, Hop: Hop{Span: sh.hop.Span}, Replaced: sh.hop.Peer, Other: hs.hop.Peer, Err: err})
	} else {
		s.emit(Event{Kind: EventHopFailed, Hop: sh.hop, Err: err})
	}
	s.drop(sh.c)
	sh.c = nil
	s.fault(ctx, sh.hop, err)
}

// nextChain returns the next chain of hops to try for span: an
// alternative with exactly that span not tried yet, else what Replan
// offers.
func (s *Session) nextChain(ctx context.Context, span Span, tried map[peer.ID]bool) ([]Hop, error) {
	cfg := &s.cl.cfg
	for _, h := range cfg.Alternatives {
		if h.Span == span && !s.excluded(h.Peer) && !tried[h.Peer] {
			tried[h.Peer] = true
			return []Hop{h}, nil
		}
	}
	if cfg.Replan == nil {
		return nil, ErrNoRoute
	}
	chain, err := cfg.Replan(ctx, span, s.exclusions())
	if err != nil {
		return nil, fmt.Errorf("%w: replan: %w", ErrNoRoute, err)
	}
	if err := checkChain(chain, span); err != nil {
		return nil, fmt.Errorf("%w: replan: %w", ErrNoRoute, err)
	}
	for _, h := range chain {
		if s.failed[h.Peer] {
			return nil, fmt.Errorf("%w: replan offered %s, which failed before", ErrNoRoute, h.Peer)
		}
		if err := s.cl.banReason(h.Peer); err != nil {
			return nil, fmt.Errorf("%w: replan offered %s: %w", ErrNoRoute, h.Peer, err)
		}
	}
	return chain, nil
}

// failover replaces hop k, which failed with cause, by another chain of
// hops for its span and replays the inputs kept for it, so that the new
// hops hold the step in flight too. It returns the index of the chain's
// last hop.
func (s *Session) failover(ctx context.Context, k int, cause error) (int, error) {
	old := s.hops[k]
	s.hopFailed(old.hop, cause)
	if old.c != nil {
		s.drop(old.c)
		old.c = nil
	}
	if old.shadow != nil {
		s.closeHop(old.shadow)
		old.shadow = nil
	}
	s.fault(ctx, old.hop, cause)
	tried := map[peer.ID]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return k, fmt.Errorf("%w (after %w)", err, cause)
		}
		if s.reroutes >= s.cl.cfg.MaxReroutes {
			return k, fmt.Errorf("%w; %w: %d re-routes already", cause, ErrNoRoute, s.reroutes)
		}
		chain, err := s.nextChain(ctx, old.hop.Span, tried)
		if err != nil {
			return k, fmt.Errorf("%w; %w", cause, err)
		}
		s.reroutes++
		states, bad, err := s.rebuild(ctx, chain, old.hist)
		if err != nil {
			if ctx.Err() != nil {
				return k, fmt.Errorf("%w (after %w)", ctx.Err(), cause)
			}
			log.Debug("replacement failed", "span", old.hop.Span, "err", err)
			s.hopFailed(bad, err)
			s.fault(ctx, bad, err)
			continue
		}
		s.hops = slices.Replace(s.hops, k, k+1, states...)
		hops := make([]Hop, len(states))
		for i, hs := range states {
			hops[i] = hs.hop
		}
		s.replaced(old.hop, hops, positions(old.hist), cause)
		if !s.cl.cfg.Verify || !s.opened {
			return k + len(states) - 1, nil
		}
		// Each new hop gets a shadow, and what they computed from the
		// replayed inputs is checked before anything goes further.
		for _, hs := range states {
			if i := slices.Index(s.hops, hs); i >= 0 {
				if err := s.findShadow(ctx, i); err != nil {
					return k, err
				}
			}
		}
		last := s.endingAt(old.hop.Span.Last)
		return last, s.refeed(ctx, last+1, s.hops[last].outs)
	}
}

// endingAt returns the index of the hop whose span ends at layer l.
func (s *Session) endingAt(l int) int {
	for i, hs := range s.hops {
		if hs.hop.Span.Last == l {
			return i
		}
	}
	panic(fmt.Sprintf("swarm: no hop of the route ends at layer %d", l))
}

func positions(recs []record) int {
	n := 0
	for _, r := range recs {
		n += r.n
	}
	return n
}

// join opens a session with h and replays recs to it, so that its cache
// holds what the hop's other servers hold; the new state keeps its
// outputs but not the inputs.
func (s *Session) join(ctx context.Context, h Hop, recs []record) (*hopState, error) {
	hs, err := s.openHop(ctx, h)
	if err != nil {
		return nil, err
	}
	need := 0
	for _, r := range recs {
		need = max(need, r.n)
	}
	if need > hs.ok.MaxStep {
		s.closeHop(hs)
		return nil, fmt.Errorf("swarm: hop %s at %s: %w: it takes %d positions a step, the kept steps need %d",
			h.Span, h.Peer, errUnfit, hs.ok.MaxStep, need)
	}
	if len(recs) > 0 {
		if hs.outs, err = s.replay(hs, recs); err != nil {
			s.drop(hs.c)
			return nil, fmt.Errorf("swarm: hop %s at %s: replay of %d steps: %w", h.Span, h.Peer, len(recs), markLeft(err))
		}
	}
	return hs, nil
}

// rebuild opens sessions with chain and replays hist through it: the
// inputs of each hop are the previous hop's outputs, step by step as the
// original route saw them, so every new cache holds what the old one did.
// On failure it returns the hop that failed.
func (s *Session) rebuild(ctx context.Context, chain []Hop, hist []record) ([]*hopState, Hop, error) {
	var states []*hopState
	in := hist
	for _, h := range chain {
		hs, err := s.join(ctx, h, in)
		if err != nil {
			for _, hs := range states {
				s.drop(hs.c)
			}
			return nil, h, err
		}
		hs.hist = slices.Clone(in)
		states = append(states, hs)
		next := make([]record, len(in))
		for i, r := range in {
			next[i] = record{id: r.id, start: r.start, n: r.n, data: hs.outs[i]}
		}
		in = next
	}
	return states, Hop{}, nil
}

// Generate runs prompt through the route, then samples up to
// opts.MaxTokens new tokens, calling emit with each, as
// model.Engine.Generate does on one machine. The session must be fresh.
func (s *Session) Generate(ctx context.Context, prompt []int, opts model.GenerateOptions, emit func(id int) error) (model.Stats, error) {
	if s.pos != 0 {
		return model.Stats{}, errors.New("swarm: generate needs a fresh session")
	}
	if opts.MaxTokens < 0 || len(prompt)+opts.MaxTokens > s.maxPos {
		return model.Stats{}, fmt.Errorf("swarm: generate: %d prompt tokens + %d new tokens exceed the session's %d positions", len(prompt), opts.MaxTokens, s.maxPos)
	}
	if opts.PrefillChunk <= 0 || opts.PrefillChunk > s.MaxStep() {
		opts.PrefillChunk = s.MaxStep()
	}
	return model.GenerateWith(ctx, s, s.cl.e.Weights().Config.Vocab, prompt, opts, emit)
}

// Close ends the session with every hop and shadow (CLOSE, then the end
// of the stream). Safe to call twice.
func (s *Session) Close() error {
	for _, hs := range s.hops {
		if hs.shadow != nil {
			s.closeHop(hs.shadow)
		}
		s.closeHop(hs)
	}
	if s.err == nil {
		s.err = ErrClosed
	}
	s.abort()
	return nil
}
