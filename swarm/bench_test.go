package swarm_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

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
