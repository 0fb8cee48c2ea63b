package allreduce

import (
	"slices"
	"testing"
	"time"
)

// failDeadline is the deadline of the rounds in which a member fails:
// long enough for -race on two busy cores, short enough to wait for.
const failDeadline = 4 * time.Second

// checkSurvivors checks that the members in who succeeded by the
// deadline with bitwise the same vector, each part the weighted mean of
// its included members, and dead among the dropped.
func checkSurvivors(t *testing.T, c *cluster, orig, data [][]float32, w []float64, res []Result, errs []error, who []int, dead int, deadline time.Time) {
	t.Helper()
	if time.Now().After(deadline.Add(500 * time.Millisecond)) {
		t.Fatalf("the round ended %v after its deadline", time.Since(deadline))
	}
	mustSucceed(t, errs, who)
	checkSame(t, data, res, who)
	checkParts(t, c, orig, w, res[who[0]], data[who[0]])
	if !slices.Contains(res[who[0]].Dropped, c.ids[dead]) {
		t.Fatalf("dropped %v, want member %d among them", res[who[0]].Dropped, dead)
	}
	p := res[who[0]].Parts[dead]
	if !p.Recovered || p.Reducer == c.ids[dead] || slices.Contains(p.Included, c.ids[dead]) {
		t.Fatalf("the dead member's part %+v", p)
	}
}

// A reducer that dies after receiving the contributions, before it
// answers: its part is recovered by its replacement.
func TestReducerDies(t *testing.T) {
	const k, n, dead = 4, 600, 2
	c := newCluster(t, k)
	c.svcs[dead].cfg.beforeReply = func(string, int) { c.hosts[dead].Close() }
	orig := randVecs(29, k, n, 1)
	data := clone(orig)
	w := weights(k)
	r := c.round("reducer-dies", failDeadline)
	res, errs := c.run(same(r, k, w), data, nil)
	who := []int{0, 1, 3}
	checkSurvivors(t, c, orig, data, w, res, errs, who, dead, r.Deadline)
	if got := res[0].Parts[dead].Reducer; got != c.ids[dead+1] {
		t.Fatalf("part %d recomputed by %s, want its first replacement %s", dead, got, c.ids[dead+1])
	}
	if errs[dead] == nil {
		t.Fatalf("the dead member succeeded")
	}
}

// A member killed in the middle of the round: its host is closed once
// member 1 has its contribution, while it holds its own part back.
func TestMemberKilled(t *testing.T) {
	const k, n, dead = 4, 600, 3
	c := newCluster(t, k)
	killed := make(chan struct{})
	c.svcs[dead].cfg.beforeReply = func(string, int) { <-killed }
	c.svcs[1].cfg.beforeReply = func(string, int) {
		c.hosts[dead].Close()
		close(killed)
	}
	orig := randVecs(31, k, n, 1)
	data := clone(orig)
	w := weights(k)
	r := c.round("killed", failDeadline)
	res, errs := c.run(same(r, k, w), data, nil)
	checkSurvivors(t, c, orig, data, w, res, errs, []int{0, 1, 2}, dead, r.Deadline)
}

// A member that never starts the round: the others wait for it until
// the reduce time, recover its part and finish before the deadline.
func TestMemberAbsent(t *testing.T) {
	const k, n, dead = 4, 600, 1
	c := newCluster(t, k)
	orig := randVecs(37, k, n, 1)
	data := clone(orig)
	w := weights(k)
	r := c.round("absent", failDeadline)
	who := []int{0, 2, 3}
	res, errs := c.run(same(r, k, w), data, who)
	checkSurvivors(t, c, orig, data, w, res, errs, who, dead, r.Deadline)
	for _, p := range res[0].Parts {
		if slices.Contains(p.Included, c.ids[dead]) {
			t.Fatalf("part %+v includes the absent member", p)
		}
	}
	if !slices.Equal(data[dead], orig[dead]) {
		t.Fatalf("the absent member's vector changed")
	}
}

// Two rounds in a row on the same services, the second while the first
// still lingers; then the services close without leaving goroutines.
func TestConsecutiveRounds(t *testing.T) {
	const k, n = 3, 200
	c := newCluster(t, k)
	w := weights(k)
	for round := range 3 {
		orig := randVecs(uint64(41+round), k, n, 1)
		data := clone(orig)
		r := c.round("seq/"+string(rune('a'+round)), 10*time.Second)
		res, errs := c.run(same(r, k, w), data, nil)
		mustSucceed(t, errs, allMembers(k))
		checkSame(t, data, res, allMembers(k))
		checkClose(t, "average", data[0], refMean(orig, w, nil, 0, n), 1e-6, 1e-30)
	}
	for _, s := range c.svcs {
		s.Close()
	}
	waitNoLeak(t)
}
