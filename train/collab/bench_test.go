package collab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/internal/netem"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
)

// Benchmarks of groups of real peers on loopback training the built-in
// model (docs/performance.md, "Training together"; make bench-train).

// benchSteps is the length of the averaging benchmark's job: DiLoCo
// averages every benchInner steps, sync every step.
const benchSteps, benchInner = 40, 10

// BenchmarkAveraging trains one job with 4 peers in sync mode (float32
// gradients every step) and in DiLoCo mode with int8 and 4-bit averaging
// every benchInner steps, the same total steps, and reports the bytes
// each member sent per optimizer step, their ratio to sync's, the
// group's loss in the last round and the loss of the final parameters on
// the whole training text (eval-loss, measured the same way for every
// mode; eval-loss-0 is the base model's).
func BenchmarkAveraging(b *testing.B) {
	quiet(b)
	bs := loadBase(b)
	modes := []struct {
		name string
		cfg  Config
	}{
		// Recomputing others' work adds compute, not bytes: off.
		{"sync", Config{Mode: Sync, Verify: -1}},
		{"diloco-int8", Config{Mode: DiLoCo, InnerSteps: benchInner, Encoding: allreduce.Int8}},
		{"diloco-q4", Config{Mode: DiLoCo, InnerSteps: benchInner, Encoding: allreduce.Q4}},
		{"diloco-int8-overlap", Config{Mode: DiLoCo, InnerSteps: benchInner, Encoding: allreduce.Int8, Overlap: true}},
	}
	for _, method := range []string{"lora", "full"} {
		syncBytes := math.NaN() // sync's bytes per step in this run, for the ratios
		b.Run(method, func(b *testing.B) {
			for _, mode := range modes {
				b.Run(mode.name, func(b *testing.B) {
					var res averagingResult
					for i := range b.N {
						cfg := mode.cfg
						cfg.Job = fmt.Sprintf("bench-%s-%s-%d", method, mode.name, i)
						res = runAveraging(b, bs, method, cfg)
					}
					b.ReportMetric(res.perStep, "sent-B/step")
					b.ReportMetric(res.all, "all-B/step")
					b.ReportMetric(res.reported, "reported-B/step")
					if mode.cfg.Mode == Sync {
						syncBytes = res.perStep
					}
					if !math.IsNaN(syncBytes) {
						b.ReportMetric(res.perStep/syncBytes, "x-sync")
					}
					b.ReportMetric(res.loss, "loss")
					b.ReportMetric(res.eval, "eval-loss")
					b.ReportMetric(res.eval0, "eval-loss-0")
					b.ReportMetric(float64(res.params), "params")
					b.ReportMetric(float64(res.dropped), "dropped")
				})
			}
		})
	}
}

// quiet drops the peers' logs, which would cut into the benchmark's
// lines, unless -v.
func quiet(b *testing.B) {
	if testing.Verbose() {
		return
	}
	prev := logging.SetOutput(io.Discard)
	b.Cleanup(func() { logging.SetOutput(prev) })
}

type averagingResult struct {
	// bytes sent per member per optimizer step: the all-reduce's
	// streams, everything the host sent, the sum of Report.Sent
	perStep, all, reported float64
	loss, eval, eval0      float64
	params                 int
	dropped                int // members left out of a round, summed over rounds
}

func runAveraging(b *testing.B, bs base, method string, cfg Config) averagingResult {
	b.Helper()
	b.StopTimer()
	const n = 4
	peers := newPeers(b, n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg.MinPeers = n
	var ms []*member
	for _, p := range peers {
		ms = append(ms, join(b, p, bs.trainer(b, job(method, benchSteps)), cfg))
	}
	ev := bs.evaluator(b, job(method, benchSteps))
	eval0 := ev.loss(b, ms[0].tr)
	for _, p := range peers {
		p.h.Traffic().Reset()
	}
	b.StartTimer()
	for _, m := range ms {
		m.run(ctx)
	}
	for _, m := range ms {
		if err := m.wait(b); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var reported int64
	for i, m := range ms {
		if m.tr.Step != benchSteps || m.g.State() != ms[0].g.State() {
			b.Fatalf("peer %d: step %d, same parameters as peer 0: %v", i, m.tr.Step, m.g.State() == ms[0].g.State())
		}
		for _, r := range m.rounds() {
			if len(r.Members) != n {
				b.Fatalf("peer %d round %d: %d members", i, r.Round, len(r.Members))
			}
			reported += r.Sent
		}
	}
	// What the hosts wrote: the all-reduce's streams, and everything
	// (member records, gossip, the DHT, identify) too.
	var sent, all uint64
	for _, p := range peers {
		for _, pb := range p.h.Traffic().ByProtocol() {
			all += pb.Out
			if pb.Protocol == allreduce.Protocol {
				sent += pb.Out
			}
		}
	}
	reps := ms[0].rounds()
	res := averagingResult{
		perStep:  float64(sent) / n / benchSteps,
		all:      float64(all) / n / benchSteps,
		reported: float64(reported) / n / benchSteps,
		loss:     reps[len(reps)-1].Loss,
		eval:     ev.loss(b, ms[0].tr),
		eval0:    eval0,
		params:   train.VectorLen(ms[0].tr.Params),
	}
	for _, r := range reps {
		res.dropped += len(r.Dropped)
	}
	b.StartTimer()
	return res
}

// evaluator measures the loss of a trainer's parameters on every
// sequence of the training text.
type evaluator struct{ tr *train.Trainer }

func (bs base) evaluator(tb testing.TB, j *train.Job) evaluator {
	tb.Helper()
	var recs []train.Record
	for range 3 {
		recs = append(recs, train.Record{Text: text})
	}
	seqs, err := train.Pack(train.Tokenize(recs, bs.tok), j.SeqLen, 0)
	if err != nil {
		tb.Fatal(err)
	}
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { be.Close() })
	tr, err := train.NewTrainer(j, bs.w, be, seqs, seqs)
	if err != nil {
		tb.Fatal(err)
	}
	return evaluator{tr}
}

func (e evaluator) loss(tb testing.TB, of *train.Trainer) float64 {
	tb.Helper()
	if err := train.Unflatten(e.tr.Params, train.Values, train.Flatten(of.Params, train.Values, nil)); err != nil {
		tb.Fatal(err)
	}
	l, err := e.tr.EvalLoss()
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// timedStates times the checkpoint fetches of a peer.
type timedStates struct {
	States
	mu    sync.Mutex
	gets  [][2]time.Time // when each began and ended
	bytes int
}

func (s *timedStates) Get(ctx context.Context, c cid.Cid, from []peer.ID) ([]byte, error) {
	t0 := time.Now()
	data, err := s.States.Get(ctx, c, from)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets = append(s.gets, [2]time.Time{t0, time.Now()})
	if err == nil {
		s.bytes = len(data)
	}
	return data, err
}

// BenchmarkLateJoiner: 3 members train a sync job; a 4th peer starts
// once they are joinAt rounds in. Reported: the time from its start until
// its first round ends (join-s), split into the wait until it begins
// fetching a checkpoint (wait-s: finding the group, asking to join, the
// members making the checkpoint), the fetches (fetch-s; fetches counts
// them: a joiner that finds the group gone on by the time it holds the
// checkpoint asks again) and the rest (after-s: checking and restoring
// the last, then the round); the checkpoint's size; how long the
// members' longest round around the join took (stall-s) against their
// median round (round-s); and the members left out of a round.
func BenchmarkLateJoiner(b *testing.B) {
	quiet(b)
	bs := loadBase(b)
	for _, method := range []string{"lora", "full"} {
		b.Run(method, func(b *testing.B) {
			var res joinResult
			for i := range b.N {
				res = runLateJoiner(b, bs, method, fmt.Sprintf("bench-join-%s-%d", method, i))
			}
			b.ReportMetric(res.join.Seconds(), "join-s")
			b.ReportMetric(res.wait.Seconds(), "wait-s")
			b.ReportMetric(res.fetch.Seconds(), "fetch-s")
			b.ReportMetric(float64(res.fetches), "fetches")
			b.ReportMetric(res.after.Seconds(), "after-s")
			b.ReportMetric(float64(res.bytes), "ckpt-B")
			b.ReportMetric(res.stall.Seconds(), "stall-s")
			b.ReportMetric(res.round.Seconds(), "round-s")
			b.ReportMetric(float64(res.dropped), "dropped")
		})
	}
}

type joinResult struct {
	join, wait, fetch, after time.Duration
	stall, round             time.Duration // the join round's wall time, the median round's
	bytes, fetches           int
	dropped                  int // members left out of a round, summed over rounds
}

func runLateJoiner(b *testing.B, bs base, method, id string) joinResult {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	const steps, joinAt = 40, 5
	peers := newPeers(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{Job: id, MinPeers: 3}
	var ms []*member
	for _, p := range peers {
		ms = append(ms, join(b, p, bs.trainer(b, job(method, steps)), cfg))
	}
	for _, m := range ms {
		m.run(ctx)
	}
	for ms[0].g.Round() < joinAt && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	late := newPeer(b)
	connect(b, append([]*peerNode{late}, peers...)...)
	ts := &timedStates{States: late.states}
	tr := bs.trainer(b, job(method, steps))
	g, err := New(late.h.Libp2p(), late.dir, late.ar, tr, ts, cfg)
	if err != nil {
		b.Fatal(err)
	}
	lm := &member{p: late, tr: tr, g: g}
	b.StartTimer()
	started := time.Now()
	lm.run(ctx)
	for _, m := range append(ms, lm) {
		if err := m.wait(b); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	lr := lm.rounds()
	if len(lr) == 0 || len(ts.gets) == 0 || lm.g.State() != ms[0].g.State() {
		b.Fatalf("the late peer: %d rounds, %d checkpoints fetched, same parameters: %v", len(lr), len(ts.gets), lm.g.State() == ms[0].g.State())
	}
	res := joinResult{
		join:  lm.first.Sub(started),
		wait:  ts.gets[0][0].Sub(started),
		bytes: ts.bytes,
	}
	// The fetches until its first round ended.
	last := ts.gets[0][1]
	for _, g := range ts.gets {
		if g[1].After(lm.first) {
			break
		}
		res.fetch += g[1].Sub(g[0])
		res.fetches++
		last = g[1]
	}
	res.after = lm.first.Sub(last)
	var walls []time.Duration
	for _, r := range ms[0].rounds() {
		walls = append(walls, r.Wall)
		res.dropped += len(r.Dropped)
		if r.Round == lr[0].Round-1 || r.Round == lr[0].Round {
			res.stall = max(res.stall, r.Wall)
		}
	}
	slices.Sort(walls)
	res.round = walls[len(walls)/2]
	return res
}

// BenchmarkUtilisation trains a DiLoCo job (int8, InnerSteps 100, 300
// steps of 512 tokens in sequences of 64) with 4 peers on links shaped
// as volunteers' home links: every peer uploads and downloads 100 Mbit/s
// and every link delays 25 ms each way (internal/netem), and reports the
// compute utilisation: the time the peers spent in forward, backward and
// the optimizer over their rounds' wall time (util; util-min, the lowest
// peer's), the same without the first round, which waits Settle for the
// set of members to form (util-steady), and the median time a round
// spends outside compute (comm-s); each method without and with Overlap
// (the averaging during the next round's training).
func BenchmarkUtilisation(b *testing.B) {
	quiet(b)
	bs := loadBase(b)
	for _, run := range []struct {
		method  string
		overlap bool
	}{{"lora", false}, {"full", false}, {"lora", true}, {"full", true}} {
		method := run.method
		name := method
		if run.overlap {
			name += "-overlap"
		}
		b.Run(name, func(b *testing.B) {
			for i := range b.N {
				b.StopTimer()
				const n, inner, steps = 4, 100, 300
				peers := newPeersOn(b, netem.New(25*time.Millisecond, 100e6/8), n)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				j := job(method, steps)
				j.SeqLen, j.BatchTokens = 64, 512
				cfg := Config{Job: fmt.Sprintf("util-%s-%d", name, i), Mode: DiLoCo, InnerSteps: inner,
					Encoding: allreduce.Int8, MinPeers: n, Overlap: run.overlap}
				var ms []*member
				for _, p := range peers {
					ms = append(ms, join(b, p, bs.trainer(b, j), cfg))
				}
				b.StartTimer()
				for _, m := range ms {
					m.run(ctx)
				}
				for _, m := range ms {
					if err := m.wait(b); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				cancel()
				var comp, wall, compSteady, wallSteady time.Duration
				utilMin := math.Inf(1)
				var comm []float64
				for k, m := range ms {
					var c, w time.Duration
					for _, r := range m.rounds() {
						if len(r.Members) != n {
							b.Fatalf("peer %d round %d: %d members", k, r.Round, len(r.Members))
						}
						c, w = c+r.Compute, w+r.Wall
						if r.Round > 0 {
							compSteady, wallSteady = compSteady+r.Compute, wallSteady+r.Wall
						}
						comm = append(comm, (r.Wall - r.Compute).Seconds())
					}
					comp, wall = comp+c, wall+w
					utilMin = min(utilMin, c.Seconds()/w.Seconds())
				}
				slices.Sort(comm)
				b.ReportMetric(comp.Seconds()/wall.Seconds(), "util")
				b.ReportMetric(utilMin, "util-min")
				b.ReportMetric(compSteady.Seconds()/wallSteady.Seconds(), "util-steady")
				b.ReportMetric(comm[len(comm)/2], "comm-s")
				b.ReportMetric(wall.Seconds()/n/float64(steps/inner), "round-s")
				b.StartTimer()
			}
		})
	}
}

// BenchmarkInnerCommit measures what a checked DiLoCo round pays before
// its inner steps: writing the member's inner state (parameters, AdamW
// moments, residual) and storing it in the block store, whose CID the
// member then announces. It reports, from the same run, one inner step of
// the same job (step-ms) and the commit's share of a round of the
// default 100 inner steps.
func BenchmarkInnerCommit(b *testing.B) {
	bs := loadBase(b)
	for _, method := range []string{"lora", "full"} {
		b.Run(method, func(b *testing.B) {
			j := job(method, 4)
			tr := bs.trainer(b, j)
			p := newPeer(b)
			t0 := time.Now()
			for range 2 {
				if _, err := tr.RunStep(); err != nil {
					b.Fatal(err)
				}
			}
			step := time.Since(t0) / 2
			residual := make([]float32, train.VectorLen(tr.Params))
			var size int
			b.ResetTimer()
			for range b.N {
				var buf bytes.Buffer
				if err := tr.WriteInnerCheckpoint(&buf, residual); err != nil {
					b.Fatal(err)
				}
				size = buf.Len()
				if _, err := p.states.Put(context.Background(), buf.Bytes()); err != nil {
					b.Fatal(err)
				}
				// The next commit differs, as the next round's does.
				residual[0]++
			}
			commit := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(size)/1e6, "MB")
			b.ReportMetric(float64(step.Microseconds())/1e3, "step-ms")
			b.ReportMetric(float64(commit)/float64(100*step+commit), "share-of-round")
		})
	}
}
