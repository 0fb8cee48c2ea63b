//go:build unix

package swarm_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/swarm"
)

// loopbackHost is a real node host (TCP on 127.0.0.1, TLS or Noise, yamux).
func loopbackHost(b testing.TB) *p2p.Host {
	h, err := p2p.New(p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(), p2p.MemoryDatastore(),
		p2p.ForceDHTMode(p2p.DHTModeClient))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// synthModel writes a synthetic model of the given shape and loads it.
func synthModel(b testing.TB, shape string, dt kernels.DType) *model.Weights {
	p := filepath.Join(b.TempDir(), shape+".gguf")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := checkpoints.Synth(f, shape, dt, 1); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	m, err := checkpoints.Load(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m.Weights
}

// BenchmarkPipelineDecode decodes the same tokens with a synthetic model
// (Q8_0 weights) in one process and through three servers on loopback
// TCP, in the same run, and reports both rates, their ratio and the cost
// of one hop per token. Every engine runs one thread; the servers and the
// client share the machine's cores.
//
//	go test -run - -bench PipelineDecode ./swarm/
func BenchmarkPipelineDecode(b *testing.B) {
	for _, shape := range []string{"stories15M", "stories110M"} {
		b.Run(shape, func(b *testing.B) { benchPipeline(b, shape) })
	}
}

func benchPipeline(b *testing.B, shape string) {
	const tokens = 128
	w := synthModel(b, shape, kernels.Q8_0)
	cfg := &w.Config
	third := cfg.Layers / 3
	spans := []swarm.Span{{0, third}, {third, 2 * third}, {2 * third, cfg.Layers}}

	var route []swarm.Hop
	var infos []peer.AddrInfo
	for _, sp := range spans {
		h := loopbackHost(b)
		s, err := swarm.NewServer(h.Libp2p(), w, backend(b), swarm.ServerConfig{Model: shape, Span: sp})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		route = append(route, swarm.Hop{Peer: h.ID(), Span: sp})
		infos = append(infos, h.AddrInfo())
	}
	ch := loopbackHost(b)
	ctx := context.Background()
	for _, ai := range infos {
		if err := ch.Connect(ctx, ai); err != nil {
			b.Fatal(err)
		}
	}
	opts := model.GenerateOptions{MaxTokens: tokens}
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16} {
		b.Run(dt.String(), func(b *testing.B) {
			c, err := swarm.NewClient(ch.Libp2p(), w, backend(b), swarm.ClientConfig{Model: shape, DType: dt})
			if err != nil {
				b.Fatal(err)
			}
			local := model.NewEngine(w, backend(b))
			var tLocal, tSwarm time.Duration
			for b.Loop() {
				st, err := local.Generate(ctx, []int{1}, opts, func(int) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				tLocal += st.GenerateDuration
				s, err := c.Open(ctx, route, tokens+1)
				if err != nil {
					b.Fatal(err)
				}
				st, err = s.Generate(ctx, []int{1}, opts, func(int) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
				tSwarm += st.GenerateDuration
			}
			n := float64(b.N) * (tokens - 1) // decode steps (the first token comes from the prompt)
			localRate := n / tLocal.Seconds()
			swarmRate := n / tSwarm.Seconds()
			b.ReportMetric(localRate, "local-tok/s")
			b.ReportMetric(swarmRate, "swarm-tok/s")
			b.ReportMetric(swarmRate/localRate, "ratio")
			b.ReportMetric((tSwarm-tLocal).Seconds()/n/float64(len(route))*1e6, "µs/hop/tok")
		})
	}
}

// batchWait sets the servers' ServerConfig.BatchWait in the benchmarks
// (0: the default), to compare batching policies.
var batchWait = flag.Duration("batchwait", 0, "the benchmark servers' BatchWait (negative: no wait)")

// benchNet is a pipeline of servers on loopback hosts and a client host
// connected to all of them.
type benchNet struct {
	b      *testing.B
	w      *model.Weights
	shape  string
	client *p2p.Host
	route  []swarm.Hop
	srvs   []*swarm.Server
	hosts  []*p2p.Host
	// threads is each server's compute threads.
	threads int
}

// thirds splits the model's layers into three spans.
func thirds(layers int) []swarm.Span {
	t := layers / 3
	return []swarm.Span{{0, t}, {t, 2 * t}, {2 * t, layers}}
}

func newBenchNet(b *testing.B, w *model.Weights, shape string) *benchNet {
	return &benchNet{b: b, w: w, shape: shape, client: loopbackHost(b), threads: 1}
}

// backendThreads opens the cpu backend with the given number of threads.
func backendThreads(b testing.TB, threads int) kernels.Backend {
	be, err := kernels.Open("cpu", threads)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

// server starts a server for span on a new host, connects the client host
// to it and returns its hop. The host closes with the benchmark.
func (n *benchNet) server(span swarm.Span) (*swarm.Server, *p2p.Host, swarm.Hop) {
	b := n.b
	h := loopbackHost(b)
	cfg := swarm.ServerConfig{Model: n.shape, Span: span}
	cfg.BatchWait = *batchWait
	s, err := swarm.NewServer(h.Libp2p(), n.w, backendThreads(b, n.threads), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := n.client.Connect(context.Background(), h.AddrInfo()); err != nil {
		b.Fatal(err)
	}
	return s, h, swarm.Hop{Peer: h.ID(), Span: span}
}

// pipeline starts one server per span, in order.
func (n *benchNet) pipeline(spans []swarm.Span) {
	for _, sp := range spans {
		s, h, hop := n.server(sp)
		n.srvs, n.hosts, n.route = append(n.srvs, s), append(n.hosts, h), append(n.route, hop)
	}
}

func (n *benchNet) newClient(cfg swarm.ClientConfig) *swarm.Client {
	cfg.Model = n.shape
	c, err := swarm.NewClient(n.client.Libp2p(), n.w, backend(n.b), cfg)
	if err != nil {
		n.b.Fatal(err)
	}
	return c
}

// stats sums the servers' counters.
func (n *benchNet) stats() swarm.ServerStats {
	var t swarm.ServerStats
	for _, s := range n.srvs {
		st := s.Stats()
		t.Steps += st.Steps
		t.Passes += st.Passes
		t.Batches += st.Batches
		t.Waits += st.Waits
		t.WaitsExpired += st.WaitsExpired
		for i, v := range st.BatchRows {
			t.BatchRows[i] += v
		}
	}
	return t
}

// BenchmarkPipelineThroughput runs 1, 4 and 16 concurrent streams, each
// its own client and session generating its own tokens, through three
// servers on loopback TCP serving a synthetic stories110M-shaped Q8_0
// model, with one compute thread per client and one or two per server.
// Each iteration first runs one stream alone, then all the streams
// together, so the ratio compares two rates measured in the same run.
// Reported: the aggregate and per-stream decode rates (tok/s,
// tok/s/stream), the one-stream rate and their ratio (x1stream), the
// process's CPU time per token of the many streams and the one-stream
// figure over it (cpu-ms/tok, x1stream-cpu: the gain for the same CPU,
// steadier than the rates on a shared machine), the mean rows per forward
// pass over the servers, and the share of the servers' waits for a batch
// that ran out. -batchwait sets the servers' BatchWait (-1ns: no waiting).
//
//	go test -run - -bench PipelineThroughput -benchtime 3x -count 3 ./swarm/
func BenchmarkPipelineThroughput(b *testing.B) {
	const shape = "stories110M"
	w := synthModel(b, shape, kernels.Q8_0)
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			n := newBenchNet(b, w, shape)
			n.threads = threads
			n.pipeline(thirds(w.Config.Layers))
			var clients []*swarm.Client
			shared := n.newClient(swarm.ClientConfig{DType: kernels.F16})
			for _, streams := range []int{1, 4, 16} {
				for len(clients) < streams {
					clients = append(clients, n.newClient(swarm.ClientConfig{DType: kernels.F16}))
				}
				b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
					benchStreams(b, n, clients[:streams])
				})
				// One client for every stream, as a node serving many
				// requests runs them: its sessions share the output head.
				if streams > 1 {
					b.Run(fmt.Sprintf("streams=%d/client=shared", streams), func(b *testing.B) {
						same := make([]*swarm.Client, streams)
						for i := range same {
							same[i] = shared
						}
						benchStreams(b, n, same)
						batches, rows := shared.HeadStats()
						if batches > 0 {
							b.ReportMetric(float64(rows)/float64(batches), "head-rows/pass")
						}
					})
				}
			}
		})
	}
}

// benchStreams measures one stream alone, then all of clients' streams
// at once, each iteration, and reports both rates and their ratio.
func benchStreams(b *testing.B, n *benchNet, clients []*swarm.Client) {
	streams := len(clients)
	var one, all, cpuOne, cpuAll float64
	before := n.stats()
	for b.Loop() {
		r, c := runStreams(b, n, clients[:1])
		one, cpuOne = one+r, cpuOne+c
		r, c = runStreams(b, n, clients)
		all, cpuAll = all+r, cpuAll+c
	}
	after := n.stats()
	one /= float64(b.N)
	all /= float64(b.N)
	b.ReportMetric(all, "tok/s")
	b.ReportMetric(all/float64(streams), "tok/s/stream")
	b.ReportMetric(one, "1stream-tok/s")
	b.ReportMetric(all/one, "x1stream")
	b.ReportMetric(cpuAll/float64(b.N)*1e3, "cpu-ms/tok")
	b.ReportMetric(cpuOne/cpuAll, "x1stream-cpu")
	// The one-stream runs add passes of one row each: take them out.
	single := int64(b.N) * int64(streamTokens) * int64(len(n.srvs))
	steps, passes := after.Steps-before.Steps-single, after.Passes-before.Passes-single
	b.ReportMetric(float64(steps)/float64(passes), "rows/pass")
	if waits := after.Waits - before.Waits; waits > 0 {
		b.ReportMetric(float64(after.WaitsExpired-before.WaitsExpired)/float64(waits), "expired/wait")
	}
}

// streamTokens is what each stream of the throughput benchmark generates.
const streamTokens = 64

// runStreams opens a session per client, starts them all at once, each
// generating streamTokens tokens from its own prompt, and returns the
// aggregate rate: tokens over the wall time until the last one finished,
// and the process's CPU time per token meanwhile (servers and clients
// together).
func runStreams(b *testing.B, n *benchNet, clients []*swarm.Client) (rate, cpuPerToken float64) {
	ctx := context.Background()
	sessions := make([]*swarm.Session, len(clients))
	for i, c := range clients {
		s, err := c.Open(ctx, n.route, streamTokens+1)
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	opts := model.GenerateOptions{MaxTokens: streamTokens}
	errs := make(chan error, len(sessions))
	cpu0 := cpuTime()
	start := time.Now()
	for i, s := range sessions {
		go func() {
			_, err := s.Generate(ctx, []int{1 + i}, opts, func(int) error { return nil })
			errs <- err
		}()
	}
	for range sessions {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	d := time.Since(start)
	cpu := cpuTime() - cpu0
	for _, s := range sessions {
		s.Close()
	}
	tokens := float64(len(sessions) * streamTokens)
	return tokens / d.Seconds(), cpu.Seconds() / tokens
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForwardRows is a server's forward pass over a third of a
// synthetic stories110M-shaped Q8_0 model (one thread) for batches of 1
// to 16 sessions' decode steps, each session holding 64 positions: the
// cost of each row. The passes go round the three thirds in turn, as the
// pipeline's servers do, so that the weights come from memory, not from
// the cache, as they do there.
//
//	go test -run - -bench ForwardRows ./swarm/
func BenchmarkForwardRows(b *testing.B) {
	const shape, hist = "stories110M", 64
	w := synthModel(b, shape, kernels.Q8_0)
	e := model.NewEngine(w, backend(b))
	d := w.Config.Dim
	for _, rows := range []int{1, 2, 3, 4, 5, 8, 16} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			var caches [3][]*model.Cache
			for k, sp := range thirds(w.Config.Layers) {
				for range rows {
					c, err := e.NewCache(sp.First, sp.Last, hist+1)
					if err != nil {
						b.Fatal(err)
					}
					x := make([]float32, hist*d)
					for j := range x {
						x[j] = float32(j%17-8) / 16
					}
					if err := e.Forward(c, x, hist); err != nil {
						b.Fatal(err)
					}
					caches[k] = append(caches[k], c)
				}
			}
			x := make([]float32, rows*d)
			k := 0
			for b.Loop() {
				for j := range x {
					x[j] = float32(j%13-6) / 16
				}
				cs := caches[k]
				k = (k + 1) % 3
				var err error
				if rows == 1 {
					err = e.Forward(cs[0], x, 1)
				} else {
					err = e.ForwardRows(cs, x)
				}
				if err != nil {
					b.Fatal(err)
				}
				for _, c := range cs {
					c.Truncate(hist)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(rows), "µs/row")
		})
	}
}

// BenchmarkFailover measures the time from a hop's death to the next
// token. A session runs through three servers on loopback TCP (synthetic
// stories110M-shaped Q8_0 model, one compute thread each) with a spare
// server for the middle span in ClientConfig.Alternatives. After history
// single-token steps the middle server dies and the client asks for the
// next token; that step detects the failure, opens a session with the
// spare, replays the history to it and goes on.
//
// kill=reset closes the middle server's host, which resets its
// connections: the client sees the reset at once. kill=silent puts the
// middle server behind a relay that stops forwarding without resetting
// anything, as a hung or partitioned peer would: only StepTimeout (set to
// 250 ms here) tells the client.
//
// Reported: kill-ms, from the kill to the next token (the mean over the
// iterations); step-ms, an ordinary step at the same history in the same
// iteration; close-ms, how long the host's Close itself took (part of
// kill-ms for kill=reset).
//
//	go test -run - -bench Failover -benchtime 5x ./swarm/
func BenchmarkFailover(b *testing.B) {
	const shape = "stories110M"
	w := synthModel(b, shape, kernels.Q8_0)
	n := newBenchNet(b, w, shape)
	spans := thirds(w.Config.Layers)
	_, _, first := n.server(spans[0])
	_, _, last := n.server(spans[2])
	_, _, spare := n.server(spans[1])
	const silentTimeout = 250 * time.Millisecond
	for _, kill := range []string{"reset", "silent"} {
		for _, hist := range []int{16, 128} {
			b.Run(fmt.Sprintf("kill=%s/history=%d", kill, hist), func(b *testing.B) {
				rerouted := 0
				cfg := swarm.ClientConfig{DType: kernels.F16, Alternatives: []swarm.Hop{spare},
					OnEvent: func(ev swarm.Event) {
						if (ev.Kind == swarm.EventReroute || ev.Kind == swarm.EventLeft) && ev.Replayed == hist+1 {
							rerouted++
						}
					}}
				if kill == "silent" {
					cfg.StepTimeout = silentTimeout
				}
				c := n.newClient(cfg)
				var tKill, tStep, tClose time.Duration
				for b.Loop() {
					k, st, cl := failoverOnce(b, n, c, first, last, spans[1], hist, kill == "silent")
					tKill += k
					tStep += st
					tClose += cl
				}
				if rerouted != b.N {
					b.Fatalf("%d re-routes replaying %d positions in %d iterations", rerouted, hist+1, b.N)
				}
				ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(b.N) }
				b.ReportMetric(ms(tKill), "kill-ms")
				b.ReportMetric(ms(tStep), "step-ms")
				b.ReportMetric(ms(tClose), "close-ms")
			})
		}
	}
}

// failoverOnce starts a middle server for span (behind a relay when
// silent), opens a session through first, it and last, runs hist steps,
// kills the middle server and returns the time from the kill to the next
// token, the time of the last ordinary step, and the time the kill took.
func failoverOnce(b *testing.B, n *benchNet, c *swarm.Client, first, last swarm.Hop, span swarm.Span, hist int, silent bool) (kill, step, closing time.Duration) {
	ctx := context.Background()
	srv, h, mid := n.server(span)
	defer srv.Close()
	var r *relay
	if silent {
		r = newRelay(b, n, h)
		defer r.close()
		mid.Peer = r.h.ID()
	}
	s, err := c.Open(ctx, []swarm.Hop{first, mid, last}, hist+1)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	logits := make([]float32, n.w.Config.Vocab)
	for i := 0; i < hist; i++ {
		t := time.Now()
		if err := s.Step(ctx, []int{1 + i%100}, logits); err != nil {
			b.Fatal(err)
		}
		step = time.Since(t)
	}
	t := time.Now()
	if silent {
		r.silence()
	} else {
		h.Close()
	}
	closing = time.Since(t)
	if err := s.Step(ctx, []int{7}, logits); err != nil {
		b.Fatal(err)
	}
	return time.Since(t), step, closing
}

// relay forwards infer streams to a server's host until silenced; then it
// drops what it reads and holds the streams open, answering nothing.
type relay struct {
	h    *p2p.Host
	mute atomic.Bool
	quit chan struct{}
	wg   sync.WaitGroup
}

func newRelay(b *testing.B, n *benchNet, to *p2p.Host) *relay {
	r := &relay{h: loopbackHost(b), quit: make(chan struct{})}
	ctx := context.Background()
	if err := r.h.Connect(ctx, to.AddrInfo()); err != nil {
		b.Fatal(err)
	}
	if err := n.client.Connect(ctx, r.h.AddrInfo()); err != nil {
		b.Fatal(err)
	}
	r.h.Libp2p().SetStreamHandler(p2p.InferProtocol, func(in network.Stream) {
		out, err := r.h.Libp2p().NewStream(ctx, to.ID(), p2p.InferProtocol)
		if err != nil {
			in.Reset()
			return
		}
		r.wg.Go(func() { r.pipe(out, in) })
		r.wg.Go(func() { r.pipe(in, out) })
	})
	return r
}

// pipe copies src to dst until an error, or, once muted, until quit.
func (r *relay) pipe(dst, src network.Stream) {
	defer src.Reset()
	defer dst.Reset()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if r.mute.Load() {
			<-r.quit
			return
		}
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) silence() { r.mute.Store(true) }

// close ends the relay's goroutines and its host.
func (r *relay) close() {
	close(r.quit)
	r.h.Close()
	r.wg.Wait()
}
