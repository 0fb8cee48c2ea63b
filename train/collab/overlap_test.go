package collab

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mycel-net/mycel/train"
)

// DiLoCo with Overlap on one peer is the outer optimizer one round late:
// θ_{r+1} applies round r−1's change to θ_r, and round r trains from
// where the outer step would take θ_r with the member's own change of
// round r−1; the last round applies its own change as well. The
// reference runs that recurrence on a trainer of its own. With one
// member its own change is the average, so the round starts exactly where
// DiLoCo without Overlap starts it: the two end with the same parameters.
func TestDiLoCoOverlapOnePeer(t *testing.T) {
	b := loadBase(t)
	const steps, inner = 5, 2 // the last round has one step
	const lr, mom = 0.7, 0.9
	ref := b.trainer(t, job("lora", steps))
	outer := train.NewOuter(ref.Params, lr, mom)
	var pending []float32
	for ref.Step < steps {
		from := outer
		if pending != nil {
			start, err := outer.Preview(ref.Params, pending, nil)
			if err != nil {
				t.Fatal(err)
			}
			from = &train.Outer{Start: start}
		}
		for range min(inner, steps-ref.Step) {
			if _, err := ref.RunStep(); err != nil {
				t.Fatal(err)
			}
		}
		delta := from.Delta(ref.Params, nil)
		if err := train.Unflatten(ref.Params, train.Values, outer.Start); err != nil {
			t.Fatal(err)
		}
		if pending != nil {
			if err := outer.Step(ref.Params, pending); err != nil {
				t.Fatal(err)
			}
		}
		pending = delta
	}
	if err := outer.Step(ref.Params, pending); err != nil {
		t.Fatal(err)
	}

	p := newPeer(t)
	m := join(t, p, b.trainer(t, job("lora", steps)), Config{Job: "fox-overlap1", Mode: DiLoCo, InnerSteps: inner,
		OuterLR: lr, OuterMomentum: mom, Overlap: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m.run(ctx)
	if err := m.wait(t); err != nil {
		t.Fatal(err)
	}
	if d := relDiff(values(m.tr), values(ref)); d > 1e-6 || m.tr.Step != steps {
		t.Errorf("step %d, relative difference %.2g from the delayed outer steps", m.tr.Step, d)
	}
	reps := m.rounds()
	if len(reps) != 3 {
		t.Fatalf("%d rounds, want 3", len(reps))
	}
	// The first round averages nothing (no loss to report); every later
	// one the round before's loss.
	if reps[0].Tokens != 0 || reps[1].Tokens == 0 || reps[1].Loss <= 0 {
		t.Errorf("round 0: %d tokens averaged; round 1: %d tokens, loss %v", reps[0].Tokens, reps[1].Tokens, reps[1].Loss)
	}
	p2 := newPeer(t)
	m2 := join(t, p2, b.trainer(t, job("lora", steps)), Config{Job: "fox-overlap1-plain", Mode: DiLoCo, InnerSteps: inner,
		OuterLR: lr, OuterMomentum: mom})
	m2.run(ctx)
	if err := m2.wait(t); err != nil {
		t.Fatal(err)
	}
	if d := relDiff(values(m2.tr), values(m.tr)); d > 1e-6 {
		t.Errorf("DiLoCo without Overlap ends %.2g from it", d)
	}
}

// Three peers in DiLoCo with Overlap, int8 and every round checked: the
// averaging of each round's work, one round late, leaves every member
// with the same parameters and shares; from the third round on a member
// replays another's work and finds it right; no one is refused, and the
// loss falls.
func TestDiLoCoOverlapChecked(t *testing.T) {
	b := loadBase(t)
	const steps, inner = 10, 2
	peers := newPeers(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	cfg := dilocoChecked("fox-overlap", 3, inner)
	cfg.Overlap = true
	ms := joinAll(t, b, peers, "lora", steps, 1e-2, cfg)
	runAll(ctx, ms)
	waitAll(t, ms)
	verified := 0
	for k := range steps / inner {
		for i, m := range ms {
			r := m.rounds()[k]
			if len(r.Rejected) != 0 || len(r.Dropped) != 0 || len(r.Members) != 3 {
				t.Fatalf("peer %d round %d: members %d, dropped %v, refused %v", i, k, len(r.Members), r.Dropped, r.Rejected)
			}
			if r.State != ms[0].rounds()[k].State || !slices.Equal(r.Shares, ms[0].rounds()[k].Shares) {
				t.Fatalf("peer %d round %d: state or shares differ from peer 0's", i, k)
			}
			verified += len(r.Verified)
			// Round 0 averages nothing; round 1 everyone's round 0; a
			// check planned after round k's averaging runs in round k+1,
			// whose work is averaged in round k+2: from round 3 on, one
			// member's work is missing.
			zeros := 0
			for _, s := range r.Shares {
				if s == 0 {
					zeros++
				}
			}
			switch {
			case k == 0 && (zeros != 3 || r.Tokens != 0):
				t.Errorf("peer %d round 0: shares %v, %d tokens averaged; want nothing averaged", i, r.Shares, r.Tokens)
			case k > 0 && k < 3 && (zeros != 0 || r.Redo != 0):
				t.Errorf("peer %d round %d: shares %v, redo %d; want every member's work", i, k, r.Shares, r.Redo)
			}
		}
	}
	if verified == 0 {
		t.Error("no member's work was recomputed")
	}
	for i, m := range ms {
		reps := m.rounds()
		if m.g.State() != ms[0].g.State() || train.Hash(m.tr.Params) != m.g.State() || m.tr.Step != steps {
			t.Errorf("peer %d at step %d holds other parameters than peer 0", i, m.tr.Step)
		}
		if !m.tr.Cursor.Same(ms[0].tr.Cursor) {
			t.Errorf("peer %d: data cursor %+v, peer 0's %+v", i, m.tr.Cursor, ms[0].tr.Cursor)
		}
		if first, last := reps[1].Loss, reps[len(reps)-1].Loss; !(last < first) {
			t.Errorf("peer %d: loss %v averaged first, %v last", i, first, last)
		}
	}
}

// With Overlap, a peer dies in the middle of an averaging and another
// joins later: the survivors go on without the dead peer's work (its
// shares of the last two rounds go back to the data), the joiner takes
// the round still to be averaged from the checkpoint it catches up from,
// and all three end with the same parameters and the same data cursor.
func TestDiLoCoOverlapChurn(t *testing.T) {
	b := loadBase(t)
	const steps, inner = 40, 2
	peers := newPeers(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	cfg := Config{Job: "fox-overlap-churn", Mode: DiLoCo, InnerSteps: inner, Overlap: true, MinPeers: 2,
		RoundTimeout: 4 * time.Second, ExpectWait: 2 * time.Second}
	const dieAt = 3
	ms, lm, _ := dieAndJoin(ctx, t, b, peers, "lora", steps, cfg, dieAt)
	victim, late := ms[2], lm.p
	survivors := []*member{ms[0], ms[1], lm}
	for i, m := range survivors {
		if m.g.State() != ms[0].g.State() || m.tr.Step != steps || !m.tr.Cursor.Same(ms[0].tr.Cursor) {
			t.Errorf("survivor %d at step %d, cursor %+v, with other parameters or cursor than survivor 0 (%+v)", i, m.tr.Step, m.tr.Cursor, ms[0].tr.Cursor)
		}
	}
	dead := victim.p.h.ID()
	redo := 0
	for _, r := range ms[0].rounds() {
		if r.Round == dieAt || r.Round == dieAt+1 {
			redo += r.Redo
		}
		if r.Round > dieAt && slices.Contains(r.Members, dead) {
			t.Errorf("round %d still counts the dead peer", r.Round)
		}
	}
	// Its work of round dieAt−1 was to be averaged in round dieAt, when
	// it died; its work of round dieAt never was. Each is a third of the
	// round's batches.
	if want := 2 * inner * (8 / 3); redo < want {
		t.Errorf("rounds %d and %d handed back %d sequences, want at least %d", dieAt, dieAt+1, redo, want)
	}
	lr := lm.rounds()
	if len(lr) == 0 {
		t.Fatal("the late peer took part in no round")
	}
	if last := lr[len(lr)-1]; len(last.Members) != 3 {
		t.Errorf("the late peer's last round, %d, had %d members", last.Round, len(last.Members))
	}
	// The joiner's first rounds average the others' work, not its own.
	own := slices.Index(lr[0].Members, late.h.ID())
	if own < 0 || lr[0].Shares[own] != 0 {
		t.Errorf("the late peer's first round, %d: shares %v (its own at %d); it had no work to average", lr[0].Round, lr[0].Shares, own)
	}
}
