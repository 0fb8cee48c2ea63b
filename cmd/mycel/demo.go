package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/swarm"
)

type demoFlags struct {
	model, tokenizer string
	nodes, steps     int
	temp             float32
	seed             uint64
	wire             string
	killAfter        int
}

func newSwarmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "swarm",
		Short: "Inference across a pipeline of nodes",
	}
	cmd.AddCommand(newSwarmDemoCmd(g), newSwarmStatusCmd(g))
	return cmd
}

func newSwarmDemoCmd(g *globals) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo -m MODEL [PROMPT]",
		Short: "Run a local swarm: servers on loopback each serve a span of layers; a client generates through them",
		Long: `Start --nodes libp2p hosts on the loopback interface, each serving one span
of the model's layers over /mycel/infer/1, and a client host that holds the
embedding and the head, opens a session through the chain and generates.
It prints which node serves which layers, then the text, then the speed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prompt := "Once upon a time"
			if len(args) == 1 {
				prompt = args[0]
			}
			return runDemo(cmd.Context(), g, &f, prompt, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.model, "model", "m", "", "model file or CID (required)")
	fl.StringVarP(&f.tokenizer, "tokenizer", "z", "", "tokenizer for models without one inside")
	fl.IntVar(&f.nodes, "nodes", 3, "number of servers")
	fl.IntVarP(&f.steps, "steps", "n", 48, "new tokens")
	fl.Float32Var(&f.temp, "temp", 0, "sampling temperature (0: greedy)")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed")
	fl.StringVar(&f.wire, "wire", "f16", "activation type on the wire: f32, f16 or bf16")
	fl.IntVar(&f.killAfter, "kill-after", 0, "start a spare for the second node's span and stop the second node after this many tokens, to show failover (0: off)")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// demoHost is a loopback-only libp2p host with nothing else running.
func demoHost() (*p2p.Host, error) {
	return p2p.New(p2p.LoopbackOnly(), p2p.NoMDNS(), p2p.NoNAT(), p2p.NoRelay(), p2p.NoQUIC())
}

func runDemo(ctx context.Context, g *globals, f *demoFlags, prompt string, stdout, stderr io.Writer) error {
	wire, err := kernels.ParseDType(f.wire)
	if err != nil {
		return err
	}
	l, err := openModel(ctx, g, f.model, f.tokenizer, true)
	if err != nil {
		return err
	}
	defer l.Close()
	cfg := l.w.Config
	if f.nodes < 1 || f.nodes > cfg.Layers {
		return fmt.Errorf("--nodes %d: between 1 and the model's %d layers", f.nodes, cfg.Layers)
	}
	ids := l.tok.Encode(prompt, tokenizer.EncodeOptions{BOS: l.tok.AddBOS(), ParseSpecial: true})
	if len(ids)+f.steps > cfg.Context {
		return fmt.Errorf("prompt (%d tokens) + -n %d exceed the model's context of %d", len(ids), f.steps, cfg.Context)
	}

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	// serve starts a host with a server for span; its closers run when the
	// demo ends.
	var servers []peer.AddrInfo
	serve := func(span swarm.Span) (*p2p.Host, error) {
		h, err := demoHost()
		if err != nil {
			return nil, err
		}
		closers = append(closers, h.Close)
		be, err := kernels.Open("cpu", 1)
		if err != nil {
			return nil, err
		}
		closers = append(closers, be.Close)
		srv, err := swarm.NewServer(h.Libp2p(), l.w, be, swarm.ServerConfig{Model: "demo", Span: span})
		if err != nil {
			return nil, err
		}
		if err := srv.Start(); err != nil {
			return nil, err
		}
		closers = append(closers, srv.Close)
		servers = append(servers, h.AddrInfo())
		return h, nil
	}
	var route []swarm.Hop
	var hosts []*p2p.Host
	for i := 0; i < f.nodes; i++ {
		span := swarm.Span{First: i * cfg.Layers / f.nodes, Last: (i + 1) * cfg.Layers / f.nodes}
		h, err := serve(span)
		if err != nil {
			return err
		}
		hosts = append(hosts, h)
		route = append(route, swarm.Hop{Peer: h.ID(), Span: span})
		fmt.Fprintf(stderr, "node %d  %s  serves layers %s  at %s\n", i+1, h.ID(), span, h.Addrs()[0])
	}
	// With --kill-after, a spare serves the span of the second node, which
	// is stopped mid-generation; the client fails over to the spare and
	// replays what it sent.
	var spares []swarm.Hop
	var victim func() error
	if f.killAfter > 0 {
		if f.nodes < 2 {
			return fmt.Errorf("--kill-after needs at least 2 nodes")
		}
		h, err := serve(route[1].Span)
		if err != nil {
			return err
		}
		spares = append(spares, swarm.Hop{Peer: h.ID(), Span: route[1].Span})
		victim = hosts[1].Close
		fmt.Fprintf(stderr, "spare   %s  serves layers %s  at %s\n", h.ID(), route[1].Span, h.Addrs()[0])
	}
	ch, err := demoHost()
	if err != nil {
		return err
	}
	closers = append(closers, ch.Close)
	// The servers are local and known; a client in the swarm finds them
	// through the DHT instead.
	for _, ai := range servers {
		if err := ch.Connect(ctx, ai); err != nil {
			return err
		}
	}
	cbe, err := kernels.Open("cpu", 1)
	if err != nil {
		return err
	}
	closers = append(closers, cbe.Close)
	cl, err := swarm.NewClient(ch.Libp2p(), l.w, cbe, swarm.ClientConfig{
		Model: "demo", DType: wire, Alternatives: spares,
		OnEvent: func(ev swarm.Event) {
			if ev.Kind != swarm.EventRoute { // the route is printed below
				fmt.Fprintf(stderr, "event: %s\n", ev)
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "client  %s  holds the embedding and the head; activations travel as %s\n", ch.ID(), wire)

	sess, err := cl.Open(ctx, route, len(ids)+f.steps)
	if err != nil {
		return err
	}
	defer sess.Close()
	for _, h := range sess.Route() {
		fmt.Fprintf(stderr, "route: %s layers %s\n", h.Peer, h.Span)
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	io.WriteString(out, prompt)
	out.Flush()
	dec := l.tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id)
	}
	start := time.Now()
	emitted := 0
	st, err := sess.Generate(ctx, ids, model.GenerateOptions{
		MaxTokens: f.steps,
		Sampler:   model.SamplerConfig{Temperature: f.temp, Seed: f.seed},
		Stop:      l.tok.IsEOG,
	}, func(id int) error {
		io.WriteString(out, dec.Next(id))
		emitted++
		if victim != nil && emitted == f.killAfter {
			out.Flush()
			fmt.Fprintf(stderr, "\n(stopping node 2 after %d tokens)\n", emitted)
			victim()
			victim = nil
		}
		return out.Flush()
	})
	io.WriteString(out, dec.Flush()+"\n")
	out.Flush()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "generated %d tokens through %d nodes in %s: %.1f tok/s (prompt %d tokens at %.1f tok/s)\n",
		st.Generated, len(route), time.Since(start).Round(time.Millisecond), st.GenerateRate(), st.PromptTokens, st.PromptRate())
	return nil
}
