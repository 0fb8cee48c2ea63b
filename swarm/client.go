package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	EventHopFailed
	// EventReroute: a replacement hop took over a failed hop's layers,
	// after the inputs kept for them were replayed to it.
	EventReroute
)

func (k EventKind) String() string {
	switch k {
	case EventRoute:
		return "route"
	case EventHopFailed:
		return "hop failed"
	case EventReroute:
		return "re-route"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is a change in a session's route.
type Event struct {
	Kind EventKind
	Hop  Hop
	// Replaced is the failed peer an EventReroute's hop took over from.
	Replaced peer.ID
	// Replayed is the number of positions replayed to the new hop.
	Replayed int
	// Err is why the hop failed (EventHopFailed).
	Err error
}

func (e Event) String() string {
	switch e.Kind {
	case EventHopFailed:
		return fmt.Sprintf("%s %s: %v", e.Kind, e.Hop, e.Err)
	case EventReroute:
		return fmt.Sprintf("%s %s (replaces %s, %d positions replayed)", e.Kind, e.Hop, e.Replaced.ShortString(), e.Replayed)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Hop)
}

// Defaults of ClientConfig.
const (
	DefaultStepTimeout = 30 * time.Second
	DefaultOpenTimeout = 10 * time.Second
	DefaultMaxReroutes = 8
)

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
	// span once the alternatives are spent. exclude lists the peers that
	// failed in this session.
	Replan func(ctx context.Context, span Span, exclude []peer.ID) ([]Hop, error)
	// OnEvent, if set, is called with every route change, on the
	// goroutine that runs the session.
	OnEvent func(Event)
	// MaxReroutes bounds the replacements tried over a session's life.
	MaxReroutes int
}

// Client runs generation through a pipeline of servers. It holds the
// embedding, final norm and output head and computes those itself.
type Client struct {
	h   host.Host
	cfg ClientConfig

	mu sync.Mutex // guards e: one embedding or head pass at a time
	e  *model.Engine
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
	return &Client{h: h, cfg: cfg, e: model.NewEngine(w, be)}, nil
}

func (cl *Client) emit(ev Event) {
	if cl.cfg.OnEvent != nil {
		cl.cfg.OnEvent(ev)
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

// hopState is a live session with one server.
type hopState struct {
	hop  Hop
	c    *conn
	ok   OK
	hist []record
}

// Session is one sequence being generated through a route. It is used by
// one goroutine at a time.
type Session struct {
	cl     *Client
	maxPos int
	dim    int

	hops     []*hopState
	pos      int
	nextStep uint64
	failed   map[peer.ID]bool
	reroutes int
	err      error // set once the session is unusable

	mu    sync.Mutex // guards conns against an aborting context
	conns map[*conn]struct{}

	x []float32
}

// Open opens a session with every hop of route, which must cover all the
// model's layers in order, for up to maxPositions positions.
func (cl *Client) Open(ctx context.Context, route []Hop, maxPositions int) (*Session, error) {
	mc := &cl.e.Weights().Config
	if err := checkChain(route, Span{0, mc.Layers}); err != nil {
		return nil, err
	}
	if maxPositions < 1 || maxPositions > mc.Context {
		return nil, fmt.Errorf("swarm: %d positions outside 1..%d", maxPositions, mc.Context)
	}
	s := &Session{cl: cl, maxPos: maxPositions, dim: mc.Dim, nextStep: 1,
		failed: map[peer.ID]bool{}, conns: map[*conn]struct{}{}}
	for _, h := range route {
		s.hops = append(s.hops, &hopState{hop: h})
	}
	// A hop that cannot be opened is replaced as a failed one would be,
	// with nothing to replay.
	for k := 0; k < len(s.hops); k++ {
		hs, err := s.openHop(ctx, s.hops[k].hop)
		if err == nil {
			s.hops[k] = hs
			cl.emit(Event{Kind: EventRoute, Hop: hs.hop})
			continue
		}
		if _, k, err = s.failover(ctx, k, err); err != nil {
			s.Close()
			return nil, err
		}
	}
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

// Pos is the number of positions the session holds.
func (s *Session) Pos() int { return s.pos }

// MaxStep is the most positions one Step may carry on the current route.
func (s *Session) MaxStep() int {
	m := s.maxPos
	for _, h := range s.hops {
		m = min(m, h.ok.MaxStep)
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

func (s *Session) openHop(ctx context.Context, h Hop) (_ *hopState, err error) {
	cfg := &s.cl.cfg
	defer func() {
		if err != nil {
			err = fmt.Errorf("swarm: hop %s at %s: open: %w", h.Span, h.Peer, err)
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
	st := &Step{ID: rec.id, Start: rec.start, N: rec.n,
		Tensor: Tensor{DType: cfg.DType, Shape: []int{rec.n, s.dim}, Data: rec.data}}
	if err := hs.c.send(st, cfg.StepTimeout); err != nil {
		return nil, err
	}
	return s.result(hs, rec)
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
// on; the result is the same as without the failure.
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
	data := kernels.Encode(nil, cfg.DType, x)
	id := s.nextStep
	s.nextStep++
	for k := 0; k < len(s.hops); k++ {
		hs := s.hops[k]
		rec := record{id: id, start: s.pos, n: n, data: data}
		hs.hist = append(hs.hist, rec)
		out, err := s.roundTrip(hs, rec)
		if err != nil && ctx.Err() != nil {
			s.err = fmt.Errorf("swarm: step %d: %w", id, ctx.Err())
			s.Close()
			return s.err
		}
		if err != nil {
			err = fmt.Errorf("swarm: hop %s at %s, session %d, step %d: %w", hs.hop.Span, hs.hop.Peer, hs.ok.Session, id, err)
			if out, k, err = s.failover(ctx, k, err); err != nil {
				s.err = err
				s.Close()
				return err
			}
		}
		data = out
	}
	// The last row of the output is the new token's hidden state.
	last := x[:s.dim]
	kernels.Decode(last, cfg.DType, data[(n-1)*s.dim*activationSize(cfg.DType):])
	s.cl.mu.Lock()
	err = s.cl.e.Logits(logits, last)
	s.cl.mu.Unlock()
	if err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	s.pos += n
	return nil
}

// nextChain returns the next chain of hops to try for span: an
// alternative with exactly that span not tried yet, else what Replan
// offers.
func (s *Session) nextChain(ctx context.Context, span Span, tried map[peer.ID]bool) ([]Hop, error) {
	cfg := &s.cl.cfg
	for _, h := range cfg.Alternatives {
		if h.Span == span && !s.failed[h.Peer] && !tried[h.Peer] {
			tried[h.Peer] = true
			return []Hop{h}, nil
		}
	}
	if cfg.Replan == nil {
		return nil, ErrNoRoute
	}
	exclude := make([]peer.ID, 0, len(s.failed))
	for p := range s.failed {
		exclude = append(exclude, p)
	}
	slices.Sort(exclude)
	chain, err := cfg.Replan(ctx, span, exclude)
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
	}
	return chain, nil
}

// failover replaces hop k, which failed with cause, by another chain of
// hops for its span, replays the inputs kept for it, and returns the
// output of the step in flight and the index of the chain's last hop.
func (s *Session) failover(ctx context.Context, k int, cause error) ([]byte, int, error) {
	old := s.hops[k]
	s.cl.emit(Event{Kind: EventHopFailed, Hop: old.hop, Err: cause})
	if old.c != nil {
		s.drop(old.c)
	}
	s.failed[old.hop.Peer] = true
	tried := map[peer.ID]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, k, fmt.Errorf("%w (after %w)", err, cause)
		}
		if s.reroutes >= s.cl.cfg.MaxReroutes {
			return nil, k, fmt.Errorf("%w; %w: %d re-routes already", cause, ErrNoRoute, s.reroutes)
		}
		chain, err := s.nextChain(ctx, old.hop.Span, tried)
		if err != nil {
			return nil, k, fmt.Errorf("%w; %w", cause, err)
		}
		s.reroutes++
		states, out, err := s.rebuild(ctx, chain, old.hist)
		if err != nil {
			log.Debug("replacement failed", "span", old.hop.Span, "err", err)
			s.cl.emit(Event{Kind: EventHopFailed, Hop: chain[0], Err: err})
			continue
		}
		s.hops = slices.Replace(s.hops, k, k+1, states...)
		for _, hs := range states {
			s.cl.emit(Event{Kind: EventReroute, Hop: hs.hop, Replaced: old.hop.Peer, Replayed: positions(hs.hist)})
		}
		return out, k + len(states) - 1, nil
	}
}

func positions(recs []record) int {
	n := 0
	for _, r := range recs {
		n += r.n
	}
	return n
}

// rebuild opens sessions with chain and replays hist through it: the
// inputs of each hop are the previous hop's outputs, step by step as the
// original route saw them, so every new cache holds what the old one did.
func (s *Session) rebuild(ctx context.Context, chain []Hop, hist []record) ([]*hopState, []byte, error) {
	var states []*hopState
	fail := func(err error) ([]*hopState, []byte, error) {
		for _, hs := range states {
			s.drop(hs.c)
		}
		return nil, nil, err
	}
	in := hist
	for _, h := range chain {
		hs, err := s.openHop(ctx, h)
		if err != nil {
			s.failed[h.Peer] = true
			return fail(err)
		}
		states = append(states, hs)
		outs, err := s.replay(hs, in)
		if err != nil {
			s.failed[h.Peer] = true
			return fail(fmt.Errorf("swarm: hop %s at %s: replay of %d steps: %w", h.Span, h.Peer, len(in), err))
		}
		hs.hist = slices.Clone(in)
		next := make([]record, len(in))
		for i, r := range in {
			next[i] = record{id: r.id, start: r.start, n: r.n, data: outs[i]}
		}
		in = next
	}
	if len(in) == 0 {
		return states, nil, nil
	}
	return states, in[len(in)-1].data, nil
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

// Close ends the session with every hop (CLOSE, then the end of the
// stream). Safe to call twice.
func (s *Session) Close() error {
	for _, hs := range s.hops {
		if hs.c == nil {
			continue
		}
		hs.c.send(&Close{}, time.Second)
		hs.c.finish()
		s.mu.Lock()
		delete(s.conns, hs.c)
		s.mu.Unlock()
		hs.c = nil
	}
	if s.err == nil {
		s.err = ErrClosed
	}
	s.abort()
	return nil
}
