package collab

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
)

// ownState is a DiLoCo member's state as a round starts: the group's
// (parameters, step, cursor) and its own (AdamW step and moments,
// error-feedback residual).
type ownState struct {
	params, m, v, residual []float32
	step, adamStep         int
	cursor                 train.Cursor
}

func stateOf(g *Group) ownState {
	var m, v []float32
	for i := range g.t.Opt.M {
		m = append(m, g.t.Opt.M[i]...)
		v = append(v, g.t.Opt.V[i]...)
	}
	return ownState{params: values(g.t), m: m, v: v, residual: slices.Clone(g.residual),
		step: g.t.Step, adamStep: g.t.Opt.Step, cursor: g.t.Cursor}
}

// same says how a differs from b, bit for bit ("" when it does not).
func (a ownState) differs(b ownState) string {
	switch {
	case !slices.Equal(a.params, b.params):
		return "parameters"
	case !slices.Equal(a.m, b.m) || !slices.Equal(a.v, b.v):
		return "AdamW moments"
	case !slices.Equal(a.residual, b.residual):
		return "residual"
	case a.step != b.step || a.adamStep != b.adamStep:
		return "steps"
	case !a.cursor.Same(b.cursor):
		return "cursor"
	}
	return ""
}

// A DiLoCo round whose averaging fails after the inner steps (a member
// of the round that never shows, so that its part is lost) leaves the member as the round found it, its AdamW moments
// and residual included, and trying the round again ends bit for bit
// where a member whose round never failed does.
func TestDiLoCoRetryStartsAgain(t *testing.T) {
	b := loadBase(t)
	const inner = 2
	cfg := Config{Job: "fox-retry", Mode: DiLoCo, InnerSteps: inner, Encoding: allreduce.Int8, RoundTimeout: 2 * time.Second, Verify: -1}
	ref := join(t, newPeer(t), b.trainer(t, job("lora", 2*inner)), cfg)
	tried := join(t, newPeer(t), b.trainer(t, job("lora", 2*inner)), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	round := func(m *member, others ...peer.ID) error {
		_, err := m.g.dilocoRound(ctx, append([]peer.ID{m.g.self}, others...))
		return err
	}
	// The first round makes the moments and the residual.
	for _, m := range []*member{ref, tried} {
		if err := round(m); err != nil {
			t.Fatal(err)
		}
	}
	at := stateOf(tried.g)
	if len(at.m) == 0 || !slices.ContainsFunc(at.residual, func(x float32) bool { return x != 0 }) {
		t.Fatal("no moments or residual after the first round")
	}
	if err := round(tried, otherPeer(t)); !retryable(err) {
		t.Fatalf("the round with a member that never shows ended with %v, not an error that tries it again", err)
	}
	if d := stateOf(tried.g).differs(at); d != "" {
		t.Fatalf("after the failed try the member's %s are not those the round started with", d)
	}
	tried.g.attempt++ // as Run does
	for _, m := range []*member{ref, tried} {
		if err := round(m); err != nil {
			t.Fatal(err)
		}
	}
	if d := stateOf(tried.g).differs(stateOf(ref.g)); d != "" {
		t.Fatalf("the round tried again ends with other %s than the round that never failed", d)
	}
}
