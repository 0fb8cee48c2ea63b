package collab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/train"
)

// A DiLoCo member's contribution depends on its private inner state at
// the round's start: its AdamW moments and step count and its
// error-feedback residual (the parameters, the data cursor and its share
// of the batches are the group's). To check a member, another member of
// the round (its verifier) gives up its own share, fetches the member's
// inner state, which the member stores as a checkpoint (WriteInnerCheckpoint)
// and announces by CID in its record, replays the member's inner steps on
// the member's shares, and compares what it gets with what the member
// sends in the averaging. A contribution found different is refused, and
// the group bans its sender as it bans any refused one.

// maxInnerExtra bounds the bytes of an inner state beyond its tensors
// (the checkpoint's header and framing).
const maxInnerExtra = train.MaxCheckpointHeader + 64

// verifyPlan picks the round's checks: verifier index → index of the
// member it checks. Every member computes the same plan from the job,
// round, attempt, state and members. The members are taken in an order
// drawn from these; each is checked with probability share, by the next
// one in that order, which contributes nothing that round. So at most
// half of the members (rounded down) are checked in a round, and every
// pair holds a member that contributes.
func verifyPlan(job string, round, attempt int, state [32]byte, members []peer.ID, share float64) map[int]int {
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
		if rng.Float64() < share {
			plan[order[k+1]] = order[k]
			k++
		}
	}
	return plan
}

// checkedBy says whether member i is checked in plan.
func checkedBy(plan map[int]int, i int) bool {
	for _, j := range plan {
		if j == i {
			return true
		}
	}
	return false
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

// fetchInner waits (at most half the round's timeout) for p's record to
// announce its inner state for the current round and attempt, and
// fetches it from p.
func (g *Group) fetchInner(ctx context.Context, p peer.ID) ([]byte, error) {
	watch, stop, err := g.dir.Watch(g.cfg.Job)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RoundTimeout/2)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var c cid.Cid
	for !c.Defined() {
		for _, m := range g.dir.Known(g.cfg.Job) {
			if m.Peer == p && m.Inner != "" && m.InnerRound == g.round && m.InnerAttempt == g.attempt {
				if c, err = cid.Decode(m.Inner); err != nil {
					return nil, fmt.Errorf("its inner state %q: %w", m.Inner, err)
				}
			}
		}
		if c.Defined() {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("its record announced no inner state for round %d: %w", g.round, ctx.Err())
		case <-watch:
		case <-tick.C:
		}
	}
	data, err := g.innerStates().Get(ctx, c, []peer.ID{p})
	if err != nil {
		return nil, fmt.Errorf("its inner state %s: %w", c, err)
	}
	return data, nil
}

// takeInner takes a member's inner state into this member's trainer and
// checks that it stands where the round starts: the step, the data
// cursor and the parameters. It returns the state's residual.
func (g *Group) takeInner(data []byte) ([]float32, error) {
	from, fromStep := g.t.Cursor, g.t.Step
	if limit := 16*train.VectorLen(g.t.Params) + maxInnerExtra; len(data) > limit {
		return nil, fmt.Errorf("its inner state: %d bytes, at most %d for this job's parameters", len(data), limit)
	}
	residual, err := g.t.RestoreInner(data)
	if err != nil {
		return nil, fmt.Errorf("its inner state: %w", err)
	}
	if h := train.Hash(g.t.Params); g.t.Step != fromStep || !g.t.Cursor.Same(from) || h != g.state {
		return nil, fmt.Errorf("its inner state stands at step %d, cursor %+v, parameters %x; the round starts at step %d, cursor %+v, parameters %x",
			g.t.Step, g.t.Cursor, h[:6], fromStep, from, g.state[:6])
	}
	return residual, nil
}

// replay recomputes member j's contribution to the round from its inner
// state: it takes the state into this member's trainer, checks that it
// stands where the group does (step, cursor, parameters), runs the
// member's inner steps on its shares and builds the vector it must send.
// The caller restores its own state afterwards.
func (g *Group) replay(ctx context.Context, members []peer.ID, j, steps int) ([]float32, error) {
	data, err := g.fetchInner(ctx, members[j])
	if err != nil {
		return nil, err
	}
	residual, err := g.takeInner(data)
	if err != nil {
		return nil, err
	}
	tokens, lossSum, _, err := g.innerSteps(j, len(members), steps)
	if err != nil {
		return nil, err
	}
	want, _, _ := g.contribution(nil, residual, tokens, lossSum)
	return slices.Clone(want), nil
}
