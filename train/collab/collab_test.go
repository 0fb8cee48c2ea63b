package collab

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/netem"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
)

// Groups of real peers on loopback (TCP hosts, gossipsub, the members
// protocol, the all-reduce, on-disk block stores and the block exchange)
// training the built-in model together.

const text = "Once upon a time, a little fox named Tilly found a red kite in the tall grass. " +
	"She ran up the hill with it, and the wind took the kite high into the sky. " +
	"Tilly laughed and laughed, and her friend the owl came to watch. " +
	"The owl said the kite was the finest kite in the whole wide wood."

// base is the built-in model and its tokenizer, loaded once per test.
type base struct {
	w   *model.Weights
	tok tokenizer.Tokenizer
}

func loadBase(t testing.TB) base {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return base{m.Weights, m.Tokenizer}
}

// job is a job on the built-in model whose global batch is 8 sequences
// of 16 tokens.
func job(method string, steps int) *train.Job {
	j := train.DefaultJob("tales", "fox")
	j.Method, j.Steps, j.Warmup, j.CheckpointEvery = method, steps, 1, 0
	j.SeqLen, j.BatchTokens, j.LR, j.EvalFraction = 16, 8*16, 1e-3, 0
	j.LoRARank, j.LoRAAlpha = 4, 8
	return j
}

func (b base) trainer(t testing.TB, j *train.Job) *train.Trainer {
	t.Helper()
	var recs []train.Record
	for range 3 {
		recs = append(recs, train.Record{Text: text})
	}
	seqs, err := train.Pack(train.Tokenize(recs, b.tok), j.SeqLen, 0)
	if err != nil {
		t.Fatal(err)
	}
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	tr, err := train.NewTrainer(j, b.w, be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// peerNode is one peer: its host and the services a group needs.
type peerNode struct {
	h      *p2p.Host
	dir    *Directory
	ar     *allreduce.Service
	states *BlockStates
	closed bool
}

func newPeer(t testing.TB) *peerNode { return newPeerWith(t, nil) }

// newPeerWith is newPeer whose block exchange, if exchangeHost is set,
// runs on exchangeHost(the host) rather than the host itself, and whose
// host takes the further options opts.
func newPeerWith(t testing.TB, exchangeHost func(host.Host) host.Host, opts ...p2p.Option) *peerNode {
	t.Helper()
	opts = append([]p2p.Option{p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(), p2p.MemoryDatastore()}, opts...)
	h, err := p2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := blocks.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	xh := h.Libp2p()
	if exchangeHost != nil {
		xh = exchangeHost(xh)
	}
	ex, err := blocks.NewExchange(xh, h.Routing(), store)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := NewDirectory(h.Libp2p(), DirectoryConfig{PubSub: h.PubSub(), Routing: h.Routing()})
	if err != nil {
		t.Fatal(err)
	}
	p := &peerNode{h: h, dir: dir, ar: allreduce.New(h.Libp2p()), states: &BlockStates{Store: store, Exchange: ex}}
	t.Cleanup(func() {
		p.close()
		store.Close()
	})
	return p
}

// close stops the peer as a crash would, minus the process: its host
// goes, and with it every stream.
func (p *peerNode) close() {
	if p.closed {
		return
	}
	p.closed = true
	p.ar.Close()
	p.dir.Close()
	p.states.Exchange.Close()
	p.h.Close()
}

// newPeers starts n peers linked to each other.
func newPeers(t testing.TB, n int) []*peerNode { return newPeersOn(t, nil, n) }

// newPeersOn is newPeers on the emulated network nw (nil: plain
// loopback).
func newPeersOn(t testing.TB, nw *netem.Net, n int) []*peerNode {
	t.Helper()
	var peers []*peerNode
	for range n {
		if nw == nil {
			peers = append(peers, newPeer(t))
			continue
		}
		port := nw.NewPort()
		p := newPeerWith(t, nil, p2p.TCPDialer(nw.Dialer(port)))
		nw.Attach(port, p.h.Libp2p().Addrs()...)
		peers = append(peers, p)
	}
	connect(t, peers...)
	return peers
}

// connect links every peer to every other.
func connect(t testing.TB, peers ...*peerNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, a := range peers {
		for _, b := range peers[i+1:] {
			if err := a.h.Connect(ctx, b.h.AddrInfo()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// member is a peer's group and what its Run reported.
type member struct {
	p       *peerNode
	tr      *train.Trainer
	g       *Group
	mu      sync.Mutex
	reports []Report
	first   time.Time // when the first round ended
	err     error
	done    chan struct{}
}

func (m *member) run(ctx context.Context) {
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		m.err = m.g.Run(ctx, func(r Report) {
			m.mu.Lock()
			if len(m.reports) == 0 {
				m.first = time.Now()
			}
			m.reports = append(m.reports, r)
			m.mu.Unlock()
		})
	}()
}

// groupTimeout bounds a test's training group: it catches a group that
// hangs, not one that is slow, so it leaves room for the race detector on
// a machine busy with other test binaries (a 100-round job has taken 80 s
// there).
const groupTimeout = 5 * time.Minute

func (m *member) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-m.done:
		return m.err
	case <-time.After(groupTimeout):
		t.Fatalf("a member did not finish in %v", groupTimeout)
		return nil
	}
}

func (m *member) rounds() []Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.reports)
}

func join(t testing.TB, p *peerNode, tr *train.Trainer, cfg Config) *member {
	t.Helper()
	g, err := New(p.h.Libp2p(), p.dir, p.ar, tr, p.states, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{p: p, tr: tr, g: g}
	// A test that ends early (a failure) cancels its context first; the
	// member's goroutine must be gone before the base model it trains on
	// is unmapped by an earlier cleanup.
	t.Cleanup(func() {
		if m.done != nil {
			<-m.done
		}
	})
	return m
}

// joinAll makes every one of peers a member of one group with cfg, each
// on a trainer of its own for job(method, steps) at learning rate lr (0:
// the job's).
func joinAll(t testing.TB, b base, peers []*peerNode, method string, steps int, lr float64, cfg Config) []*member {
	t.Helper()
	var ms []*member
	for _, p := range peers {
		j := job(method, steps)
		if lr != 0 {
			j.LR = lr
		}
		ms = append(ms, join(t, p, b.trainer(t, j), cfg))
	}
	return ms
}

// runAll starts every member's Run.
func runAll(ctx context.Context, ms []*member) {
	for _, m := range ms {
		m.run(ctx)
	}
}

// waitAll waits for every member's Run, which must end without error.
func waitAll(t testing.TB, ms []*member) {
	t.Helper()
	for _, m := range ms {
		if err := m.wait(t); err != nil {
			t.Fatal(err)
		}
	}
}

// dieAndJoin trains a job among peers (three) with cfg; the third one's
// host closes as it starts averaging in round dieAt, and a new peer
// joins once the others are three rounds further on. It waits for the
// job's end, which the two others and the joiner must reach without
// error, and returns the members (the dead one third), the joiner and
// when it started.
func dieAndJoin(ctx context.Context, t *testing.T, b base, peers []*peerNode, method string, steps int, cfg Config, dieAt int) ([]*member, *member, time.Time) {
	t.Helper()
	ms := joinAll(t, b, peers, method, steps, 0, cfg)
	victim := ms[2]
	victim.g.beforeAverage = func(round int, _ []float32) {
		if round == dieAt {
			victim.p.close()
		}
	}
	runAll(ctx, ms)
	if err := victim.wait(t); err == nil {
		t.Fatal("the peer whose host closed finished its job")
	}
	for ms[0].g.Round() < dieAt+3 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	late := newPeer(t)
	connect(t, late, peers[0], peers[1])
	lm := join(t, late, b.trainer(t, job(method, steps)), cfg)
	joinedAt := time.Now()
	lm.run(ctx)
	waitAll(t, []*member{ms[0], ms[1], lm})
	return ms, lm, joinedAt
}

func values(tr *train.Trainer) []float32 {
	return train.Flatten(tr.Params, train.Values, nil)
}

// relDiff is ‖a−b‖ / ‖b‖.
func relDiff(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// Four peers that each train a quarter of the batch in sync mode end with
// the parameters of one machine training the whole batch, and all with
// bitwise the same.
func TestSyncFourPeersEqualOne(t *testing.T) {
	b := loadBase(t)
	for _, method := range []string{"full", "lora"} {
		t.Run(method, func(t *testing.T) {
			const steps = 5
			ref := b.trainer(t, job(method, steps))
			for range steps {
				if _, err := ref.RunStep(); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
			defer cancel()
			peers := newPeers(t, 4)
			var ms []*member
			for _, p := range peers {
				// Every member checks the one before it every round:
				// honest work passes its recomputation.
				ms = append(ms, join(t, p, b.trainer(t, job(method, steps)), Config{Job: "fox-" + method, MinPeers: 4, Verify: 1}))
			}
			runAll(ctx, ms)
			waitAll(t, ms)
			want := values(ref)
			for i, m := range ms {
				reps := m.rounds()
				if len(reps) != steps {
					t.Fatalf("peer %d: %d rounds reported, want %d", i, len(reps), steps)
				}
				for k, r := range reps {
					if len(r.Members) != 4 || len(r.Dropped) != 0 {
						t.Fatalf("peer %d round %d: members %d, dropped %v", i, r.Round, len(r.Members), r.Dropped)
					}
					// Every member sees the same shares: what they sign.
					if own := r.Shares[slices.Index(r.Members, peers[i].h.ID())]; len(r.Shares) != 4 || own == 0 ||
						!slices.Equal(r.Shares, ms[0].rounds()[k].Shares) {
						t.Errorf("peer %d round %d: shares %v, peer 0's %v", i, r.Round, r.Shares, ms[0].rounds()[k].Shares)
					}
				}
				if m.g.State() != ms[0].g.State() || train.Hash(m.tr.Params) != m.g.State() {
					t.Errorf("peer %d holds other parameters than peer 0", i)
				}
				if d := relDiff(values(m.tr), want); d > 1e-5 || m.tr.Step != steps {
					t.Errorf("peer %d: step %d, relative difference %.2g from one machine", i, m.tr.Step, d)
				}
			}
			// The loss the group reports is the whole batch's.
			first := ms[0].rounds()[0]
			if first.Tokens == 0 || math.IsNaN(first.Loss) || first.Loss <= 0 {
				t.Errorf("round 0: loss %v over %d tokens", first.Loss, first.Tokens)
			}
		})
	}
}

// DiLoCo with one peer, H = 1, outer lr 1 and momentum 0 is plain AdamW.
func TestDiLoCoOneStepIsAdamW(t *testing.T) {
	b := loadBase(t)
	const steps = 3
	ref := b.trainer(t, job("lora", steps))
	for range steps {
		if _, err := ref.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	p := newPeer(t)
	m := join(t, p, b.trainer(t, job("lora", steps)), Config{Job: "fox-diloco1", Mode: DiLoCo, InnerSteps: 1, OuterLR: 1, OuterMomentum: 0})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m.run(ctx)
	if err := m.wait(t); err != nil {
		t.Fatal(err)
	}
	if d := relDiff(values(m.tr), values(ref)); d > 1e-6 {
		t.Errorf("relative difference %.2g from AdamW", d)
	}
}

// Three peers in DiLoCo mode with int8 averaging and error feedback: the
// same parameters on all after every round, and the loss falls.
func TestDiLoCoInt8(t *testing.T) {
	b := loadBase(t)
	const steps = 12
	peers := newPeers(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	var ms []*member
	for _, p := range peers {
		j := job("lora", steps)
		j.LR = 1e-2
		// No checks: every member sends its vector (the bytes below).
		ms = append(ms, join(t, p, b.trainer(t, j), Config{Job: "fox-diloco", Mode: DiLoCo, InnerSteps: 3, Encoding: allreduce.Int8, MinPeers: 3, Verify: -1}))
	}
	runAll(ctx, ms)
	waitAll(t, ms)
	for i, m := range ms {
		reps := m.rounds()
		if len(reps) != steps/3 {
			t.Fatalf("peer %d: %d rounds, want %d", i, len(reps), steps/3)
		}
		for k, r := range reps {
			if r.State != ms[0].rounds()[k].State {
				t.Fatalf("peer %d round %d: state differs from peer 0's", i, k)
			}
		}
		if first, last := reps[0].Loss, reps[len(reps)-1].Loss; !(last < first) {
			t.Errorf("peer %d: loss %v in the first round, %v in the last", i, first, last)
		}
	}
	// Each member sends its vector, less its own part, and its averaged
	// part to the others: 2(N-1)/N of the vector, at one byte a value
	// and a float32 scale a block in int8; float32 would be 4 bytes.
	n := float64(train.VectorLen(ms[0].tr.Params))
	int8Bytes := 2 * 2.0 / 3 * n * (1 + 4.0/allreduce.BlockSize)
	if sent := float64(ms[0].rounds()[0].Sent); sent < int8Bytes || sent > 1.1*int8Bytes {
		t.Errorf("round 0 sent %.0f bytes for %.0f parameters; int8 should take %.0f", sent, n, int8Bytes)
	}
}

// A peer dies in the middle of an all-reduce: the others finish that
// round without it within its deadline and go on; a peer started later in
// its place catches up from a checkpoint the members make for it, and the
// three end with the same parameters.
func TestPeerDiesAndAnotherJoins(t *testing.T) {
	b := loadBase(t)
	const steps = 100
	peers := newPeers(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	cfg := Config{Job: "fox-churn", MinPeers: 2, RoundTimeout: 4 * time.Second}
	const dieAt = 3
	ms, lm, joinedAt := dieAndJoin(ctx, t, b, peers, "lora", steps, cfg, dieAt)
	victim := ms[2]
	survivors := []*member{ms[0], ms[1], lm}
	for i, m := range survivors {
		if m.g.State() != ms[0].g.State() || m.tr.Step != steps {
			t.Errorf("survivor %d at step %d with other parameters", i, m.tr.Step)
		}
	}
	dead := victim.p.h.ID()
	var sawDrop bool
	for _, r := range ms[0].rounds() {
		if r.Round == dieAt {
			sawDrop = slices.Contains(r.Dropped, dead)
			// The dead peer's share of the batch goes back to the data
			// cursor: the next rounds train it.
			from, to := train.ShareRange(8, slices.Index(r.Members, dead), len(r.Members))
			if r.Redo != to-from || r.Redo == 0 {
				t.Errorf("round %d handed back %d sequences; the dead peer's share was %d", r.Round, r.Redo, to-from)
			}
			if r.Wall > cfg.RoundTimeout+cfg.ExpectWait+time.Second {
				t.Errorf("the round the peer died in took %v", r.Wall)
			}
		}
		if r.Round > dieAt && slices.Contains(r.Members, dead) {
			t.Errorf("round %d still counts the dead peer", r.Round)
		}
	}
	if !sawDrop {
		t.Errorf("round %d does not report the dead peer as dropped", dieAt)
	}
	lr := lm.rounds()
	if len(lr) == 0 {
		t.Fatal("the late peer took part in no round")
	}
	// On a loaded machine a member may miss a round and catch up again,
	// but the job ends with all three.
	if last := lr[len(lr)-1]; len(last.Members) != 3 || last.Round != steps-1 {
		t.Errorf("the late peer's last round, %d, had %d members", last.Round, len(last.Members))
	}
	t.Logf("the late peer ended its first round, %d, %v after it started", lr[0].Round, lm.first.Sub(joinedAt).Round(time.Millisecond))
}

// A peer that sends NaN, and one that sends its gradients scaled 100×:
// each is refused, told so and left out, and the others' parameters stay
// finite and the loss falls.
func TestBadContributionsRefused(t *testing.T) {
	b := loadBase(t)
	for name, tamper := range map[string]func([]float32){
		"NaN":  func(v []float32) { v[len(v)/2] = float32(math.NaN()) },
		"100x": func(v []float32) { scale(v, 100) },
		// Within the norm check and a trimmed mean's reach: only
		// recomputing the work catches it.
		"plausible": func(v []float32) { scale(v, 1.5) },
	} {
		t.Run(name, func(t *testing.T) {
			const steps, badAt = 10, 2
			peers := newPeers(t, 4)
			ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
			defer cancel()
			cfg := Config{Job: "fox-bad-" + name, MinPeers: 3, RoundTimeout: 4 * time.Second, ExpectWait: time.Second}
			switch name {
			case "plausible":
				cfg.Verify = 1 // every member checks the one before it, every round
			case "100x":
				cfg.Verify = -1 // the norm check alone (a recomputation would ban it)
			}
			var ms []*member
			for _, p := range peers {
				j := job("lora", steps)
				j.LR = 1e-2
				ms = append(ms, join(t, p, b.trainer(t, j), cfg))
			}
			bad := ms[3]
			bad.g.beforeAverage = func(round int, v []float32) {
				if round >= badAt {
					tamper(v)
				}
			}
			runAll(ctx, ms)
			// Work found wrong (values not finite, or not what its
			// share gives) bans its sender; work far from the others'
			// only leaves it out of the round, as an honest outlier's
			// would be.
			banned := name != "100x"
			if banned {
				if err := bad.wait(t); !errors.Is(err, ErrRefused) {
					t.Fatalf("the bad peer's Run: %v, want ErrRefused", err)
				}
			} else {
				// Left out of every round, it may end behind the others.
				defer func() {
					cancel()
					if err := bad.wait(t); err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("the outlier's Run: %v", err)
					}
				}()
			}
			for i, m := range ms[:3] {
				if err := m.wait(t); err != nil {
					t.Fatal(err)
				}
				reps := m.rounds()
				if why := reps[badAt].Rejected[bad.p.h.ID()]; why == "" {
					t.Errorf("peer %d, round %d: the bad peer was not refused (dropped %v)", i, badAt, reps[badAt].Dropped)
				} else if i == 0 {
					t.Logf("refused: %s", why)
				}
				for _, r := range reps[badAt+1:] {
					if banned && slices.Contains(r.Members, bad.p.h.ID()) {
						t.Errorf("round %d still has the bad peer", r.Round)
					}
					// The outlier stays a member (it holds the same
					// parameters), its work left out every round.
					if !banned && (!slices.Contains(r.Members, bad.p.h.ID()) || !allreduce.Outlier(r.Rejected[bad.p.h.ID()])) {
						t.Errorf("round %d: members %d, rejected %v", r.Round, len(r.Members), r.Rejected)
					}
				}
				for _, v := range values(m.tr) {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatal("a parameter is not finite")
					}
				}
				if first, last := reps[0].Loss, reps[len(reps)-1].Loss; !(last < first) {
					t.Errorf("peer %d: loss %v first, %v last", i, first, last)
				}
				if m.g.State() != ms[0].g.State() {
					t.Errorf("peer %d holds other parameters", i)
				}
			}
		})
	}
}

func scale(v []float32, s float32) {
	for i := range v {
		v[i] *= s
	}
}
