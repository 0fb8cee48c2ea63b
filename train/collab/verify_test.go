package collab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
)

// dilocoChecked is a DiLoCo group's config in which every member that
// the plan can check is checked: int8 averaging with error feedback,
// inner steps a round.
func dilocoChecked(job string, n, inner int) Config {
	return Config{Job: job, Mode: DiLoCo, InnerSteps: inner, Encoding: allreduce.Int8, MinPeers: n, Verify: 1,
		RoundTimeout: 20 * time.Second, ExpectWait: 2 * time.Second}
}

// Three honest peers in DiLoCo with every round checked: no one is
// refused over several rounds; from the second round on, one member
// replays another's last round each time (and its shares go back to the
// data), all hold the same parameters, and the loss falls.
func TestDiLoCoVerifyHonest(t *testing.T) {
	b := loadBase(t)
	const steps, inner = 8, 2
	peers := newPeers(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	ms := joinAll(t, b, peers, "lora", steps, 1e-2, dilocoChecked("fox-verify", 3, inner))
	runAll(ctx, ms)
	waitAll(t, ms)
	checked := map[peer.ID]int{}
	for k := range steps / inner {
		verified := 0
		for i, m := range ms {
			r := m.rounds()[k]
			if len(r.Rejected) != 0 || len(r.Dropped) != 0 || len(r.Members) != 3 {
				t.Fatalf("peer %d round %d: members %d, dropped %v, refused %v", i, k, len(r.Members), r.Dropped, r.Rejected)
			}
			if r.State != ms[0].rounds()[k].State || !slices.Equal(r.Shares, ms[0].rounds()[k].Shares) {
				t.Fatalf("peer %d round %d: state or shares differ from peer 0's", i, k)
			}
			// The first round has no round before it to check; in each
			// later one a verifier sits out: its shares went back.
			idle := slices.Index(r.Shares, 0)
			switch {
			case k == 0 && (idle >= 0 || r.Redo != 0):
				t.Errorf("peer %d round 0: shares %v, redo %d; want every member trained", i, r.Shares, r.Redo)
			case k > 0 && (idle < 0 || r.Redo == 0 || slices.Index(r.Shares[idle+1:], 0) >= 0):
				t.Errorf("peer %d round %d: shares %v, redo %d; want one member idle", i, k, r.Shares, r.Redo)
			}
			for _, p := range r.Verified {
				checked[p]++
				verified++
			}
		}
		if want := min(k, 1); verified != want {
			t.Errorf("round %d: %d contributions recomputed and found right, want %d", k, verified, want)
		}
	}
	t.Logf("checked: %v", checked)
	for i, m := range ms {
		reps := m.rounds()
		if m.g.State() != ms[0].g.State() || train.Hash(m.tr.Params) != m.g.State() {
			t.Errorf("peer %d holds other parameters than peer 0", i)
		}
		if first, last := reps[0].Loss, reps[len(reps)-1].Loss; !(last < first) {
			t.Errorf("peer %d: loss %v in the first round, %v in the last", i, first, last)
		}
	}
}

// A peer that sends plausible but wrong DiLoCo work (its change scaled
// by 1.05, within the norm check) in every round, or only in the rounds
// where the plan drawn at the round's start (as checks were once
// planned) would not have it checked, or that offers an inner state its
// round did not start from, is caught by a member that replays it in
// the round after: its contribution refused, banned by every member,
// and the others go on and the loss falls. A member is checked in about
// a quarter of the rounds here (four members, one verifier sits out the
// round after each check): the job's rounds are many, and the members
// stop a few rounds after the liar is caught.
func TestDiLoCoVerifyCatchesLiar(t *testing.T) {
	b := loadBase(t)
	for name, lie := range map[string]func(m *member){
		"scaled": func(m *member) {
			m.g.beforeAverage = func(_ int, v []float32) { scale(v, 1.05) }
		},
		// Its committed residual ten times what rounding left, and
		// its contribution following from it: the replay agrees, the
		// residual's bound does not.
		"residual": func(m *member) {
			var honest, inflated []float32
			m.g.innerOffered = func(round int, state []byte) []byte {
				if round == 0 {
					return state
				}
				// After a round it did not train (or a try that failed
				// after this), its residual is still the one it inflated.
				if slices.Equal(m.g.residual, inflated) {
					copy(m.g.residual, honest)
				}
				honest = slices.Clone(m.g.residual)
				scale(m.g.residual, 10)
				inflated = slices.Clone(m.g.residual)
				var b bytes.Buffer
				if err := m.g.t.WriteInnerCheckpoint(&b, m.g.residual); err != nil {
					panic(err)
				}
				return b.Bytes()
			}
		},
		// Every round it trains from AdamW first moments of zero, not
		// those its round before left, and commits to them: the replay
		// of each round agrees, the state after the round before does
		// not. (Moments that grew from round to round would make its
		// change an outlier, left out before any check.)
		"moments": func(m *member) {
			m.g.innerOffered = func(round int, state []byte) []byte {
				if round == 0 || m.g.t.Opt.M == nil {
					return state
				}
				for _, x := range m.g.t.Opt.M {
					scale(x, 0)
				}
				var b bytes.Buffer
				if err := m.g.t.WriteInnerCheckpoint(&b, m.g.residualOrZero()); err != nil {
					panic(err)
				}
				return b.Bytes()
			}
		},
		// With Overlap: what it sends is not what its next round starts
		// from, nor what its replay gives.
		"overlap-scaled": func(m *member) {
			m.g.beforeAverage = func(_ int, v []float32) { scale(v, 1.05) }
		},
		"unplanned": func(m *member) {
			// It draws the plan as every member once did, from what the
			// round starts with, and lies where that plan leaves it alone.
			m.g.beforeAverage = func(round int, v []float32) {
				g := m.g
				g.mu.Lock()
				members := g.rec.Start
				g.mu.Unlock()
				plan := verifyPlan(g.cfg.Job, round, g.attempt, g.state, members, func(int) bool { return true }, g.cfg.Verify)
				if !slices.Contains(slices.Collect(maps.Values(plan)), slices.Index(members, g.self)) {
					scale(v, 1.05)
				}
			}
		},
		"stale-state": func(m *member) {
			// The inner state of the job's start, whatever the round.
			var first []byte
			m.g.innerOffered = func(_ int, state []byte) []byte {
				if first == nil {
					first = slices.Clone(state)
				}
				return first
			}
			m.g.beforeAverage = func(round int, v []float32) {
				if round > 0 {
					scale(v, 1.05)
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			// At most this many rounds; a member escapes a round's check
			// with a chance of about 3/4, all of them with (3/4)^38.
			const steps, after = 40, 3
			peers := newPeers(t, 4)
			ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
			defer cancel()
			cfg := dilocoChecked("fox-liar-"+name, 3, 1)
			cfg.Overlap = strings.HasPrefix(name, "overlap")
			ms := joinAll(t, b, peers, "lora", steps, 3e-3, cfg)
			liar := ms[3]
			lie(liar)
			runAll(ctx, ms)
			if err := liar.wait(t); !errors.Is(err, ErrRefused) {
				t.Fatalf("the liar's Run: %v, want ErrRefused", err)
			}
			id := liar.p.h.ID()
			// A few rounds more without it, then the job is stopped.
			stopAt := liar.g.Round() + after
			for ctx.Err() == nil && slices.ContainsFunc(ms[:3], func(m *member) bool { return len(m.rounds()) < stopAt && !isDone(m) }) {
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			common := steps
			for i, m := range ms[:3] {
				if err := m.wait(t); err != nil && !errors.Is(err, context.Canceled) {
					t.Fatal(err)
				}
				reps := m.rounds()
				common = min(common, len(reps))
				caught := slices.IndexFunc(reps, func(r Report) bool { return r.Rejected[id] != "" })
				if caught < 0 {
					t.Fatalf("peer %d: the liar was never refused", i)
				}
				if why := reps[caught].Rejected[id]; !strings.HasPrefix(why, "recomput") {
					t.Errorf("peer %d: the liar refused for %q, want its recomputation", i, why)
				} else if i == 0 {
					t.Logf("round %d refused: %s", caught, why)
				}
				for _, r := range reps[caught+1:] {
					if slices.Contains(r.Members, id) {
						t.Errorf("peer %d round %d still has the liar", i, r.Round)
					}
					if len(r.Rejected) != 0 {
						t.Errorf("peer %d round %d refused %v", i, r.Round, r.Rejected)
					}
				}
				if m.g.banned[id] == "" {
					t.Errorf("peer %d did not ban the liar", i)
				}
				// Each round's loss is over the shares it averaged: the last
				// rounds' mean against the first averaged (with Overlap the
				// first round averages nothing).
				last := 0.0
				for _, r := range reps[len(reps)-3:] {
					last += r.Loss / 3
				}
				at := slices.IndexFunc(reps, func(r Report) bool { return r.Tokens > 0 })
				if first := reps[at].Loss; !(last < first) {
					t.Errorf("peer %d: loss %v first, %v over the last three rounds", i, first, last)
				}
			}
			for k := range common {
				for i, m := range ms[1:3] {
					if m.rounds()[k].State != ms[0].rounds()[k].State {
						t.Errorf("peer %d round %d: other parameters than peer 0's", i+1, k)
					}
				}
			}
		})
	}
}

// isDone says whether m's Run has returned.
func isDone(m *member) bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// An inner state a verifier cannot take is a clear error: truncated,
// too large, a trainer checkpoint without residual, or one that stands
// at another step than the round's.
func TestTakeInnerRefuses(t *testing.T) {
	b := loadBase(t)
	p := newPeer(t)
	j := job("lora", 8)
	g := join(t, p, b.trainer(t, j), dilocoChecked("fox-take", 1, 2)).g
	var good bytes.Buffer
	if err := g.t.WriteInnerCheckpoint(&good, g.residualOrZero()); err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	if err := g.t.WriteCheckpoint(&plain); err != nil {
		t.Fatal(err)
	}
	other := b.trainer(t, j)
	if _, err := other.RunStep(); err != nil {
		t.Fatal(err)
	}
	var later bytes.Buffer
	if err := other.WriteInnerCheckpoint(&later, make([]float32, train.VectorLen(other.Params))); err != nil {
		t.Fatal(err)
	}
	step, cursor, state := g.t.Step, g.t.Cursor, g.state
	if _, err := g.takeInner(good.Bytes(), step, cursor, state); err != nil {
		t.Fatalf("the round's own inner state: %v", err)
	}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"truncated": {good.Bytes()[:good.Len()-100], "damaged or truncated"},
		"too large": {make([]byte, 16*train.VectorLen(g.t.Params)+maxInnerExtra+1), "at most"},
		"plain":     {plain.Bytes(), "no residual"},
		"later":     {later.Bytes(), "stands at step 1"},
	} {
		if _, err := g.takeInner(c.data, step, cursor, state); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

// Every member computes the same plan; a verifier is never checked, a
// member is checked by one verifier at most, only contributors are
// checked, and with share 1 and every member a contributor half the
// members (rounded down) are checked.
func TestVerifyPlan(t *testing.T) {
	var members []peer.ID
	for i := range 7 {
		members = append(members, peer.ID(rune('a'+i)))
	}
	everyone := func(int) bool { return true }
	var state [32]byte
	for n := 1; n <= len(members); n++ {
		for round := range 20 {
			plan := verifyPlan("j", round, 0, state, members[:n], everyone, 1)
			if len(plan) != n/2 {
				t.Fatalf("%d members, round %d: %d checks, want %d", n, round, len(plan), n/2)
			}
			seen := map[int]bool{}
			for v, c := range plan {
				if _, isVerifier := plan[c]; isVerifier || seen[c] || v == c {
					t.Fatalf("%d members, round %d: plan %v", n, round, plan)
				}
				seen[c] = true
			}
			if !maps.Equal(plan, verifyPlan("j", round, 0, state, members[:n], everyone, 1)) {
				t.Fatal("the plan differs between two calls")
			}
			// Another result of the round, another plan (over 20 rounds,
			// at least one differs).
			state[round%32]++
		}
	}
	// Members 0 and 1 sent nothing: never checked, but they may verify.
	odd := func(i int) bool { return i > 1 }
	verifiers := 0
	for round := range 50 {
		for v, c := range verifyPlan("j", round, 0, state, members, odd, 1) {
			if c < 2 {
				t.Fatalf("round %d: member %d checked, it sent nothing", round, c)
			}
			if v < 2 {
				verifiers++
			}
		}
	}
	if verifiers == 0 {
		t.Error("a member that sent nothing never verified")
	}
	// A share of 0.1 checks about a tenth of the members.
	checks := 0
	for round := range 1000 {
		checks += len(verifyPlan("j", round, 0, state, members, everyone, 0.1))
	}
	if share := float64(checks) / 7000; share < 0.07 || share > 0.13 {
		t.Errorf("share 0.1 checked %.3g of the members", share)
	}
	if len(verifyPlan("j", 0, 0, state, members, everyone, -1)) != 0 {
		t.Error("checks with a share below 0")
	}
	// The last round's ring: with share 1 every contributor is checked,
	// by another member, each verifier checking one.
	for n := 2; n <= len(members); n++ {
		for round := range 10 {
			plan := closingPlan("j", round, 0, state, members[:n], odd, 1)
			checked := map[int]bool{}
			for v, c := range plan {
				if v == c || c < 2 || checked[c] {
					t.Fatalf("%d members, round %d: last plan %v", n, round, plan)
				}
				checked[c] = true
			}
			if len(checked) != n-2 {
				t.Fatalf("%d members, round %d: %d contributors checked, want %d", n, round, len(checked), n-2)
			}
		}
	}
	if len(closingPlan("j", 0, 0, state, members, everyone, 0)) != 0 {
		t.Error("last-round checks with a share of 0")
	}
}

// A peer that lies in the job's last round, which has no round after it
// to be checked in: the checks before the job ends replay every member's
// last work (share 1), find the liar, and the others take the last round
// again without it. The job is one round, so that no member sits it out
// to check a round before.
func TestDiLoCoVerifyLastRound(t *testing.T) {
	b := loadBase(t)
	for _, overlap := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "overlap"}[overlap], func(t *testing.T) {
			const steps, inner = 2, 2
			peers := newPeers(t, 4)
			ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
			defer cancel()
			cfg := dilocoChecked(fmt.Sprintf("fox-last-%v", overlap), 3, inner)
			cfg.Overlap = overlap
			ms := joinAll(t, b, peers, "lora", steps, 3e-3, cfg)
			liar := ms[3]
			liar.g.beforeAverage = func(_ int, v []float32) { scale(v, 1.05) }
			runAll(ctx, ms)
			if err := liar.wait(t); !errors.Is(err, ErrRefused) {
				t.Fatalf("the liar's Run: %v, want ErrRefused", err)
			}
			id := liar.p.h.ID()
			for i, m := range ms[:3] {
				if err := m.wait(t); err != nil {
					t.Fatal(err)
				}
				reps := m.rounds()
				last := reps[len(reps)-1]
				if len(reps) != 1 || last.Round != 0 || slices.Contains(last.Members, id) || len(last.Members) != 3 || last.Shares[0] == 0 {
					t.Errorf("peer %d: %d rounds, the last %d with members %v, shares %v; want round 0 without the liar", i, len(reps), last.Round, last.Members, last.Shares)
				}
				if why := m.g.banned[id]; !strings.HasPrefix(why, "recomput") {
					t.Errorf("peer %d banned the liar for %q, want its recomputation", i, why)
				} else if i == 0 {
					t.Logf("banned: %s", why)
				}
				if m.g.State() != ms[0].g.State() || m.tr.Step != steps {
					t.Errorf("peer %d at step %d with other parameters than peer 0", i, m.tr.Step)
				}
			}
		})
	}
}
