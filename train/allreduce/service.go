package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/gologshim"

	"github.com/mycel-net/mycel/p2p"
)

var log = gologshim.Logger("allreduce")

// Protocol is the stream protocol of the averaging rounds.
const Protocol = p2p.AllReduceProtocol

// Errors of AllReduce. Each is wrapped with the round, part and peer it
// concerns.
var (
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("allreduce: service closed")
	// ErrInvalidRound: the Round or the vector is malformed (a programmer
	// error: members missing this peer, part sizes that do not add up…).
	ErrInvalidRound = errors.New("allreduce: invalid round")
	// ErrRoundActive: a round of the same ID is running or was just run
	// on this service.
	ErrRoundActive = errors.New("allreduce: round ID in use")
	// ErrMismatch: a member's round parameters (ID, members, length, part
	// sizes, encoding, aggregation) hash differently from ours.
	ErrMismatch = errors.New("allreduce: round parameters differ")
	// ErrIncomplete: some averaged part could be had neither from its
	// reducer nor by recovery before the deadline.
	ErrIncomplete = errors.New("allreduce: round incomplete")
	// ErrLate: the others recovered this member's part without it (it
	// started too late, or was cut off); its own view would differ.
	ErrLate = errors.New("allreduce: part recovered without its reducer")
	// ErrConflict: two members tried to recover the same part at once;
	// rather than risk two different averages the round fails.
	ErrConflict = errors.New("allreduce: conflicting recovery")
)

// Defaults of the service's options.
const (
	// DefaultReduceAt and DefaultRecoverAt are the fractions of the time
	// from a round's start to its deadline at which a reducer stops
	// waiting for contributions, and a member stops waiting for a silent
	// reducer and asks for its part elsewhere.
	DefaultReduceAt  = 0.5
	DefaultRecoverAt = 0.7
	// DefaultEarlyWait bounds how long a request for a round that has
	// not started here waits for it to start.
	DefaultEarlyWait = 30 * time.Second
	// DefaultMaxEarly bounds the streams waiting for rounds that have not
	// started here (all peers together); maxEarlyPerPeer per peer.
	DefaultMaxEarly = 64
	maxEarlyPerPeer = 8
	// maxStreamsPerPeer bounds a peer's open streams to this service.
	maxStreamsPerPeer = 16
	// DefaultLinger is how long after its deadline a round stays to
	// answer members still recovering.
	DefaultLinger = 5 * time.Second
	// headerWait bounds how long an incoming stream may take to send its
	// first frame.
	headerWait = 10 * time.Second
	// connBuf is the read buffer of a stream.
	connBuf = 64 << 10
)

// Option configures a Service.
type Option func(*config) error

type config struct {
	reduceAt, recoverAt float64
	earlyWait           time.Duration
	maxEarly            int
	linger              time.Duration

	// beforeReply, when set, runs when a reducer has computed its part
	// and before anyone can have it (tests use it to kill a reducer).
	beforeReply func(id string, part int)
	// statedSumSquares, when set, replaces the sum of squares this
	// member states for its slice of a part (tests make it lie).
	statedSumSquares func(part int, ss float64) float64
	// trace, when set, is told of the steps of every round this service
	// runs (the benchmark times the phases with it).
	trace func(id string, ev traceEvent, part int)
	// wholeParts, when set, has this member reduce its part whole, as
	// a replacement reducer does, never piece by piece (the benchmark's
	// baseline).
	wholeParts bool
}

// traceEvent is a step of a round, for config.trace.
type traceEvent uint8

const (
	evSent     traceEvent = iota // this member's slice of part went out
	evContrib                    // part's member's contribution to this member's part is in
	evReducing                   // this member starts reducing its part
	evReduced                    // and is done
	evPart                       // part is here
	evAcked                      // this member's part was taken
	evPiece                      // a piece of part came from its reducer
	evWhole                      // this member computes its part whole
	numEvents
)

// traceAt tells the trace hook of ev, if one is set.
func (rd *round) traceAt(ev traceEvent, part int) {
	if t := rd.s.cfg.trace; t != nil {
		t(rd.id, ev, part)
	}
}

// Schedule sets the fractions of the time from a round's start to its
// deadline at which a reducer stops waiting for contributions (reduce)
// and a member that still lacks a part from a live but silent reducer
// asks for it elsewhere (recover); 0 < reduce < recover < 1. A
// replacement reducer stops collecting slices half way from recover to
// the deadline.
func Schedule(reduce, recover float64) Option {
	return func(c *config) error {
		if !(reduce > 0 && reduce < recover && recover < 1) {
			return fmt.Errorf("allreduce: schedule %v, %v: want 0 < reduce < recover < 1", reduce, recover)
		}
		c.reduceAt, c.recoverAt = reduce, recover
		return nil
	}
}

// EarlyWait bounds how long a peer's stream for a round that has not
// started here yet is held before it is refused.
func EarlyWait(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("allreduce: early wait %v", d)
		}
		c.earlyWait = d
		return nil
	}
}

// Linger sets how long after its deadline a round stays to answer members
// still recovering.
func Linger(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("allreduce: linger %v", d)
		}
		c.linger = d
		return nil
	}
}

// Service runs averaging rounds over one libp2p host. It serves the
// other members' requests for every round it runs and for rounds about to
// start, and keeps a finished round until shortly after its deadline so
// that members still recovering can fetch its parts.
type Service struct {
	h   host.Host
	cfg config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	rounds  map[string]*round
	changed chan struct{} // closed and replaced when a round registers
	early   int
	earlyBy map[peer.ID]int
	streams map[peer.ID]int
	done    []*round // finished rounds still answering, oldest first
}

// New starts a service on h: it registers the stream handler for
// Protocol. Close unregisters it and stops every goroutine. New panics on
// an invalid option.
func New(h host.Host, opts ...Option) *Service {
	cfg := config{
		reduceAt: DefaultReduceAt, recoverAt: DefaultRecoverAt,
		earlyWait: DefaultEarlyWait, maxEarly: DefaultMaxEarly, linger: DefaultLinger,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			panic(err.Error())
		}
	}
	s := &Service{
		h: h, cfg: cfg,
		rounds:  make(map[string]*round),
		changed: make(chan struct{}),
		earlyBy: make(map[peer.ID]int),
		streams: make(map[peer.ID]int),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(Protocol, s.handle)
	return s
}

// Close unregisters the handler, fails the rounds in progress with
// ErrClosed, resets their streams and waits for every goroutine the
// service started. Safe to call twice.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(Protocol)
	s.cancel()
	s.wg.Wait()
	return nil
}

// goTracked runs fn in a goroutine the service waits for on Close; false
// (and fn not run) once the service is closed.
func (s *Service) goTracked(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Go(fn)
	return true
}

// register makes rd visible to incoming streams and wakes the streams
// that wait for it.
func (s *Service) register(rd *round) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.rounds[rd.id]; ok {
		return fmt.Errorf("%w: %q", ErrRoundActive, rd.id)
	}
	s.rounds[rd.id] = rd
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// retire keeps a round that AllReduce is done with until its linger ends,
// and drops the oldest retired round once more than one is kept.
func (s *Service) retire(rd *round) {
	s.mu.Lock()
	s.done = append(s.done, rd)
	var drop []*round
	for len(s.done) > 1 {
		drop = append(drop, s.done[0])
		s.done = s.done[1:]
	}
	s.mu.Unlock()
	for _, old := range drop {
		s.drop(old)
	}
	// The round's context ends at deadline+linger; drop it then.
	s.goTracked(func() {
		<-rd.ctx.Done()
		s.drop(rd)
	})
}

// drop forgets a round and ends its streams.
func (s *Service) drop(rd *round) {
	s.mu.Lock()
	if s.rounds[rd.id] == rd {
		delete(s.rounds, rd.id)
	}
	for i, r := range s.done {
		if r == rd {
			s.done = append(s.done[:i], s.done[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	rd.cancel()
	rd.markDropped()
}

// lookup finds the round id for a request from p. A round that has not
// started here yet is waited for, until the requester's deadline or the
// early wait, whichever is first.
func (s *Service) lookup(ctx context.Context, id string, p peer.ID, deadline time.Time) (*round, errCode) {
	counted := false
	defer func() {
		if counted {
			s.mu.Lock()
			s.early--
			if s.earlyBy[p]--; s.earlyBy[p] == 0 {
				delete(s.earlyBy, p)
			}
			s.mu.Unlock()
		}
	}()
	var timer *time.Timer
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, codeClosed
		}
		if rd := s.rounds[id]; rd != nil {
			s.mu.Unlock()
			return rd, 0
		}
		if !counted {
			if s.early >= s.cfg.maxEarly || s.earlyBy[p] >= maxEarlyPerPeer {
				s.mu.Unlock()
				return nil, codeBusy
			}
			s.early++
			s.earlyBy[p]++
			counted = true
		}
		ch := s.changed
		s.mu.Unlock()
		if timer == nil {
			wait := min(time.Until(deadline), s.cfg.earlyWait)
			if wait <= 0 {
				return nil, codeUnknown
			}
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			return nil, codeUnknown
		case <-ctx.Done():
			return nil, codeClosed
		}
	}
}

// handle serves one incoming stream (handler.go does the work).
func (s *Service) handle(st network.Stream) {
	p := st.Conn().RemotePeer()
	s.mu.Lock()
	if s.closed || s.streams[p] >= maxStreamsPerPeer {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.streams[p]++
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.streams[p]--; s.streams[p] == 0 {
			delete(s.streams, p)
		}
		s.mu.Unlock()
		s.wg.Done()
	}()
	s.serve(st, p)
}
