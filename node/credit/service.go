package credit

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/wire"
)

// Defaults of Config.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultRoundWait = 2 * time.Minute
	// maxTally bounds the sessions a client counts while it waits for
	// their receipts; maxPending the rounds waiting for signatures.
	maxTally   = 4096
	maxPending = 256
	tallyTTL   = time.Hour
)

// Config configures a Service. Zero fields take the defaults.
type Config struct {
	// Timeout bounds one exchange: opening the stream, the message and
	// its answer.
	Timeout time.Duration
	// RoundWait is how long a round this node signed waits for the
	// other members' signatures before it is recorded with those that
	// came.
	RoundWait time.Duration
	// Log is where the service reports (default slog.Default()).
	Log *slog.Logger
}

// Service speaks /mycel/credit/1 for a node: it issues receipts for the
// sessions the node served and records the client's answer, countersigns
// the receipts of servers the node used (checking them against what it
// counted), and exchanges the signatures of the training rounds the node
// took part in. Everything ends in the node's Ledger.
type Service struct {
	h   host.Host
	key crypto.PrivKey
	l   *Ledger
	cfg Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	closed  bool
	tally   map[tallyKey]*tallyEntry
	rounds  map[[32]byte]*pendingRound
}

type tallyKey struct {
	server  peer.ID
	session uint64
}

type tallyEntry struct {
	model       string
	first, last int
	tokens      uint64
	at          time.Time
}

type pendingRound struct {
	round Round
	sigs  map[int]Sig
	own   bool      // this node signed it
	at    time.Time // when this node signed it, or when the first signature came
}

// NewService returns the service of h, which must hold its private key,
// writing to l. It starts nothing; call Start.
func NewService(h host.Host, l *Ledger, cfg Config) (*Service, error) {
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("credit: the host holds no private key")
	}
	if l == nil {
		return nil, errors.New("credit: no ledger")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RoundWait <= 0 {
		cfg.RoundWait = DefaultRoundWait
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Log = cfg.Log.With("sys", "credit")
	s := &Service{h: h, key: key, l: l, cfg: cfg,
		tally: map[tallyKey]*tallyEntry{}, rounds: map[[32]byte]*pendingRound{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Ledger is the service's ledger.
func (s *Service) Ledger() *Ledger { return s.l }

// Start registers the protocol handler and starts the loop that records
// the rounds whose wait is over.
func (s *Service) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("credit: service closed")
	}
	if s.started {
		return errors.New("credit: service already started")
	}
	s.started = true
	s.h.SetStreamHandler(p2p.CreditProtocol, s.handle)
	s.wg.Go(s.loop)
	return nil
}

// Close removes the handler, ends the exchanges in flight (a receipt
// whose client has not answered is recorded unanswered) and records the
// rounds this node signed with the signatures they have. The ledger
// stays open. Safe to call twice.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	if started {
		s.h.RemoveStreamHandler(p2p.CreditProtocol)
	}
	s.cancel()
	s.wg.Wait()
	s.flushRounds(func(*pendingRound) bool { return true })
	return nil
}

// spawn runs fn on a goroutine the service owns, unless it is closed.
func (s *Service) spawn(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Go(fn)
	return true
}

// Issue sends the client of a session this node served a receipt for
// it, in the background, and records the receipt with the client's
// answer: countersigned, refused (and why) or unanswered. r.Seq and
// r.Server are filled in here.
func (s *Service) Issue(r Receipt) {
	r.Server = s.h.ID()
	r.Seq = s.l.nextSeq()
	if !s.spawn(func() { s.issue(r) }) {
		s.cfg.Log.Warn("receipt not issued: the node is closing", "client", r.Client, "tokens", r.Tokens)
	}
}

func (s *Service) issue(r Receipt) {
	rec := &ServeRecord{Receipt: r}
	var err error
	if rec.ServerSig, err = Sign(s.key, r.Signed()); err != nil {
		s.cfg.Log.Error("receipt not signed", "err", err)
		return
	}
	m, err := s.exchange(r.Client, &ReceiptMsg{Receipt: r, Sig: rec.ServerSig})
	switch m := m.(type) {
	case nil:
		rec.Status, rec.Note = Unanswered, truncate(err.Error())
	case *Countersign:
		if err := m.Sig.verify(r.Client, r.Signed(), "client"); err != nil {
			rec.Status, rec.Note = Refused, truncate("the countersignature does not hold: "+err.Error())
		} else {
			rec.Status, rec.ClientSig = Countersigned, m.Sig
		}
	case *Refuse:
		rec.Status, rec.Note = Refused, truncate(fmt.Sprintf("the client counted %d tokens: %s", m.Counted, m.Reason))
	case *ErrorMsg:
		rec.Status, rec.Note = Refused, truncate("the client answered: "+m.Message)
	default:
		rec.Status, rec.Note = Refused, fmt.Sprintf("the client answered %s", m.Type())
	}
	if err := s.l.Append(rec); err != nil {
		s.cfg.Log.Error("receipt not recorded", "client", r.Client, "err", err)
		return
	}
	s.cfg.Log.Debug("receipt", "client", r.Client, "tokens", r.Tokens, "status", rec.Status, "note", rec.Note)
}

// exchange sends m to p on a new stream and reads the answer.
func (s *Service) exchange(p peer.ID, m Message) (Message, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	st, err := s.h.NewStream(network.WithAllowLimitedConn(ctx, "credit"), p, p2p.CreditProtocol)
	if err != nil {
		return nil, fmt.Errorf("could not reach %s: %w", p, err)
	}
	c := wire.NewConn(st, 0)
	stop := context.AfterFunc(ctx, c.Reset)
	defer stop()
	if err := c.Write(AppendMessage(nil, m), s.cfg.Timeout); err != nil {
		c.Reset()
		return nil, fmt.Errorf("%s: send %s: %w", p, m.Type(), err)
	}
	b, err := c.ReadFrame(MaxFrame, s.cfg.Timeout, s.cfg.Timeout)
	if err != nil {
		c.Reset()
		return nil, fmt.Errorf("%s: no answer to %s: %w", p, m.Type(), err)
	}
	ans, err := DecodeMessage(b)
	c.Finish()
	if err != nil {
		return nil, fmt.Errorf("%s: answer to %s: %w", p, m.Type(), err)
	}
	return ans, nil
}

// Used counts positions a server ran for this node in one of its
// sessions: what the server's receipt for the session is checked
// against.
func (s *Service) Used(server peer.ID, session uint64, model string, first, last, positions int) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := tallyKey{server, session}
	e := s.tally[k]
	if e == nil {
		if len(s.tally) >= maxTally {
			s.evictLocked(now)
		}
		e = &tallyEntry{model: model, first: first, last: last}
		s.tally[k] = e
	}
	e.tokens += uint64(positions)
	e.at = now
}

// evictLocked drops the sessions counted longer ago than tallyTTL, or
// else the oldest one.
func (s *Service) evictLocked(now time.Time) {
	var oldest tallyKey
	var at time.Time
	for k, e := range s.tally {
		if now.Sub(e.at) > tallyTTL {
			delete(s.tally, k)
			continue
		}
		if at.IsZero() || e.at.Before(at) {
			oldest, at = k, e.at
		}
	}
	if len(s.tally) >= maxTally {
		delete(s.tally, oldest)
	}
}

// handle answers one request: a receipt to countersign, or a member's
// signature of a round.
func (s *Service) handle(st network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	c := wire.NewConn(st, 0)
	stop := context.AfterFunc(s.ctx, c.Reset)
	defer stop()
	from := st.Conn().RemotePeer()
	b, err := c.ReadFrame(MaxFrame, s.cfg.Timeout, s.cfg.Timeout)
	if err != nil {
		c.Reset()
		return
	}
	var reply Message
	m, err := DecodeMessage(b)
	switch m := m.(type) {
	case nil:
		reply = &ErrorMsg{Message: truncate(err.Error())}
	case *ReceiptMsg:
		reply = s.onReceipt(from, m)
	case *RoundSig:
		reply = s.onRoundSig(from, m)
	default:
		reply = &ErrorMsg{Message: fmt.Sprintf("unexpected %s", m.Type())}
	}
	if err := c.Write(AppendMessage(nil, reply), s.cfg.Timeout); err != nil {
		c.Reset()
		return
	}
	c.Finish()
}

// onReceipt checks a server's receipt against what this node counted
// and countersigns it when the count holds.
func (s *Service) onReceipt(from peer.ID, m *ReceiptMsg) Message {
	r := &m.Receipt
	switch {
	case r.Server != from:
		return &ErrorMsg{Message: fmt.Sprintf("a receipt of server %s sent by %s", r.Server, from)}
	case r.Client != s.h.ID():
		return &ErrorMsg{Message: fmt.Sprintf("a receipt for client %s sent to %s", r.Client, s.h.ID())}
	}
	msg := r.Signed()
	if err := m.Sig.verify(r.Server, msg, "server"); err != nil {
		return &ErrorMsg{Message: truncate(err.Error())}
	}
	s.mu.Lock()
	k := tallyKey{r.Server, r.Session}
	e := s.tally[k]
	var counted uint64
	var why string
	switch {
	case e == nil:
		why = fmt.Sprintf("no session %d with this server counted here", r.Session)
	case e.model != r.Model || e.first != r.First || e.last != r.Last:
		counted = e.tokens
		why = fmt.Sprintf("session %d ran model %s layers [%d,%d) here, not %s [%d,%d)", r.Session, e.model, e.first, e.last, r.Model, r.First, r.Last)
	case e.tokens < r.Tokens:
		counted = e.tokens
		why = fmt.Sprintf("the receipt claims %d tokens, the client received %d", r.Tokens, e.tokens)
	default:
		delete(s.tally, k)
	}
	s.mu.Unlock()
	if why != "" {
		if e != nil {
			// The server did work here: the refusal is kept too.
			rec := &ServeRecord{Receipt: *r, ServerSig: m.Sig, Status: Refused, Note: truncate(why)}
			if err := s.l.Append(rec); err != nil {
				s.cfg.Log.Error("refused receipt not recorded", "server", r.Server, "err", err)
			}
		}
		s.cfg.Log.Info("receipt refused", "server", r.Server, "session", r.Session, "why", why)
		return &Refuse{Counted: counted, Reason: why}
	}
	sig, err := Sign(s.key, msg)
	if err != nil {
		return &ErrorMsg{Message: truncate(err.Error())}
	}
	rec := &ServeRecord{Receipt: *r, ServerSig: m.Sig, ClientSig: sig, Status: Countersigned}
	if err := s.l.Append(rec); err != nil {
		s.cfg.Log.Error("countersigned receipt not recorded", "server", r.Server, "err", err)
	}
	return &Countersign{Sig: sig}
}

// SignRound signs a training round this node took part in, sends the
// signature to the other members and records the round once they all
// signed it back (or RoundWait has passed: with the signatures that
// came).
func (s *Service) SignRound(r Round) error {
	if err := r.check(); err != nil {
		return err
	}
	self := r.index(s.h.ID())
	if self < 0 {
		return fmt.Errorf("credit: round %d of job %s: this node is no member", r.Round, r.Job)
	}
	msg := r.Signed()
	sig, err := Sign(s.key, msg)
	if err != nil {
		return err
	}
	s.take(r, msg, self, sig, true)
	for j, m := range r.Members {
		if j == self {
			continue
		}
		s.spawn(func() {
			ans, err := s.exchange(m, &RoundSig{Round: r, Member: self, Sig: sig})
			if err == nil {
				if e, ok := ans.(*ErrorMsg); ok {
					err = errors.New(e.Message)
				}
			}
			if err != nil {
				s.cfg.Log.Debug("round signature not taken", "member", m, "job", r.Job, "round", r.Round, "err", err)
			}
		})
	}
	return nil
}

// onRoundSig takes another member's signature of a round.
func (s *Service) onRoundSig(from peer.ID, m *RoundSig) Message {
	r := &m.Round
	if err := r.check(); err != nil {
		return &ErrorMsg{Message: truncate(err.Error())}
	}
	switch {
	case r.index(from) != m.Member:
		return &ErrorMsg{Message: fmt.Sprintf("a signature of member %d sent by %s", m.Member, from)}
	case r.index(s.h.ID()) < 0:
		return &ErrorMsg{Message: fmt.Sprintf("%s is no member of round %d of job %s", s.h.ID(), r.Round, r.Job)}
	}
	msg := r.Signed()
	if err := m.Sig.verify(from, msg, "member"); err != nil {
		return &ErrorMsg{Message: truncate(err.Error())}
	}
	if !s.take(*r, msg, m.Member, m.Sig, false) {
		return &ErrorMsg{Message: "too many rounds waiting for signatures"}
	}
	return &Ack{}
}

// take adds member i's signature to the round waiting under msg's hash,
// and records the round once this node and every member signed it. It
// reports false when the round was new and too many wait already.
func (s *Service) take(r Round, msg []byte, i int, sig Sig, own bool) bool {
	k := sha256.Sum256(msg)
	s.mu.Lock()
	p := s.rounds[k]
	if p == nil {
		if len(s.rounds) >= maxPending && !own {
			s.mu.Unlock()
			return false
		}
		p = &pendingRound{round: r, sigs: map[int]Sig{}, at: time.Now()}
		s.rounds[k] = p
	}
	p.sigs[i] = sig
	if own {
		p.own, p.at = true, time.Now()
	}
	done := p.own && len(p.sigs) == len(p.round.Members)
	if done {
		delete(s.rounds, k)
	}
	s.mu.Unlock()
	if done {
		s.record(p)
	}
	return true
}

func (s *Service) record(p *pendingRound) {
	rec := &RoundRecord{Time: time.Now().UTC(), Round: p.round}
	for i, sig := range p.sigs {
		rec.Sigs = append(rec.Sigs, MemberSig{Member: i, Sig: sig})
	}
	slices.SortFunc(rec.Sigs, func(a, b MemberSig) int { return a.Member - b.Member })
	if err := s.l.Append(rec); err != nil {
		s.cfg.Log.Error("round not recorded", "job", p.round.Job, "round", p.round.Round, "err", err)
		return
	}
	if len(rec.Sigs) < len(p.round.Members) {
		s.cfg.Log.Info("round recorded without every member's signature", "job", p.round.Job, "round", p.round.Round,
			"signed", len(rec.Sigs), "members", len(p.round.Members))
	}
}

// flushRounds records the rounds this node signed for which due says
// so, and drops the others' that waited twice RoundWait.
func (s *Service) flushRounds(due func(*pendingRound) bool) {
	var out []*pendingRound
	s.mu.Lock()
	for k, p := range s.rounds {
		switch {
		case p.own && due(p):
			out = append(out, p)
			delete(s.rounds, k)
		case !p.own && time.Since(p.at) > 2*s.cfg.RoundWait:
			delete(s.rounds, k)
		}
	}
	s.mu.Unlock()
	for _, p := range out {
		s.record(p)
	}
}

func (s *Service) loop() {
	t := time.NewTicker(max(s.cfg.RoundWait/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.flushRounds(func(p *pendingRound) bool { return time.Since(p.at) > s.cfg.RoundWait })
		}
	}
}

// truncate bounds a note to MaxNote bytes.
func truncate(s string) string {
	if len(s) > MaxNote {
		return s[:MaxNote]
	}
	return s
}
