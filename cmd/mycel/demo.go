package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node"
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
	ignoreEOS        bool
}

func newSwarmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "swarm",
		Short: "The swarm: a local demo, who serves a model, keys for private swarms",
	}
	cmd.AddCommand(newSwarmDemoCmd(g), newSwarmStatusCmd(g), newSwarmKeyCmd())
	return cmd
}

func newSwarmDemoCmd(g *globals) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo -m MODEL [PROMPT]",
		Short: "Run a local swarm: nodes on loopback choose spans of layers and serve them; a client finds them and generates through them",
		Long: `Start --nodes libp2p hosts on the loopback interface, each with a Kademlia
DHT and gossipsub. Each in turn looks up what the others serve, chooses the
span of layers that helps the pipeline most, loads and measures it, and
announces a signed record. A client host that holds the embedding and the
head finds the servers, plans a route, opens a session through it over
/mycel/infer/1 and generates. It prints which node serves which layers, the
route, then the text, then the speed. With --kill-after, a spare joins and a
node of the route is stopped mid-generation: the client re-plans and goes on.`,
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
	fl.IntVar(&f.killAfter, "kill-after", 0, "start a spare, and stop a node of the route after this many tokens, to show failover (0: off)")
	fl.BoolVar(&f.ignoreEOS, "ignore-eos", false, "generate past the model's end of text, up to -n tokens")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// demoNode is a loopback-only libp2p host with a DHT and gossipsub,
// joined through boot (none for the first), and its swarm directory.
type demoNode struct {
	h   *p2p.Host
	dir *swarm.Directory
}

func startDemoNode(ctx context.Context, boot []peer.AddrInfo) (*demoNode, error) {
	opts := []p2p.Option{p2p.LoopbackOnly(), p2p.NoMDNS(), p2p.NoNAT(), p2p.NoRelay(), p2p.NoQUIC(),
		p2p.MemoryDatastore()}
	if len(boot) > 0 {
		opts = append(opts, p2p.Bootstrap(boot...))
	}
	h, err := p2p.New(opts...)
	if err != nil {
		return nil, err
	}
	if len(boot) > 0 {
		if err := h.Bootstrap(ctx); err != nil {
			h.Close()
			return nil, err
		}
		if err := h.WaitRoutable(ctx); err != nil {
			h.Close()
			return nil, err
		}
	}
	dir, err := swarm.NewDirectory(h.Libp2p(), swarm.DirectoryConfig{
		Routing: h.Routing(), PubSub: h.PubSub(), LookupInterval: 200 * time.Millisecond,
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	return &demoNode{h: h, dir: dir}, nil
}

func (d *demoNode) Close() error { return errors.Join(d.dir.Close(), d.h.Close()) }

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
	if f.killAfter > 0 && f.nodes < 2 {
		return fmt.Errorf("--kill-after needs at least 2 nodes")
	}
	ids := l.tok.Encode(prompt, tokenizer.EncodeOptions{BOS: l.tok.AddBOS(), ParseSpecial: true})
	if len(ids) == 0 {
		ids = []int{l.tok.BOS()}
	}
	if len(ids)+f.steps > cfg.Context {
		return fmt.Errorf("prompt (%d tokens) + -n %d exceed the model's context of %d", len(ids), f.steps, cfg.Context)
	}

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	const modelID = "demo"
	var boot []peer.AddrInfo
	join := func() (*demoNode, error) {
		n, err := startDemoNode(ctx, boot)
		if err != nil {
			return nil, err
		}
		closers = append(closers, n.Close)
		if len(boot) == 0 {
			boot = []peer.AddrInfo{n.h.AddrInfo()}
		}
		return n, nil
	}
	// Every server is a volunteer that can hold its share of the layers:
	// it looks up what the others serve (DHT, pubsub, its neighbours),
	// chooses the span that helps the pipeline most, loads it, measures
	// it and announces it.
	perNode := (cfg.Layers + f.nodes - 1) / f.nodes
	servers := map[peer.ID]*swarm.Serving{}
	serve := func(label string) error {
		n, err := join()
		if err != nil {
			return err
		}
		be, err := kernels.Open("cpu", 1)
		if err != nil {
			return err
		}
		closers = append(closers, be.Close)
		sv, err := swarm.Serve(ctx, n.h.Libp2p(), n.dir, swarm.ServeConfig{
			Model: modelID, Layers: cfg.Layers, MaxLayers: perNode, Backend: be,
			Load: func(context.Context, swarm.Span, model.ExpertSet) (*model.Weights, func() error, error) {
				return l.w, func() error { return nil }, nil // one copy in memory for the whole demo
			},
			RebalanceDelay: 200 * time.Millisecond,
		})
		if err != nil {
			return err
		}
		closers = append(closers, sv.Close)
		servers[n.h.ID()] = sv
		fmt.Fprintf(stderr, "%-7s %s  chose layers %s (%.0f tok/s measured)  at %s\n",
			label, shortPeer(n.h.ID().String()), layerRange(sv.Span().First, sv.Span().Last), sv.Throughput(), n.h.Addrs()[0])
		return nil
	}
	for i := 0; i < f.nodes; i++ {
		if err := serve(fmt.Sprintf("node %d", i+1)); err != nil {
			return err
		}
	}
	// With --kill-after, a spare joins (it doubles the weakest span), and
	// a node of the route whose layers the spare also holds is stopped
	// mid-generation: the client re-plans, replays and goes on.
	if f.killAfter > 0 {
		if err := serve("spare"); err != nil {
			return err
		}
	}
	cn, err := join()
	if err != nil {
		return err
	}
	pl := &swarm.Planner{Dir: cn.dir, Model: modelID, Layers: cfg.Layers, Positions: len(ids) + f.steps}
	// Wait until the client sees every server (the swarm is young).
	var route []swarm.Hop
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		recs, err := cn.dir.Servers(ctx, modelID)
		if err == nil && len(recs) == len(servers) {
			if route, err = pl.Route(ctx, nil); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the client did not find the servers in time: %v", err)
		}
	}
	cbe, err := kernels.Open("cpu", 1)
	if err != nil {
		return err
	}
	closers = append(closers, cbe.Close)
	cl, err := swarm.NewClient(cn.h.Libp2p(), l.w, cbe, swarm.ClientConfig{
		Model: modelID, DType: wire, Replan: pl.Replan,
		OnEvent: func(ev swarm.Event) {
			if ev.Kind != swarm.EventRoute { // the route is printed below
				fmt.Fprintln(stderr, routeLine(*node.NewRouteInfo(ev)))
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "client  %s  found %d servers through the DHT and pubsub; holds the embedding and the head; activations travel as %s\n",
		shortPeer(cn.h.ID().String()), len(servers), wire)

	sess, err := cl.Open(ctx, route, len(ids)+f.steps)
	if err != nil {
		return err
	}
	defer sess.Close()
	for _, h := range sess.Route() {
		fmt.Fprintln(stderr, routeLine(*node.NewRouteInfo(swarm.Event{Kind: swarm.EventRoute, Hop: h})))
	}
	// The node to stop is chosen when it is stopped, among the route's
	// hops whose layers another server holds at that moment: servers move
	// while the text is generated (one may have left the span the spare
	// doubled), and stopping the last holder of a span would show no
	// failover, only an error. Where no hop qualifies yet, it is tried
	// again at the next token.
	killed := f.killAfter == 0
	victim := func() (swarm.Hop, bool) {
		recs := cn.dir.Known(modelID)
		for _, h := range sess.Route() {
			if len(swarm.NewCoverage(cfg.Layers, cfg.Experts, recs, h.Peer).Missing()) == 0 {
				return h, true
			}
		}
		return swarm.Hop{}, false
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
		Stop:      tokenizer.StopRule(l.tok, f.ignoreEOS),
	}, func(id int) error {
		io.WriteString(out, dec.Next(id))
		emitted++
		if !killed && emitted >= f.killAfter {
			if v, ok := victim(); ok {
				out.Flush()
				fmt.Fprintf(stderr, "\n(stopping %s, which runs layers %s of the route, after %d tokens)\n",
					shortPeer(v.Peer.String()), layerRange(v.Span.First, v.Span.Last), emitted)
				servers[v.Peer].Server().Close() // no goodbye: the client finds out on its next step
				killed = true
			}
		}
		return out.Flush()
	})
	io.WriteString(out, dec.Flush()+"\n")
	out.Flush()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "generated %d tokens through %d hops in %s: %.1f tok/s (prompt %d tokens at %.1f tok/s)%s\n",
		st.Generated, len(route), time.Since(start).Round(time.Millisecond), st.GenerateRate(), st.PromptTokens, st.PromptRate(), endNote(st.StoppedAtEOS))
	return nil
}
