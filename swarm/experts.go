package swarm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
)

// A server may hold some routed experts of its layers (ServerConfig.
// Experts). At a layer of experts it computes the attention, the FFN
// norm and the router (every server of a layer holds them), runs the
// chosen experts it holds, and sends the rows that chose others to
// their holders over /mycel/experts/1: one EXPERTS request per holder,
// each row once with the slots of that holder's experts, answered by one
// weighted sum per row (RESULT). The routing and the sum of the outputs
// stay the engine's (model.ExpertRunner); expertCaller only moves rows.
// A holder that fails is avoided for a while and its rows go to the
// next holder of the same experts; a request is stateless, so nothing
// is replayed but the request.

// expertRetry is how long a holder of experts that failed a request is
// left out of the choice.
const expertRetry = 30 * time.Second

// expertAttempts bounds the rounds of one RunExperts: each round sends
// the rows not answered yet to the next holders.
const expertAttempts = 4

// expertCaller is a server's model.ExpertRunner for the experts it does
// not hold.
type expertCaller struct {
	s      *Server
	mu     sync.Mutex
	bad    map[peer.ID]time.Time // holders that failed, and when
	banned map[peer.ID]string    // holders caught answering wrong, and why
}

// holderRank orders the holders of an expert: the fastest by announced
// throughput first, then the least loaded (fewest rows asked of it by
// this server), then by peer ID, so that every choice is repeatable.
func (c *expertCaller) holders(li, e int, recs []ServerRecord, now time.Time) []*ServerRecord {
	self := c.s.h.ID()
	var out []*ServerRecord
	c.mu.Lock()
	for i := range recs {
		r := &recs[i]
		if r.Peer == self || r.State != StateServing || r.Model != c.s.cfg.Model || !r.Valid(now) ||
			li < r.Span.First || li >= r.Span.Last || !r.Experts.Has(e) {
			continue
		}
		if t, ok := c.bad[r.Peer]; ok && now.Sub(t) < expertRetry {
			continue
		}
		if _, ok := c.banned[r.Peer]; ok {
			continue
		}
		out = append(out, r)
	}
	c.mu.Unlock()
	slices.SortStableFunc(out, func(a, b *ServerRecord) int {
		if a.Throughput != b.Throughput {
			return cmp.Compare(b.Throughput, a.Throughput)
		}
		if la, lb := c.s.askedOf(a.Peer), c.s.askedOf(b.Peer); la != lb {
			return cmp.Compare(la, lb)
		}
		return cmp.Compare(a.Peer, b.Peer)
	})
	return out
}

// expertJob is one request to one holder.
type expertJob struct {
	peer *ServerRecord
	rows []int // the rows sent, in order
	req  Experts
	out  []float32 // the answer [len(rows), dim]
	err  error
}

// RunExperts sends the slots of pick (experts this server lacks) to
// their holders and adds their answers to out. The worker holds the
// backend (Server.compute) while it runs a pass; it lends it out while
// waiting, so that the experts this server holds can answer others in
// the meantime (two servers waiting on each other's experts would
// otherwise wait forever).
func (c *expertCaller) RunExperts(li int, x []float32, n, k int, pick []int32, wt []float32, out []float32) error {
	s := c.s
	dim := s.e.Weights().Config.Dim
	left := slices.Clone(pick[:n*k]) // slots not answered yet
	var recs []ServerRecord
	if s.cfg.Holders != nil {
		recs = s.cfg.Holders()
	}
	var errs []error
	for range expertAttempts {
		now := time.Now()
		byPeer := map[peer.ID]*expertJob{}
		var jobs []*expertJob
		for r := range n {
			for j, e := range left[r*k : (r+1)*k] {
				if e < 0 {
					continue
				}
				hs := c.holders(li, int(e), recs, now)
				if len(hs) == 0 {
					return errors.Join(append(errs, fmt.Errorf("no server at hand holds expert %d of layer %d", e, li))...)
				}
				jb := byPeer[hs[0].Peer]
				if jb == nil {
					jb = &expertJob{peer: hs[0], req: Experts{Model: s.cfg.Model, Layer: li, K: k}}
					byPeer[hs[0].Peer] = jb
					jobs = append(jobs, jb)
				}
				if len(jb.rows) == 0 || jb.rows[len(jb.rows)-1] != r {
					jb.rows = append(jb.rows, r)
					for range k {
						jb.req.Pick, jb.req.Weight = append(jb.req.Pick, -1), append(jb.req.Weight, 0)
					}
				}
				i := (len(jb.rows)-1)*k + j
				jb.req.Pick[i], jb.req.Weight[i] = e, wt[r*k+j]
			}
		}
		if len(jobs) == 0 {
			return nil
		}
		checks := c.drawChecks(li, jobs, recs, now)
		s.lend(func() {
			var wg sync.WaitGroup
			for _, jb := range jobs {
				wg.Go(func() { jb.err = c.call(jb, x, dim) })
			}
			for _, ck := range checks {
				wg.Go(func() { ck.second.err = c.call(ck.second, x, dim) })
			}
			wg.Wait()
		})
		for _, ck := range checks {
			c.settle(li, ck, x, dim, recs)
		}
		for _, jb := range jobs {
			if jb.err != nil {
				log.Debug("expert holder failed", "peer", jb.peer.Peer, "layer", li, "err", jb.err)
				errs = append(errs, fmt.Errorf("experts of layer %d at %s: %w", li, jb.peer.Peer, jb.err))
				s.expertFailovers.Add(1)
				c.leaveOut(jb.peer.Peer)
				continue
			}
			for i, r := range jb.rows {
				o, y := out[r*dim:(r+1)*dim], jb.out[i*dim:(i+1)*dim]
				for c := range o {
					o[c] += y[c]
				}
				for j, e := range jb.req.Pick[i*k : (i+1)*k] {
					if e >= 0 {
						left[r*k+j] = -1
					}
				}
			}
		}
	}
	return errors.Join(append(errs, fmt.Errorf("experts of layer %d: no answer after %d rounds", li, expertAttempts))...)
}

// An expert check sends a request, as it goes to its holder, to a second
// holder of every expert it names as well, and compares the answers row
// by row (within DefaultVerifyTolerance, as the client's checks of
// hops). Where they differ a third holder referees: a holder whose answer
// differs from the other two, which agree, is banned by this server for
// its life (its rows go to the others from then on), and the rows take
// the answer the two agree on. Without a third holder, or where all three
// differ, no one can tell which is wrong: they are left out for a while
// and the rows are asked again elsewhere.
// The attention server's own engine, the routing and the sums stay its
// own: what a check covers is the one thing it takes on trust.

// expertCheck is a request and its copy to a second holder.
type expertCheck struct {
	first, second *expertJob
}

// drawChecks picks, with the share ServerConfig.CheckExperts, the jobs to
// check, each with the first holder (in holders' order) of all its
// experts that is not its own.
func (c *expertCaller) drawChecks(li int, jobs []*expertJob, recs []ServerRecord, now time.Time) []*expertCheck {
	share := c.s.cfg.CheckExperts
	if share <= 0 {
		return nil
	}
	var out []*expertCheck
	for _, jb := range jobs {
		if share < 1 && rand.Float64() >= share {
			continue
		}
		h := c.holderOfAll(li, jb.req.Pick, recs, now, jb.peer.Peer)
		if h == nil {
			continue
		}
		req := jb.req
		req.Pick, req.Weight = slices.Clone(jb.req.Pick), slices.Clone(jb.req.Weight)
		out = append(out, &expertCheck{first: jb, second: &expertJob{peer: h, rows: jb.rows, req: req}})
	}
	return out
}

// holderOfAll is the first holder, in holders' order, of every expert
// pick names, other than those of not; nil when there is none.
func (c *expertCaller) holderOfAll(li int, pick []int32, recs []ServerRecord, now time.Time, not ...peer.ID) *ServerRecord {
	first := slices.IndexFunc(pick, func(e int32) bool { return e >= 0 })
	if first < 0 {
		return nil
	}
	for _, h := range c.holders(li, int(pick[first]), recs, now) {
		if slices.Contains(not, h.Peer) {
			continue
		}
		if !slices.ContainsFunc(pick, func(e int32) bool { return e >= 0 && !h.Experts.Has(int(e)) }) {
			return h
		}
	}
	return nil
}

// settle compares a check's two answers, with a referee where they
// differ, and leaves in ck.first the answer the rows take (or the error
// that sends them elsewhere).
func (c *expertCaller) settle(li int, ck *expertCheck, x []float32, dim int, recs []ServerRecord) {
	s, a, b := c.s, ck.first, ck.second
	if b.err != nil {
		// The second holder failed: the check is lost, the first answer
		// stands.
		log.Debug("expert holder failed a check", "peer", b.peer.Peer, "layer", li, "err", b.err)
		c.leaveOut(b.peer.Peer)
		s.expertFailovers.Add(1)
		return
	}
	if a.err != nil {
		// The first failed: the second's answer serves the rows.
		log.Debug("expert holder failed; its check's answer taken", "peer", a.peer.Peer, "layer", li, "err", a.err)
		c.leaveOut(a.peer.Peer)
		s.expertFailovers.Add(1)
		a.out, a.err = b.out, nil
		return
	}
	s.expertChecks.Add(1)
	if agree(a.out, b.out, dim) {
		return
	}
	ref := c.holderOfAll(li, a.req.Pick, recs, time.Now(), a.peer.Peer, b.peer.Peer)
	var r *expertJob
	if ref != nil {
		req := a.req
		req.Pick, req.Weight = slices.Clone(a.req.Pick), slices.Clone(a.req.Weight)
		r = &expertJob{peer: ref, rows: a.rows, req: req}
		s.lend(func() { r.err = c.call(r, x, dim) })
	}
	if r == nil || r.err != nil {
		c.leaveOut(a.peer.Peer)
		c.leaveOut(b.peer.Peer)
		a.err = fmt.Errorf("%w: %s and %s answered experts of layer %d differently, and no third holder told which is wrong", ErrVerification, a.peer.Peer, b.peer.Peer, li)
		return
	}
	// Only a holder the other two outvote is banned: where the referee
	// agrees with neither, any of the three may be the one that lies.
	switch okA, okB := agree(r.out, a.out, dim), agree(r.out, b.out, dim); {
	case okA && !okB:
		c.ban(b.peer.Peer, fmt.Sprintf("answered experts of layer %d other than %s and %s", li, a.peer.Peer, r.peer.Peer))
	case okB && !okA:
		c.ban(a.peer.Peer, fmt.Sprintf("answered experts of layer %d other than %s and %s", li, b.peer.Peer, r.peer.Peer))
		a.out = r.out
	case !okA && !okB:
		for _, p := range []peer.ID{a.peer.Peer, b.peer.Peer, r.peer.Peer} {
			c.leaveOut(p)
		}
		a.err = fmt.Errorf("%w: %s, %s and %s answered experts of layer %d three ways", ErrVerification, a.peer.Peer, b.peer.Peer, r.peer.Peer, li)
	}
}

// agree says whether two answers of rows of dim values agree row by row
// within DefaultVerifyTolerance.
func agree(a, b []float32, dim int) bool {
	if len(a) != len(b) {
		return false
	}
	for off := 0; off < len(a); off += dim {
		if d, bound := rowDiff(a[off:off+dim], b[off:off+dim], DefaultVerifyTolerance); !(d <= bound) {
			return false
		}
	}
	return true
}

// leaveOut leaves holder p out of the choice for expertRetry.
func (c *expertCaller) leaveOut(p peer.ID) {
	c.mu.Lock()
	c.bad[p] = time.Now()
	c.mu.Unlock()
}

// ban leaves holder p out of the choice for good.
func (c *expertCaller) ban(p peer.ID, why string) {
	log.Warn("holder of experts answered wrong; banned", "peer", p, "why", why)
	c.mu.Lock()
	c.banned[p] = why
	c.mu.Unlock()
	c.s.expertLiars.Add(1)
}

// BannedHolders are the holders of experts this server caught answering
// wrong, and why.
func (s *Server) BannedHolders() map[peer.ID]string {
	if s.caller == nil {
		return nil
	}
	s.caller.mu.Lock()
	defer s.caller.mu.Unlock()
	return maps.Clone(s.caller.banned)
}

// call sends one request on a stream of its own and reads the answer,
// each within the server's IOTimeout.
func (c *expertCaller) call(jb *expertJob, x []float32, dim int) error {
	s := c.s
	dt := s.cfg.ExpertDType
	rows := make([]float32, len(jb.rows)*dim)
	for i, r := range jb.rows {
		copy(rows[i*dim:(i+1)*dim], x[r*dim:(r+1)*dim])
	}
	jb.req.ID = s.nextCall.Add(1)
	jb.req.Tensor = Tensor{DType: dt, Shape: []int{len(jb.rows), dim}, Data: kernels.Encode(nil, dt, rows)}
	s.asked(jb.peer.Peer, len(jb.rows))
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.IOTimeout)
	defer cancel()
	if len(jb.peer.Addrs) > 0 {
		s.h.Peerstore().AddAddrs(jb.peer.Peer, jb.peer.Addrs, peerstore.TempAddrTTL)
	}
	st, err := s.h.NewStream(network.WithAllowLimitedConn(ctx, "experts"), jb.peer.Peer, p2p.ExpertsProtocol)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	cn := newConn(st)
	defer cn.reset()
	if err := cn.send(&jb.req, s.cfg.IOTimeout); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	m, err := cn.recv(max(MaxControlFrame, tensorFrameMax(len(jb.rows), dim, dt)), s.cfg.IOTimeout, s.cfg.IOTimeout)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	switch m := m.(type) {
	case *Result:
		t := &m.Tensor
		if m.ID != jb.req.ID || t.DType != dt || len(t.Shape) != 2 || t.Shape[0] != len(jb.rows) || t.Shape[1] != dim {
			return fmt.Errorf("%w: answer %d of %s %v to request %d of [%d %d]", ErrProtocol, m.ID, t.DType, t.Shape, jb.req.ID, len(jb.rows), dim)
		}
		jb.out = make([]float32, len(jb.rows)*dim)
		kernels.Decode(jb.out, t.DType, t.Data)
		cn.finish()
		return nil
	case *Error:
		return &RemoteError{Code: m.Code, Step: m.Step, Message: m.Message}
	}
	return fmt.Errorf("%w: %s in answer to EXPERTS", ErrProtocol, m.Type())
}

// ExpertLoad is, for each layer of the span and each expert, how many
// rows this server ran for others (its experts' load as asked of it),
// [layer-Span.First][expert]. Servers choosing experts to hold count it
// beside the throughput announced.
func (s *Server) ExpertLoad() [][]int64 {
	c := &s.e.Weights().Config
	out := make([][]int64, s.cfg.Span.Len())
	for i := range out {
		out[i] = make([]int64, c.Experts)
		for e := range out[i] {
			out[i][e] = s.load[i*c.Experts+e].Load()
		}
	}
	return out
}

// asked counts n rows sent to holder p; askedOf reads it.
func (s *Server) asked(p peer.ID, n int) {
	s.askMu.Lock()
	s.askedRows[p] += int64(n)
	s.askMu.Unlock()
}

func (s *Server) askedOf(p peer.ID) int64 {
	s.askMu.Lock()
	defer s.askMu.Unlock()
	return s.askedRows[p]
}

// compute runs f holding the backend, which the worker's passes and the
// answers to EXPERTS share (a backend serves one goroutine at a time).
func (s *Server) compute(f func()) {
	s.beMu.Lock()
	defer s.beMu.Unlock()
	f()
}

// lend runs f without the backend, from within compute: a pass waiting
// for experts elsewhere lets this server's experts answer meanwhile.
func (s *Server) lend(f func()) {
	s.beMu.Unlock()
	defer s.beMu.Lock()
	f()
}

// handleExperts answers EXPERTS requests on one stream, one after the
// other, until the stream ends or stays idle for IdleTimeout.
func (s *Server) handleExperts(st network.Stream) {
	if !s.track(st) {
		return
	}
	defer s.untrack(st, nil)
	c := newConn(st)
	for {
		m, err := c.recv(s.expertFrameMax(), s.cfg.IdleTimeout, s.cfg.IOTimeout)
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				s.refuse(c, CodeBadMessage, 0, "%v", err)
				return
			}
			c.reset()
			if !errors.Is(err, io.EOF) {
				log.Debug("experts stream ended", "peer", st.Conn().RemotePeer(), "err", err)
			}
			return
		}
		x, ok := m.(*Experts)
		if !ok {
			s.refuse(c, CodeBadMessage, 0, "expected EXPERTS, got %s", m.Type())
			return
		}
		res, code, err := s.runExperts(x)
		if err != nil {
			if s.reply(c, code, x.ID, "%v", err) != nil {
				return
			}
			continue
		}
		if err := c.send(res, s.cfg.IOTimeout); err != nil {
			c.reset()
			return
		}
	}
}

// expertFrameMax bounds an EXPERTS frame to this server: its most rows
// (a prompt's step or a batch) in f32, with their slots.
func (s *Server) expertFrameMax() int {
	c := &s.e.Weights().Config
	rows := max(s.cfg.MaxStep, s.cfg.MaxBatch)
	return MaxModelID + 64 + tensorFrameMax(rows, c.Dim, kernels.F32) + rows*c.ExpertsUsed*(4+5)
}

// checkExperts says what is wrong with an EXPERTS request to a server of
// span holding set of the experts of w, and the code to answer with.
func checkExperts(x *Experts, modelID string, span Span, set model.ExpertSet, w *model.Weights) (ErrorCode, error) {
	c := &w.Config
	t := &x.Tensor
	switch {
	case x.Model != modelID:
		return CodeUnknownModel, fmt.Errorf("model %q not served here (serving %q)", x.Model, modelID)
	case x.Layer < span.First || x.Layer >= span.Last:
		return CodeBadSpan, fmt.Errorf("layer %d not within the layers served, %s", x.Layer, span)
	case w.Layers[x.Layer] == nil || w.Layers[x.Layer].Experts == nil:
		return CodeBadSpan, fmt.Errorf("layer %d has no routed experts", x.Layer)
	case x.K > c.ExpertsUsed:
		return CodeBadStep, fmt.Errorf("%d slots a row, the model routes a row to %d", x.K, c.ExpertsUsed)
	case activationSize(t.DType) == 0:
		return CodeBadStep, fmt.Errorf("rows of %s", t.DType)
	case len(t.Shape) != 2 || t.Shape[1] != c.Dim:
		return CodeBadStep, fmt.Errorf("rows of shape %v, want [n %d]", t.Shape, c.Dim)
	}
	xs := w.Layers[x.Layer].Experts
	for _, e := range x.Pick {
		if e >= 0 && (!set.Has(int(e)) || !xs.Holds(int(e))) {
			return CodeBadStep, fmt.Errorf("expert %d of layer %d not held here (holding %v)", e, x.Layer, set)
		}
	}
	return 0, nil
}

// runExperts checks and runs one request.
func (s *Server) runExperts(x *Experts) (*Result, ErrorCode, error) {
	w := s.e.Weights()
	if code, err := checkExperts(x, s.cfg.Model, s.cfg.Span, s.cfg.Experts, w); err != nil {
		return nil, code, err
	}
	dim, ne := w.Config.Dim, w.Config.Experts
	n := x.Tensor.Shape[0]
	in, out := make([]float32, n*dim), make([]float32, n*dim)
	kernels.Decode(in, x.Tensor.DType, x.Tensor.Data)
	var err error
	s.compute(func() { err = s.xe.RunExperts(x.Layer, in, n, x.K, x.Pick, x.Weight, out) })
	if err != nil {
		return nil, CodeInternal, err
	}
	if s.answered != nil {
		s.answered(out)
	}
	for _, e := range x.Pick {
		if e >= 0 {
			s.load[(x.Layer-s.cfg.Span.First)*ne+int(e)].Add(1)
		}
	}
	return &Result{ID: x.ID, Tensor: Tensor{DType: x.Tensor.DType, Shape: []int{n, dim}, Data: kernels.Encode(nil, x.Tensor.DType, out)}}, 0, nil
}

// serverExperts is the part of a Server about experts.
type serverExperts struct {
	xe       *model.Engine // answers EXPERTS (shares the weights)
	caller   *expertCaller // nil: the weights hold every expert
	beMu     sync.Mutex    // the backend (compute, lend)
	load     []atomic.Int64
	nextCall atomic.Uint64
	// requests to holders of experts that failed (and went to others)
	expertFailovers atomic.Int64
	expertChecks    atomic.Int64 // requests checked at a second holder
	expertLiars     atomic.Int64 // holders banned for a wrong answer
	askMu           sync.Mutex
	askedRows       map[peer.ID]int64
	routes          *routeLoad // the router's picks (nil: a dense model)
	// answered, if set, sees (and may change) every answer to EXPERTS
	// before it is sent: tests make liars with it.
	answered func(out []float32)
}

// initExperts sets up what a server of experts needs: the engine that
// answers EXPERTS, the caller for the experts it lacks, the counters.
func (s *Server) initExperts(w *model.Weights, be kernels.Backend) []model.Option {
	c := &w.Config
	if c.Experts == 0 {
		return nil
	}
	s.xe = model.NewEngine(w, be)
	s.load = make([]atomic.Int64, s.cfg.Span.Len()*c.Experts)
	s.askedRows = map[peer.ID]int64{}
	s.routes = newRouteLoad(w, s.cfg.Span)
	opts := []model.Option{model.Routed(s.routes.add)}
	if lacksExperts(w, s.cfg.Span) {
		s.caller = &expertCaller{s: s, bad: map[peer.ID]time.Time{}, banned: map[peer.ID]string{}}
		opts = append(opts, model.RemoteExperts(s.caller))
	}
	return opts
}

// The router's picks a server counts and announces: over the last
// routeBuckets buckets of routeBucket each (a minute).
const (
	routeBucket  = 10 * time.Second
	routeBuckets = 6
)

// routeLoad counts the router's picks per (layer, expert) of a span over
// a sliding window of buckets.
type routeLoad struct {
	first, experts int
	layers         int // the span's layers of experts
	mu             sync.Mutex
	epoch          [routeBuckets]int64   // the bucket each holds (time / routeBucket)
	count          [routeBuckets][]int64 // [layer-first][expert]
}

func newRouteLoad(w *model.Weights, span Span) *routeLoad {
	l := &routeLoad{first: span.First, experts: w.Config.Experts}
	for _, ly := range w.Layers[span.First:span.Last] {
		if ly != nil && ly.Experts != nil {
			l.layers++
		}
	}
	for b := range l.count {
		l.count[b] = make([]int64, span.Len()*l.experts)
	}
	return l
}

// add counts the picks of one pass at layer li (model.Routed).
func (l *routeLoad) add(li int, pick []int32) {
	ep := time.Now().UnixNano() / int64(routeBucket)
	b := ep % routeBuckets
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch[b] != ep {
		clear(l.count[b])
		l.epoch[b] = ep
	}
	i := (li - l.first) * l.experts
	if i < 0 || i >= len(l.count[b]) {
		return
	}
	row := l.count[b][i : i+l.experts]
	for _, e := range pick {
		if e >= 0 && int(e) < l.experts {
			row[e]++
		}
	}
}

// window is the picks of the window per [layer-first][expert].
func (l *routeLoad) window() [][]int64 {
	ep := time.Now().UnixNano() / int64(routeBucket)
	out := make([][]int64, len(l.count[0])/max(l.experts, 1))
	for i := range out {
		out[i] = make([]int64, l.experts)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for b := range l.count {
		if ep-l.epoch[b] >= routeBuckets {
			continue
		}
		for i, n := range l.count[b] {
			out[i/l.experts][i%l.experts] += n
		}
	}
	return out
}

// announced is the record's ExpertLoad: each expert's picks over the
// window (a minute) averaged over the span's layers of experts, as
// LoadBytes; nil when nothing was routed.
func (l *routeLoad) announced() []byte {
	if l.layers == 0 {
		return nil
	}
	out := make([]byte, l.experts)
	some := false
	sums := make([]int64, l.experts)
	for _, layer := range l.window() {
		for e, n := range layer {
			sums[e] += n
		}
	}
	for e, n := range sums {
		out[e] = LoadByte(float64(n) / float64(l.layers))
		some = some || out[e] != 0
	}
	if !some {
		return nil
	}
	return out
}

// LoadByte writes a load (picks a minute, ≥ 0) as one byte on a log
// scale, eight steps a doubling: 0 is none, 1 is at most 1, and b stands
// for 2^((b-1)/8) (LoadOf); the largest, 255, for about 3.6e9 and more.
func LoadByte(v float64) byte {
	switch {
	case !(v > 0):
		return 0
	case v <= 1:
		return 1
	}
	return byte(min(255, 1+math.Round(8*math.Log2(v))))
}

// LoadOf reads a LoadByte.
func LoadOf(b byte) float64 {
	if b == 0 {
		return 0
	}
	return math.Exp2(float64(b-1) / 8)
}

// RouterLoad is, for each layer of the span and each expert, how often
// this server's router chose the expert over the last minute
// [layer-Span.First][expert] (nil for a dense model). The record
// announces it per expert (ServerRecord.ExpertLoad).
func (s *Server) RouterLoad() [][]int64 {
	if s.routes == nil {
		return nil
	}
	return s.routes.window()
}

// lacksExperts says whether a layer of span in w lacks a routed expert.
func lacksExperts(w *model.Weights, span Span) bool {
	for _, l := range w.Layers[span.First:span.Last] {
		if l != nil && l.Experts != nil {
			for e := range w.Config.Experts {
				if !l.Experts.Holds(e) {
					return true
				}
			}
		}
	}
	return false
}
