package collab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
)

// A DiLoCo member's contribution depends on its private inner state at
// the round's start: its AdamW moments and step count and its
// error-feedback residual (the parameters, the data cursor and its share
// of the batches are the group's). Every member commits to that state at
// every round's start: it stores it as a checkpoint (WriteInnerCheckpoint)
// and announces its CID in its record, and each member notes the CIDs
// the others announced before it sends its own contribution. In the
// averaging each member keeps the parts of the others' contributions it
// reduces, as it decoded them. Which members are checked is drawn only
// after the round, from a seed that holds the round's result (the
// parameters after the outer step, which no member knows before all have
// sent): a member cannot know while it trains whether its round will be
// checked. In the next round each verifier gives up its own share,
// fetches the committed inner state of the member it checks, replays the
// member's inner steps from the round's starting parameters and compares
// the result with the part it kept. A member found different, or whose
// committed state is missing or damaged, has its next contribution
// refused through the averaging's check, and the group bans it as it
// bans any refused one. A member gone by then is not checked.

// maxInnerExtra bounds the bytes of an inner state beyond its tensors
// (the checkpoint's header and framing).
const maxInnerExtra = train.MaxCheckpointHeader + 64

// verifyPlan picks the checks of a round that ended with the parameters
// state: verifier index → index of the member it checks. Every member
// computes the same plan from the job, round, attempt, state and members;
// only contributors (the members whose work is in the average) are
// checked. The members are taken in an order drawn from these; a
// contributor is checked with probability share by the next one in that
// order, which gives up its share of the next round to replay it. So a
// member checks at most one other, is not checked while it checks, and
// at most half of the members (rounded down) are checked in a round.
func verifyPlan(job string, round, attempt int, state [32]byte, members []peer.ID, contributors func(int) bool, share float64) map[int]int {
	plan := map[int]int{}
	if share <= 0 || len(members) < 2 {
		return plan
	}
	rng := planRand("mycel-diloco-verify", job, round, attempt, state, members)
	order := rng.Perm(len(members))
	for k := 0; k+1 < len(order); k++ {
		if contributors(order[k]) && rng.Float64() < share {
			plan[order[k+1]] = order[k]
			k++
		}
	}
	return plan
}

// planRand is the random source of a plan: seeded by a hash of what every
// member of the round knows alike, tag first.
func planRand(tag, job string, round, attempt int, state [32]byte, members []peer.ID) *rand.Rand {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00", tag, job, round, attempt)
	h.Write(state[:])
	for _, p := range members {
		h.Write([]byte(p))
	}
	seed := h.Sum(nil)
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed), binary.LittleEndian.Uint64(seed[8:])))
}

// closingPlan picks the checks of the job's last round: like verifyPlan,
// from the round's result, but in a ring: the members in an order drawn
// from the seed, each contributor checked with probability share by the
// next one (the last by the first), since no one gives up a round for
// it. With share 1 every contributor is checked.
func closingPlan(job string, round, attempt int, state [32]byte, members []peer.ID, contributors func(int) bool, share float64) map[int]int {
	plan := map[int]int{}
	if share <= 0 || len(members) < 2 {
		return plan
	}
	rng := planRand("mycel-diloco-verify-last", job, round, attempt, state, members)
	order := rng.Perm(len(members))
	for k, c := range order {
		if contributors(c) && rng.Float64() < share {
			plan[order[(k+1)%len(order)]] = c
		}
	}
	return plan
}

// pastRound is what a member keeps of the last averaging it finished,
// to check it in the next round.
type pastRound struct {
	round, attempt int
	// members are the averaging's (the plan's and kept's indices); w the
	// work it averaged, as this member saw it.
	members []peer.ID
	w       *work
	kept    *keptParts
	plan    map[int]int
	checked bool // the check has run (once, whatever the tries of the round after)
}

// keptParts are the parts of the others' contributions a member reduced
// in a round, as it decoded them.
type keptParts struct {
	mu    sync.Mutex
	parts map[int][]keptPart // by member index
}

type keptPart struct {
	offset int
	values []float32
}

// keep records member's contribution to the part at offset.
func (k *keptParts) keep(member, offset int, values []float32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.parts == nil {
		k.parts = map[int][]keptPart{}
	}
	for i, p := range k.parts[member] {
		if p.offset == offset {
			k.parts[member][i].values = slices.Clone(values)
			return
		}
	}
	k.parts[member] = append(k.parts[member], keptPart{offset, slices.Clone(values)})
}

// of is what was kept of member's contribution.
func (k *keptParts) of(member int) []keptPart {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.parts[member]
}

// innerStates is where the members keep their inner states.
func (g *Group) innerStates() States {
	if g.cfg.Inner != nil {
		return g.cfg.Inner
	}
	return g.states
}

// residualOrZero is the error-feedback residual (zeros before the first
// quantised round, and with float32 averaging).
func (g *Group) residualOrZero() []float32 {
	if g.residual != nil {
		return g.residual
	}
	return make([]float32, train.VectorLen(g.t.Params))
}

// innerOffer is a member's inner state on its way into the store and
// into its member record.
type innerOffer struct {
	done chan struct{}
	err  error
}

// offerInner writes this member's inner state at the start of the round;
// storing it (hashing and writing: about a full inner step's time for the
// full model) and announcing its CID for the current round and attempt
// run in the background, beside the round's inner steps.
func (g *Group) offerInner(ctx context.Context) (*innerOffer, error) {
	var b bytes.Buffer
	b.Grow(g.innerSize)
	if err := g.t.WriteInnerCheckpoint(&b, g.residualOrZero()); err != nil {
		return nil, fmt.Errorf("collab: inner state of round %d: %w", g.round, err)
	}
	data := b.Bytes()
	g.innerSize = len(data)
	if g.innerOffered != nil {
		data = g.innerOffered(g.round, data)
	}
	o := &innerOffer{done: make(chan struct{})}
	states, round, attempt := g.innerStates(), g.round, g.attempt
	go func() {
		defer close(o.done)
		c, err := states.Put(ctx, data)
		if err != nil {
			o.err = fmt.Errorf("collab: inner state of round %d: %w", round, err)
			return
		}
		g.update(ctx, func(m *Member) { m.Inner, m.InnerRound, m.InnerAttempt = c.String(), round, attempt })
	}()
	return o, nil
}

// wait waits until the state is stored and announced (or failed to be).
func (o *innerOffer) wait() error {
	<-o.done
	return o.err
}

// commits waits (at most a quarter of the round's timeout) for the
// records of the round's other members to announce their inner states
// for the current round and attempt, and returns the CIDs announced; a
// member whose record announces none in time, or one that is not a CID,
// is left out (and fails a check of this round).
func (g *Group) commits(ctx context.Context, members []peer.ID) map[peer.ID]cid.Cid {
	out := map[peer.ID]cid.Cid{}
	g.awaitRecords(ctx, g.cfg.RoundTimeout/4, func(recs []Member) bool {
		for _, m := range recs {
			if m.Peer != g.self && m.Inner != "" && m.InnerRound == g.round && m.InnerAttempt == g.attempt && slices.Contains(members, m.Peer) {
				if c, err := cid.Decode(m.Inner); err == nil {
					out[m.Peer] = c
				}
			}
		}
		return len(out) >= len(members)-1
	})
	return out
}

// awaitRecords calls scan with the job's member records as this member
// knows them, and again whenever they change, until scan returns true,
// timeout passes or ctx ends.
func (g *Group) awaitRecords(ctx context.Context, timeout time.Duration, scan func([]Member) bool) {
	watch, stop, err := g.dir.Watch(g.cfg.Job)
	if err != nil {
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !scan(g.dir.Known(g.cfg.Job)) {
		select {
		case <-ctx.Done():
			return
		case <-watch:
		case <-tick.C:
		}
	}
}

// innerOf is the inner state p committed to at the start of round
// (whichever try of it: a try that fails leaves the member as it began,
// so every try commits to the same state), as the work pending holds it
// or, waiting at most a quarter of the round's timeout, as p's record
// announces it; false when p announced none.
func (g *Group) innerOf(ctx context.Context, p peer.ID, round int) (cid.Cid, bool) {
	if w := g.pending; w != nil && w.round == round {
		if c, ok := w.commits[p]; ok {
			return c, true
		}
	}
	var c cid.Cid
	g.awaitRecords(ctx, g.cfg.RoundTimeout/4, func(recs []Member) bool {
		for _, m := range recs {
			if m.Peer == p && m.Inner != "" && m.InnerRound == round {
				var err error
				c, err = cid.Decode(m.Inner)
				return err == nil
			}
		}
		return false
	})
	return c, c.Defined()
}

// nextFollows checks the inner state member p committed to at the start
// of the round after w against this member's replay of p's work in w,
// which has just run: AdamW's moments carry over from one round to the
// next, so p's next state must hold those the replay left (or none, as
// after starting again from a checkpoint). Without this a member could
// train every round from moments of its choosing, which steer its change
// where it likes, and commit to them: the replay of that round would
// agree. It returns why p's state does not follow ("" when it does, or
// when this member cannot tell: no round follows w, p committed to none,
// or this member is stopping).
func (g *Group) nextFollows(ctx context.Context, w *work, p peer.ID) string {
	if w.step+w.steps >= g.t.Job.Steps {
		return ""
	}
	round := w.round + 1
	c, ok := g.innerOf(ctx, p, round)
	if !ok {
		return ""
	}
	fetch, cancel := context.WithTimeout(ctx, g.cfg.RoundTimeout/2)
	defer cancel()
	data, err := g.innerStates().Get(fetch, c, []peer.ID{p})
	if err != nil && ctx.Err() != nil {
		return ""
	}
	if err == nil {
		err = g.innerFits(data)
	}
	var h *train.CheckpointHeader
	var tensors [][4][]float32
	if err == nil {
		h, tensors, err = train.ReadCheckpoint(data)
	}
	if err == nil && (!h.Residual || len(tensors) != len(g.t.Params)) {
		err = fmt.Errorf("not a member's inner state of %d tensors", len(g.t.Params))
	}
	if err != nil {
		return fmt.Sprintf("its inner state of round %d %s: %v", round, c, err)
	}
	if h.AdamStep == 0 {
		return ""
	}
	opt := g.t.Opt
	if h.AdamStep != opt.Step || opt.M == nil {
		return fmt.Sprintf("its inner state of round %d stands at AdamW step %d; its replayed work of round %d left step %d", round, h.AdamStep, w.round, opt.Step)
	}
	var dm, nm, dv, nv float64
	for i, ts := range tensors {
		dm, nm = sqDiff(dm, nm, ts[1], opt.M[i])
		dv, nv = sqDiff(dv, nv, ts[2], opt.V[i])
	}
	for _, d := range []struct {
		name       string
		diff, norm float64
	}{{"first", dm, nm}, {"second", dv, nv}} {
		if math.Sqrt(d.diff) > verifyTolerance*math.Sqrt(d.norm)+1e-12 {
			return fmt.Sprintf("its inner state of round %d holds AdamW %s moments %.3g (relative) from those its replayed work of round %d left", round, d.name, math.Sqrt(d.diff/max(d.norm, 1e-300)), w.round)
		}
	}
	return ""
}

// sqDiff adds to diff the squared distance of got from want, and to
// norm want's squared norm.
func sqDiff(diff, norm float64, got, want []float32) (float64, float64) {
	for k := range want {
		x := float64(got[k]) - float64(want[k])
		diff += x * x
		norm += float64(want[k]) * float64(want[k])
	}
	return diff, norm
}

// innerFits says whether data is no larger than an inner state of this
// job's parameters may be.
func (g *Group) innerFits(data []byte) error {
	if limit := 16*train.VectorLen(g.t.Params) + maxInnerExtra; len(data) > limit {
		return fmt.Errorf("%d bytes, at most %d for this job's parameters", len(data), limit)
	}
	return nil
}

// takeInner takes a member's inner state into this member's trainer and
// checks that it stands where the round started: the step, the data
// cursor and the parameters (hashed: state). It returns the state's
// residual.
func (g *Group) takeInner(data []byte, step int, cursor train.Cursor, state [32]byte) ([]float32, error) {
	return g.takeInnerFrom(data, step, cursor, func(h [32]byte) bool { return h == state }, state)
}

// takeInnerFrom is takeInner with the parameters' check given: start
// says whether parameters of that hash may start the round (state is
// the one the message names).
func (g *Group) takeInnerFrom(data []byte, step int, cursor train.Cursor, start func([32]byte) bool, state [32]byte) ([]float32, error) {
	if err := g.innerFits(data); err != nil {
		return nil, fmt.Errorf("its inner state: %w", err)
	}
	residual, err := g.t.RestoreInner(data)
	if err != nil {
		return nil, fmt.Errorf("its inner state: %w", err)
	}
	if h := train.Hash(g.t.Params); g.t.Step != step || !g.t.Cursor.Same(cursor) || !start(h) {
		return nil, fmt.Errorf("its inner state stands at step %d, cursor %+v, parameters %x; the round started at step %d, cursor %+v, parameters %x",
			g.t.Step, g.t.Cursor, h[:6], step, cursor, state[:6])
	}
	return residual, nil
}

// checkPast checks member j of the last averaging, as the plan drawn
// after it asks: it fetches the inner state j committed to for the round
// whose work that averaging carried, replays j's inner steps from it on
// j's shares and compares the contribution that gives with the parts of
// j's contribution this member kept. It returns why j is found wrong (""
// when it is right, or when this member cannot tell: it was not a member
// of the round that trained the work). The trainer is left where the
// current round starts (parameters, cursor, step, AdamW state).
func (g *Group) checkPast(ctx context.Context, past *pastRound, j int) string {
	p, w := past.members[j], past.w
	jw := slices.Index(w.members, p)
	from, fromStep, adam := g.t.Cursor, g.t.Step, *g.t.Opt
	defer func() {
		_ = train.Unflatten(g.t.Params, train.Values, g.outer.Start)
		g.t.Seek(from)
		g.t.Step, *g.t.Opt = fromStep, adam
	}()
	kept := past.kept.of(j)
	if len(kept) == 0 {
		// Nothing of its contribution reached this member: no part to
		// compare (its contribution was dropped, or this member reduced
		// an empty part).
		return ""
	}
	c, ok := w.commits[p]
	if !ok {
		return fmt.Sprintf("recomputation of round %d failed: it announced no inner state before the round's averaging", w.round)
	}
	fetch, cancel := context.WithTimeout(ctx, g.cfg.RoundTimeout/2)
	defer cancel()
	data, err := g.innerStates().Get(fetch, c, []peer.ID{p})
	if err != nil && ctx.Err() != nil {
		// This member is stopping: that says nothing of the other.
		return ""
	}
	if err != nil {
		return fmt.Sprintf("recomputation of round %d failed: its inner state %s: %v", w.round, c, err)
	}
	// Without Overlap a round starts from the group's parameters; with
	// it, from there or where the member's change of the round before
	// would take them (checked below on the parts of it kept).
	var sameStart func([32]byte) bool
	if !g.cfg.Overlap {
		sameStart = func(h [32]byte) bool { return h == w.state }
	} else {
		sameStart = func([32]byte) bool { return true }
	}
	residual, err := g.takeInnerFrom(data, w.step, w.cursor, sameStart, w.state)
	if err != nil {
		return fmt.Sprintf("recomputation of round %d failed: %v", w.round, err)
	}
	start := train.Flatten(g.t.Params, train.Values, nil)
	if g.cfg.Overlap && train.Hash(g.t.Params) != w.state {
		if why := g.startFollows(w, p, start); why != "" {
			return fmt.Sprintf("recomputation of round %d failed: %s", w.round, why)
		}
	}
	if why := g.residualBounded(w, p, residual); why != "" {
		return fmt.Sprintf("recomputation of round %d failed: %s", w.round, why)
	}
	tokens, lossSum, _, err := g.innerSteps(jw, len(w.members), w.steps)
	if err != nil {
		return fmt.Sprintf("recomputation of round %d failed: %v", w.round, err)
	}
	want, _, _ := g.contribution(nil, &train.Outer{Start: start}, residual, tokens, lossSum)
	for _, k := range kept {
		if k.offset+len(k.values) > len(want) {
			return fmt.Sprintf("recomputation of round %d failed: a part of %d values at %d, the vector holds %d", w.round, len(k.values), k.offset, len(want))
		}
		if why := compareWork(k.values, want[k.offset:k.offset+len(k.values)]); why != "" {
			return fmt.Sprintf("%s (round %d)", why, w.round)
		}
	}
	if why := g.nextFollows(ctx, w, p); why != "" {
		return fmt.Sprintf("recomputation of round %d failed: %s", w.round, why)
	}
	return ""
}

// startFollows says why start, where member p's inner state of w's
// round starts, is not where the outer step from the round's parameters
// takes them with the change p sent for the round before ("" when it
// is), on the parts of that change this member kept in the averaging
// during w's round. With nothing of it kept there is nothing to compare.
func (g *Group) startFollows(w *work, p peer.ID, start []float32) string {
	j := slices.Index(w.prevMembers, p)
	if j < 0 {
		return ""
	}
	for _, k := range w.prevKept.of(j) {
		end := min(k.offset+len(k.values), len(start))
		if k.offset >= end {
			continue
		}
		o := &train.Outer{LR: g.outer.LR, Momentum: g.outer.Momentum, Start: w.start[k.offset:end], V: w.v[k.offset:end]}
		ahead := o.Ahead(k.values[:end-k.offset], nil)
		// Compared as changes from the round's parameters.
		got := make([]float32, len(ahead))
		for i := range ahead {
			ahead[i] -= w.start[k.offset+i]
			got[i] = start[k.offset+i] - w.start[k.offset+i]
		}
		if why := compareWork(got, ahead); why != "" {
			return fmt.Sprintf("its inner state does not start where its change of the round before takes the parameters (values %d to %d): %s", k.offset, end, why)
		}
	}
	return ""
}

// residualBounded says why residual, the error-feedback residual member
// p committed to at w's start, is not what rounding its contribution of
// the round before can have left ("" when it is): within half the
// quantization's spacing of each block of that contribution, on the
// parts of it this member kept. A residual is otherwise free: the replay
// takes it as committed, so a member could carry any change in it.
func (g *Group) residualBounded(w *work, p peer.ID, residual []float32) string {
	j := slices.Index(w.prevMembers, p)
	if j < 0 || g.cfg.Encoding == allreduce.F32 {
		return ""
	}
	for _, k := range w.prevKept.of(j) {
		end := min(k.offset+len(k.values), len(residual))
		for b := k.offset; b < end; b += allreduce.BlockSize {
			e := min(b+allreduce.BlockSize, end)
			half := allreduce.Spacing(g.cfg.Encoding, k.values[b-k.offset:e-k.offset]) / 2
			for i := b; i < e; i++ {
				if r := math.Abs(float64(residual[i])); r > half*(1+1e-5)+1e-30 {
					return fmt.Sprintf("its committed residual holds %.3g at value %d; rounding its contribution of the round before leaves at most %.3g there", residual[i], i, half)
				}
			}
		}
	}
	return ""
}

// lastCheck is one work the job's last round averaged, to check before
// the job ends: the averaging's members, those whose work it included,
// and the parts of it this member kept.
type lastCheck struct {
	w       *work
	members []peer.ID
	in      func(int) bool
	kept    *keptParts
}

// closingCheck runs the checks of the job's last round, which has no
// round after it to run them in: drawn from the parameters the round
// ends with (closingPlan), each verifier replays the member it checks
// and announces its verdict in its record, and every member waits for
// the verdicts (at most RoundTimeout beyond twice took, the round's
// compute, which a replay repeats). It returns the members found wrong
// and why.
func (g *Group) closingCheck(ctx context.Context, checks []lastCheck, took time.Duration) (map[peer.ID]string, error) {
	state := train.Hash(g.t.Params)
	type due struct {
		verifier, checked peer.ID
		check             int
	}
	var mine []Verdict
	var waits []due
	for c, lc := range checks {
		if lc.w == nil {
			continue
		}
		plan := closingPlan(fmt.Sprintf("%s/%d", g.cfg.Job, c), g.round, g.attempt, state, lc.members, lc.in, g.cfg.Verify)
		for v, j := range plan {
			p := lc.members[j]
			if lc.members[v] != g.self {
				waits = append(waits, due{lc.members[v], p, c})
				continue
			}
			why := ""
			if lc.w.commits != nil && slices.Contains(lc.w.members, p) {
				why = g.checkPast(ctx, &pastRound{round: g.round, attempt: g.attempt, members: lc.members, w: lc.w, kept: lc.kept}, j)
			}
			if len(why) > maxVerdictReason {
				why = strings.ToValidUTF8(why[:maxVerdictReason], "")
			}
			mine = append(mine, Verdict{Round: g.round, Attempt: g.attempt, Check: c, Peer: p, Wrong: why})
		}
	}
	if len(mine) == 0 && len(waits) == 0 {
		return nil, nil
	}
	refused := map[peer.ID]string{}
	for _, v := range mine {
		if v.Wrong != "" {
			refused[v.Peer] = v.Wrong
			g.cfg.Log.Warn("member checked found wrong", "peer", v.Peer, "round", g.round, "why", v.Wrong)
		}
	}
	g.update(ctx, func(m *Member) { m.Verdicts = mine })
	watch, stop, err := g.dir.Watch(g.cfg.Job)
	if err != nil {
		return nil, err
	}
	defer stop()
	deadline := time.NewTimer(g.cfg.RoundTimeout + 2*took)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for len(waits) > 0 {
		recs := g.dir.Known(g.cfg.Job)
		waits = slices.DeleteFunc(waits, func(d due) bool {
			for _, m := range recs {
				if m.Peer != d.verifier {
					continue
				}
				for _, v := range m.Verdicts {
					if v.Round == g.round && v.Attempt == g.attempt && v.Check == d.check && v.Peer == d.checked {
						if v.Wrong != "" {
							refused[d.checked] = v.Wrong
						}
						return true
					}
				}
			}
			return false
		})
		if len(waits) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			// A verifier that did not answer in time: the member it
			// checks is taken as it is.
			g.cfg.Log.Info("verdicts of the last round not all in", "round", g.round, "missing", len(waits))
			return refused, nil
		case <-watch:
		case <-tick.C:
		}
	}
	return refused, nil
}

// checkDue runs the check the last averaging's plan gives this member,
// if the member it checks is among members (once per averaging, however
// many tries the round takes), and returns the member checked ("": none).
// A member found wrong has its verdict kept: the averagings refuse its
// contributions from then on.
func (g *Group) checkDue(ctx context.Context, members []peer.ID) peer.ID {
	past := g.past
	if past == nil || past.round != g.round-1 {
		return ""
	}
	j, ok := past.plan[slices.Index(past.members, g.self)]
	if !ok || !slices.Contains(members, past.members[j]) {
		return ""
	}
	p := past.members[j]
	if past.w == nil || past.w.commits == nil || !slices.Contains(past.w.members, p) {
		// This member was not in the round that trained the work: it saw
		// no commitments, and trains instead.
		return ""
	}
	if !past.checked {
		why := g.checkPast(ctx, past, j)
		past.checked = true
		if why != "" {
			g.cfg.Log.Warn("member checked found wrong", "peer", p, "round", past.w.round, "why", why)
			g.mu.Lock()
			g.verdicts[p] = why
			g.mu.Unlock()
		} else {
			g.cfg.Log.Debug("member checked found right", "peer", p, "round", past.w.round)
		}
	}
	return p
}

// verdict is why p's work was found wrong ("": it was not).
func (g *Group) verdict(p peer.ID) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.verdicts[p]
}

// contributors says which members' contributions are in every part of
// res's average (those dropped, and those that sent nothing, are not).
func contributors(members []peer.ID, res allreduce.Result) func(int) bool {
	return func(i int) bool {
		any := false
		for _, pr := range res.Parts {
			if pr.Len == 0 {
				continue
			}
			if !slices.Contains(pr.Included, members[i]) {
				return false
			}
			any = true
		}
		return any
	}
}
