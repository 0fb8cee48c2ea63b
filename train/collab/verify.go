package collab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
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
	h := sha256.New()
	fmt.Fprintf(h, "mycel-diloco-verify\x00%s\x00%d\x00%d\x00", job, round, attempt)
	h.Write(state[:])
	for _, p := range members {
		h.Write([]byte(p))
	}
	seed := h.Sum(nil)
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed), binary.LittleEndian.Uint64(seed[8:])))
	order := rng.Perm(len(members))
	for k := 0; k+1 < len(order); k++ {
		if contributors(order[k]) && rng.Float64() < share {
			plan[order[k+1]] = order[k]
			k++
		}
	}
	return plan
}

// pastRound is what a member keeps of the last round it finished, to
// check it in the next one.
type pastRound struct {
	round, attempt int
	// state, start, cursor and step: where the round started (the
	// parameters' hash and values, the data cursor, the trainer's step);
	// steps its inner steps.
	state       [32]byte
	start       []float32
	cursor      train.Cursor
	step, steps int
	members     []peer.ID
	commits     map[peer.ID]cid.Cid // the inner states announced before this member sent
	kept        *keptParts
	plan        map[int]int
	checked     bool   // the check has run (once, whatever the tries of the round after)
	verdict     string // why the member checked was found wrong; "" when right
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

// offerInner stores this member's inner state at the start of the round
// and announces its CID for the current round and attempt.
func (g *Group) offerInner(ctx context.Context) error {
	var b bytes.Buffer
	if err := g.t.WriteInnerCheckpoint(&b, g.residualOrZero()); err != nil {
		return fmt.Errorf("collab: inner state of round %d: %w", g.round, err)
	}
	data := b.Bytes()
	if g.innerOffered != nil {
		data = g.innerOffered(g.round, data)
	}
	c, err := g.innerStates().Put(ctx, data)
	if err != nil {
		return fmt.Errorf("collab: inner state of round %d: %w", g.round, err)
	}
	g.update(ctx, func(m *Member) { m.Inner, m.InnerRound, m.InnerAttempt = c.String(), g.round, g.attempt })
	return nil
}

// commits waits (at most a quarter of the round's timeout) for the
// records of the round's other members to announce their inner states
// for the current round and attempt, and returns the CIDs announced; a
// member whose record announces none in time, or one that is not a CID,
// is left out (and fails a check of this round).
func (g *Group) commits(ctx context.Context, members []peer.ID) map[peer.ID]cid.Cid {
	out := map[peer.ID]cid.Cid{}
	watch, stop, err := g.dir.Watch(g.cfg.Job)
	if err != nil {
		return out
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RoundTimeout/4)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, m := range g.dir.Known(g.cfg.Job) {
			if m.Peer != g.self && m.Inner != "" && m.InnerRound == g.round && m.InnerAttempt == g.attempt && slices.Contains(members, m.Peer) {
				if c, err := cid.Decode(m.Inner); err == nil {
					out[m.Peer] = c
				}
			}
		}
		if len(out) >= len(members)-1 {
			return out
		}
		select {
		case <-ctx.Done():
			return out
		case <-watch:
		case <-tick.C:
		}
	}
}

// takeInner takes a member's inner state into this member's trainer and
// checks that it stands where the round started: the step, the data
// cursor and the parameters (hashed: state). It returns the state's
// residual.
func (g *Group) takeInner(data []byte, step int, cursor train.Cursor, state [32]byte) ([]float32, error) {
	if limit := 16*train.VectorLen(g.t.Params) + maxInnerExtra; len(data) > limit {
		return nil, fmt.Errorf("its inner state: %d bytes, at most %d for this job's parameters", len(data), limit)
	}
	residual, err := g.t.RestoreInner(data)
	if err != nil {
		return nil, fmt.Errorf("its inner state: %w", err)
	}
	if h := train.Hash(g.t.Params); g.t.Step != step || !g.t.Cursor.Same(cursor) || h != state {
		return nil, fmt.Errorf("its inner state stands at step %d, cursor %+v, parameters %x; the round started at step %d, cursor %+v, parameters %x",
			g.t.Step, g.t.Cursor, h[:6], step, cursor, state[:6])
	}
	return residual, nil
}

// checkPast checks member j of the last round, as the plan drawn after
// it asks: it fetches the inner state j committed to, replays j's inner
// steps from it on j's shares and compares the contribution that gives
// with the parts of j's contribution this member kept. It returns why j
// is found wrong ("" when it is right). The trainer is left where the
// current round starts (parameters, cursor, step, AdamW state).
func (g *Group) checkPast(ctx context.Context, past *pastRound, j int) string {
	p := past.members[j]
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
	c, ok := past.commits[p]
	if !ok {
		return fmt.Sprintf("recomputation of round %d failed: it announced no inner state before the round's averaging", past.round)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RoundTimeout/2)
	defer cancel()
	data, err := g.innerStates().Get(ctx, c, []peer.ID{p})
	if err != nil {
		return fmt.Sprintf("recomputation of round %d failed: its inner state %s: %v", past.round, c, err)
	}
	residual, err := g.takeInner(data, past.step, past.cursor, past.state)
	if err != nil {
		return fmt.Sprintf("recomputation of round %d failed: %v", past.round, err)
	}
	tokens, lossSum, _, err := g.innerSteps(j, len(past.members), past.steps)
	if err != nil {
		return fmt.Sprintf("recomputation of round %d failed: %v", past.round, err)
	}
	want, _, _ := g.contribution(nil, &train.Outer{Start: past.start}, residual, tokens, lossSum)
	for _, k := range kept {
		if k.offset+len(k.values) > len(want) {
			return fmt.Sprintf("recomputation of round %d failed: a part of %d values at %d, the vector holds %d", past.round, len(k.values), k.offset, len(want))
		}
		if why := compareWork(k.values, want[k.offset:k.offset+len(k.values)]); why != "" {
			return fmt.Sprintf("%s (round %d)", why, past.round)
		}
	}
	return ""
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
