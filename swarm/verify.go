package swarm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/kernels"
)

// ErrVerification is wrapped when two servers of a hop returned different
// activations for the same step (ClientConfig.Verify): in the reason a
// peer is banned for it, and in the error of a session that found no
// third server to tell which of the two is wrong.
var ErrVerification = errors.New("results differ")

// DefaultVerifyTolerance is ClientConfig.VerifyTolerance's default: two
// rows agree when max|a-b| <= 0.01 × max(max|a|, max|b|, 1).
//
// Two honest servers running the same kernels on the same inputs return
// the same bytes, except where one ran a step in a batch with other
// sessions' steps and rounded differently: a few f32 ulps (about 5e-6 of
// the row's largest value on the built-in model), which the wire dtype's
// rounding may turn into one f16 ulp (under 2⁻¹¹ of the row's largest
// value, 5e-4) or one bf16 ulp (under 2⁻⁸, 4e-3). 1% leaves room for that
// and for other kernels and accumulation orders on other machines, and
// still catches a server whose weights are perturbed: scaling one matrix
// of one layer by 1.25 moves every one of the built-in model's rows by
// 1.5% or more, most by far more (TestVerifyToleranceMargins measures
// both; on stories260K, 2% or more). A
// swarm that mixes quantizations of the same model (Q8_0 and f32 servers,
// say) needs a larger tolerance; the test logs how far those are apart.
const DefaultVerifyTolerance = 0.01

// differ compares two servers' outputs for the same records from record
// from on, row by row within ClientConfig.VerifyTolerance. It returns the
// index of the first record that differs, or -1, and for that record the
// largest difference and the bound it broke. Outputs of different counts
// or lengths differ at the first record one of them lacks.
func (s *Session) differ(a, b [][]byte, from int) (int, float64, float64) {
	dt := s.cl.cfg.DType
	tol := float64(s.cl.cfg.VerifyTolerance)
	rowBytes := s.dim * activationSize(dt)
	for i := from; i < max(len(a), len(b)); i++ {
		if i >= len(a) || i >= len(b) || len(a[i]) != len(b[i]) || len(a[i])%rowBytes != 0 {
			return i, math.Inf(1), 0
		}
		for off := 0; off < len(a[i]); off += rowBytes {
			x, y := s.decodeRows(a[i][off:off+rowBytes], b[i][off:off+rowBytes])
			if d, bound := rowDiff(x, y, tol); !(d <= bound) {
				return i, d, bound
			}
		}
	}
	return -1, 0, 0
}

// decodeRows decodes one row of each of two outputs into the session's
// scratch buffers.
func (s *Session) decodeRows(a, b []byte) ([]float32, []float32) {
	for i := range s.cmp {
		if len(s.cmp[i]) != s.dim {
			s.cmp[i] = make([]float32, s.dim)
		}
	}
	kernels.Decode(s.cmp[0], s.cl.cfg.DType, a)
	kernels.Decode(s.cmp[1], s.cl.cfg.DType, b)
	return s.cmp[0], s.cmp[1]
}

// rowDiff returns max|x-y| over a row and the bound it must not exceed,
// tol × max(max|x|, max|y|, 1). A NaN anywhere makes the difference NaN,
// which no bound admits.
func rowDiff(x, y []float32, tol float64) (d, bound float64) {
	scale := 1.0
	for i := range x {
		a, b := float64(x[i]), float64(y[i])
		e := math.Abs(a - b)
		if e != e || a != a || b != b {
			return math.NaN(), tol * scale
		}
		d = max(d, e)
		scale = max(scale, math.Abs(a), math.Abs(b))
	}
	return d, tol * scale
}

// spare returns a server for exactly span that is not excluded, not in
// busy (the servers running the span already) and not tried yet: an
// alternative, else Replan's answer if it is a single such hop. Once the
// session is open every spare counts against MaxReroutes.
func (s *Session) spare(ctx context.Context, span Span, tried map[peer.ID]bool, busy []peer.ID) (Hop, error) {
	cfg := &s.cl.cfg
	if s.opened && s.reroutes >= cfg.MaxReroutes {
		return Hop{}, fmt.Errorf("%w: %d servers added already", ErrNoRoute, s.reroutes)
	}
	usable := func(p peer.ID) bool { return !s.excluded(p) && !tried[p] && !slices.Contains(busy, p) }
	take := func(h Hop) Hop {
		tried[h.Peer] = true
		if s.opened {
			s.reroutes++
		}
		return h
	}
	for _, h := range cfg.Alternatives {
		if h.Span == span && usable(h.Peer) {
			return take(h), nil
		}
	}
	if cfg.Replan == nil {
		return Hop{}, fmt.Errorf("%w: no alternative serves %s", ErrNoRoute, span)
	}
	ex := append(slices.Collect(maps.Keys(tried)), busy...)
	chain, err := cfg.Replan(ctx, span, s.exclusions(ex...))
	switch {
	case err != nil:
		return Hop{}, fmt.Errorf("%w: replan: %w", ErrNoRoute, err)
	case len(chain) != 1 || chain[0].Span != span:
		return Hop{}, fmt.Errorf("%w: replan offered %v, not one server of %s", ErrNoRoute, chain, span)
	case !usable(chain[0].Peer):
		return Hop{}, fmt.Errorf("%w: replan offered %s, which is excluded or in use", ErrNoRoute, chain[0].Peer)
	}
	return take(chain[0]), nil
}

// findShadow gives hop k a shadow (with ClientConfig.Verify): a spare
// server of its span, replayed the hop's inputs. What the shadow computed
// is compared with what the primary did; a difference goes to a referee.
// Where no shadow can be found the hop goes on unverified
// (EventUnverified).
func (s *Session) findShadow(ctx context.Context, k int) error {
	if !s.cl.cfg.Verify {
		return nil
	}
	hs := s.hops[k]
	tried := map[peer.ID]bool{}
	for range s.cl.cfg.MaxReroutes + len(s.cl.cfg.Alternatives) + 1 {
		h, err := s.spare(ctx, hs.hop.Span, tried, []peer.ID{hs.hop.Peer})
		if err != nil {
			s.emit(Event{Kind: EventUnverified, Hop: hs.hop, Err: err})
			return nil
		}
		sh, err := s.tryJoin(ctx, h, hs.hist)
		if err != nil {
			return err
		}
		if sh == nil {
			continue
		}
		hs.shadow = sh
		s.emit(Event{Kind: EventShadow, Hop: h, Other: hs.hop.Peer, Replayed: positions(hs.hist)})
		if i, _, _ := s.differ(hs.outs, sh.outs, 0); i >= 0 {
			return s.mismatch(ctx, k)
		}
		return nil
	}
	s.emit(Event{Kind: EventUnverified, Hop: hs.hop, Err: fmt.Errorf("%w: every spare of %s failed", ErrNoRoute, hs.hop.Span)})
	return nil
}

// tryJoin opens a session with h and replays hist to it. A server that
// fails is reported and banned, and tryJoin returns nil, nil (try the
// next); an error is only the context's.
func (s *Session) tryJoin(ctx context.Context, h Hop, hist []record) (*hopState, error) {
	hs, err := s.join(ctx, h, hist)
	if err == nil {
		return hs, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s.hopFailed(h, err)
	s.fault(ctx, h, err)
	return nil, nil
}

// mismatch settles a disagreement between hop k's primary and shadow. It
// replays the hop's inputs to referees, one after another, until one
// agrees with some of the servers asked so far: those and the referee are
// the majority, every other server asked is banned and dropped. The
// first of the majority in the order primary, shadow, referees becomes
// the primary, the next one its shadow. With no referee left the session
// ends with an error wrapping ErrVerification that names both servers.
func (s *Session) mismatch(ctx context.Context, k int) error {
	hs, sh := s.hops[k], s.hops[k].shadow
	span := hs.hop.Span
	i, d, bound := s.differ(hs.outs, sh.outs, 0)
	if i < 0 {
		return nil
	}
	r := hs.hist[i]
	cause := fmt.Errorf("%w: hop %s: %s and %s disagree at step %d (positions %d..%d): max |a-b| %.4g, tolerance %.4g",
		ErrVerification, span, hs.hop.Peer, sh.hop.Peer, r.id, r.start, r.start+r.n-1, d, bound)
	s.emit(Event{Kind: EventMismatch, Hop: hs.hop, Other: sh.hop.Peer, Err: cause})
	voters := []*hopState{hs, sh}
	tried := map[peer.ID]bool{}
	for range s.cl.cfg.MaxReroutes + len(s.cl.cfg.Alternatives) + 1 {
		h, err := s.spare(ctx, span, tried, peersOf(voters))
		if err != nil {
			return fmt.Errorf("%w; no server left to tell which is wrong: %w", cause, err)
		}
		ref, err := s.tryJoin(ctx, h, hs.hist)
		if err != nil {
			return err
		}
		if ref == nil {
			continue
		}
		var agree []*hopState
		for _, v := range voters {
			if i, _, _ := s.differ(v.outs, ref.outs, 0); i < 0 {
				agree = append(agree, v)
			}
		}
		if len(agree) == 0 {
			log.Debug("referee agrees with nobody", "span", span, "referee", h.Peer)
			voters = append(voters, ref)
			continue
		}
		s.verdict(ctx, k, voters, append(agree, ref))
		if nh := s.hops[k]; nh != hs {
			// The hops after this one were fed the old primary's
			// outputs: where the majority's differ, they are fed again.
			return s.refeed(ctx, k+1, nh.outs)
		}
		return nil
	}
	return fmt.Errorf("%w; every referee failed", cause)
}

// verdict bans and drops the voters of hop k that are not in majority
// and puts the majority's first two in place as primary and shadow.
func (s *Session) verdict(ctx context.Context, k int, voters, majority []*hopState) {
	old := s.hops[k]
	names := make([]string, len(majority))
	for i, m := range majority {
		names[i] = m.hop.Peer.String()
	}
	for _, v := range voters {
		if slices.Contains(majority, v) {
			continue
		}
		reason := fmt.Errorf("%w: hop %s: %s disagrees with %s", ErrVerification, v.hop.Span, v.hop.Peer, strings.Join(names, " and "))
		if v.c != nil {
			s.drop(v.c)
			v.c = nil
		}
		s.fault(ctx, v.hop, reason)
	}
	p, sh := majority[0], majority[1]
	for _, extra := range majority[2:] {
		s.closeHop(extra)
	}
	p.hist, p.shadow, sh.shadow = old.hist, sh, nil
	s.hops[k] = p
	if p != old {
		ev := Event{Kind: EventReroute, Hop: p.hop, Replaced: old.hop.Peer}
		if p != old.shadow {
			ev.Replayed = positions(old.hist) // a referee
		}
		s.emit(ev)
	}
}

func peersOf(hs []*hopState) []peer.ID {
	ps := make([]peer.ID, len(hs))
	for i, h := range hs {
		ps[i] = h.hop.Peer
	}
	return ps
}

// refeed makes hop j's cache agree with inputs, the outputs of the hop
// before it as settled by a verdict. Where they differ (beyond the
// tolerance) from what hop j was sent, every kept input is sent again
// under new step ids, so that the server recomputes its cache from
// position 0, and the hops after it are refed in turn.
func (s *Session) refeed(ctx context.Context, j int, inputs [][]byte) error {
	if j >= len(s.hops) {
		return nil
	}
	hs := s.hops[j]
	m := len(hs.hist)
	if m == 0 || len(inputs) < m {
		return nil
	}
	sent := make([][]byte, m)
	for i, r := range hs.hist {
		sent[i] = r.data
	}
	if i, _, _ := s.differ(sent, inputs[:m], 0); i < 0 {
		return nil
	}
	recs := make([]record, m)
	for i, r := range hs.hist {
		recs[i] = record{id: s.nextStep, start: r.start, n: r.n, data: inputs[i]}
		s.nextStep++
	}
	log.Debug("refeeding a hop", "hop", hs.hop, "steps", m)
	return s.advance(ctx, j, recs, true)
}
