package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/swarm"
)

// manifest fetches a model's manifest, from the store or the swarm.
func (n *Node) manifest(ctx context.Context, root cid.Cid) (*shards.Manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	m, err := shards.GetManifest(ctx, n.ex, root)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", root, err)
	}
	return m, nil
}

// ServeRequest asks the node to serve layers of a model to the swarm.
type ServeRequest struct {
	// Model is a CID or the name of a model in the registry.
	Model string
	// Layers is "A:B" to serve those layers for good; empty: the node
	// chooses and moves as the swarm changes.
	Layers string
	// MaxLayers bounds how many layers the node holds when it chooses
	// (0: as many as MemoryCap allows, else all).
	MaxLayers int
	// Experts, for a mixture of experts, is the routed experts of each
	// layer to hold, as ranges ("0-3,8"); empty or "all": every one, or,
	// where the caps hold not one whole layer (nor the Layers span), as
	// many as fit, chosen by the node where the swarm needs them most.
	Experts string
	// MemoryCap bounds the bytes of weights and KV caches together
	// (0: the node's Config.ServeMemory; both 0: no bound but MaxLayers).
	MemoryCap int64
	// Threads of the server's backend (0: all cores), at most the
	// node's Config.Threads.
	Threads int
	// Server tunes the server (budgets, timeouts, batching). Left nil,
	// its Counters are the node's, which /metrics reports.
	Server swarm.ServerConfig
	// RebalanceInterval and RebalanceDelay tune moving (0: defaults).
	RebalanceInterval, RebalanceDelay time.Duration
}

// Serve starts serving a model: it chooses a span (or takes Layers),
// pulls its blocks from the swarm, loads them, measures them and announces
// the node as a server, then keeps the announcement fresh and moves when
// the swarm needs it, until the node closes.
func (n *Node) Serve(ctx context.Context, req ServeRequest) (*swarm.Serving, error) {
	root, err := n.resolve(req.Model)
	if err != nil {
		return nil, err
	}
	m, err := n.manifest(ctx, root)
	if err != nil {
		return nil, err
	}
	c := m.Config
	var span swarm.Span
	if req.Layers != "" {
		if span.First, span.Last, err = shards.ParseLayers(req.Layers, c.Layers); err != nil {
			return nil, fmt.Errorf("--layers: %w", err)
		}
	}
	var experts model.ExpertSet
	if req.Experts != "" && req.Experts != "all" {
		if c.Experts == 0 {
			return nil, fmt.Errorf("--experts %s: model %s has no routed experts (a dense model is served by whole layers)", req.Experts, root)
		}
		if experts, err = model.ParseExperts(req.Experts, c.Experts); err != nil {
			return nil, fmt.Errorf("--experts: %w", err)
		}
	}
	maxLayers, maxExperts := req.MaxLayers, 0
	memCap := req.MemoryCap
	if memCap == 0 {
		memCap = n.cfg.ServeMemory
	}
	if memCap > 0 || n.store.Cap() > 0 {
		// What one layer takes: its weights (on disk and in memory) and
		// a KV cache of the full context (in memory).
		weights, err := m.LayerBytes(ctx, n.ex, c.Layers-1) // the last: a layer of experts where the first few are dense
		if err != nil {
			return nil, err
		}
		kvPerLayer := model.CacheBytes(&c, model.DefaultKVType, 1, c.Context)
		if c.Experts > 0 {
			if weights, maxExperts, err = n.expertsFit(ctx, m, root, experts, max(span.Len(), 1), memCap, weights, kvPerLayer); err != nil {
				return nil, err
			}
		}
		fit, err := layersFit(m.Name, root.String(), memCap, n.store.Cap(), weights, kvPerLayer)
		if err != nil {
			return nil, err
		}
		if span.Len() > fit {
			return nil, fmt.Errorf("layers %d:%d of %s do not fit the caps: %d layers, and the caps hold %d (each takes %s of weights on disk and %s in memory with its KV cache; --serve-memory %s, --store-cap %s)",
				span.First, span.Last, root, span.Len(), fit, units.FormatBytes(weights), units.FormatBytes(weights+kvPerLayer), capText(memCap), capText(n.store.Cap()))
		}
		if maxLayers == 0 || fit < maxLayers {
			maxLayers = fit
		}
		// What the weights leave is the sessions' budget.
		if memCap > 0 && req.Server.MemoryBudget == 0 {
			req.Server.MemoryBudget = memCap - int64(maxLayers)*weights
		}
	}
	if req.Server.OnSessionEnd == nil {
		req.Server.OnSessionEnd = n.issueReceipt
	}
	if req.Server.Counters == nil {
		// mycel_swarm_* add up every span the node serves.
		req.Server.Counters = &n.metrics.serve
	}
	be, err := n.openBackend(req.Threads)
	if err != nil {
		return nil, err
	}
	// Join first: a node that sees no one yet would choose its span blind.
	n.waitJoined(ctx)
	if len(n.cfg.Bootstrap) > 0 && !n.host.DHT().Routable() {
		log.Warn("serving with no DHT peer: the span is chosen from what the neighbours know")
	}
	load := func(ctx context.Context, s swarm.Span, set model.ExpertSet) (*model.Weights, func() error, error) {
		pr := api.PullRequest{CID: root.String(), Layers: fmt.Sprintf("%d:%d", s.First, s.Last)}
		if set != nil {
			pr.Experts = set.String()
		}
		if err := n.Pull(ctx, pr, func(api.PullProgress) {}); err != nil {
			return nil, nil, err
		}
		l, err := shards.Load(ctx, n.store, root, shards.Span{First: s.First, Last: s.Last, Experts: set})
		if err != nil {
			return nil, nil, err
		}
		return l.Weights, func() error { return nil }, nil
	}
	sv, err := swarm.Serve(ctx, n.host.Libp2p(), n.dir, swarm.ServeConfig{
		Model: root.String(), Layers: c.Layers, Span: span, MaxLayers: maxLayers,
		ModelExperts: c.Experts, Experts: experts, MaxExperts: maxExperts,
		Load: load, Backend: be, Server: req.Server, Software: "mycel " + Version,
		RebalanceInterval: req.RebalanceInterval, RebalanceDelay: req.RebalanceDelay,
	})
	if err != nil {
		be.Close()
		return nil, err
	}
	n.swarmMu.Lock()
	if n.closing {
		n.swarmMu.Unlock()
		sv.Close()
		be.Close()
		return nil, ErrClosed
	}
	n.servings = append(n.servings, servingEntry{sv, be})
	n.swarmMu.Unlock()
	n.kickWork() // a node that does not work now withdraws it at once
	return sv, nil
}

// expertsFit sizes a layer of the mixture of experts m for the caps:
// with the set of experts named, its weights hold those experts; with
// none named, where the caps hold layers whole layers (the --layers
// span, else one) the node holds every expert (max 0), else as many as
// fit, which it picks itself. weights is a whole layer's bytes, kv its
// KV cache's.
func (n *Node) expertsFit(ctx context.Context, m *shards.Manifest, root cid.Cid, set model.ExpertSet, layers int, memCap, weights, kv int64) (int64, int, error) {
	c := &m.Config
	// The layer's parts without an expert: attention, router, shared
	// experts; the rest is the experts'.
	_, base, err := shards.BlocksFor(ctx, n.ex, root, shards.Span{First: c.Layers - 1, Last: c.Layers, Experts: model.ExpertSet{}})
	if err != nil {
		return 0, 0, fmt.Errorf("model %s: %w", root, err)
	}
	_, whole, err := shards.BlocksFor(ctx, n.ex, root, shards.Span{First: c.Layers - 1, Last: c.Layers})
	if err != nil {
		return 0, 0, fmt.Errorf("model %s: %w", root, err)
	}
	perExpert := max(whole-base, 0) / int64(c.Experts)
	base = max(weights-int64(c.Experts)*perExpert, 0)
	if set != nil {
		return base + int64(set.Count(c.Experts))*perExpert, 0, nil
	}
	storeCap := n.store.Cap()
	if (memCap <= 0 || memCap/int64(layers) >= weights+kv) && (storeCap <= 0 || storeCap/int64(layers) >= weights) {
		return weights, 0, nil
	}
	k := int64(c.Experts)
	if memCap > 0 {
		k = min(k, (memCap/int64(layers)-kv-base)/max(perExpert, 1))
	}
	if storeCap > 0 {
		k = min(k, (storeCap/int64(layers)-base)/max(perExpert, 1))
	}
	if k < 1 {
		return weights, 0, nil // the caps hold no expert: layersFit says so
	}
	log.Info("the caps hold some experts of each layer", "model", root, "experts", k, "of", c.Experts, "layers", layers)
	return base + k*perExpert, int(k), nil
}

type servingEntry struct {
	s  *swarm.Serving
	be kernels.Backend
}

// Version is the software version: the module version the binary was
// built from, "(devel)" for a build from a work tree. Servers announce it.
var Version = buildVersion()

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// SwarmStatus looks up the servers of a model.
func (n *Node) SwarmStatus(ctx context.Context, ref string) (api.SwarmStatus, error) {
	root, err := n.resolve(ref)
	if err != nil {
		return api.SwarmStatus{}, err
	}
	n.waitJoined(ctx)
	m, err := n.manifest(ctx, root)
	if err != nil {
		return api.SwarmStatus{}, err
	}
	if err := n.dir.Lookup(ctx, root.String()); err != nil {
		return api.SwarmStatus{}, err
	}
	recs := n.dir.Known(root.String())
	st := api.SwarmStatus{Model: root.String(), Name: m.Name, Layers: m.Config.Layers, Servers: []api.ServerInfo{}, Missing: []api.LayerSpan{}, Weak: []int{}}
	for _, r := range recs {
		si := api.ServerInfo{Peer: r.Peer.String(), First: r.Span.First, Last: r.Span.Last, Throughput: r.Throughput,
			FreePositions: r.FreePositions, State: string(r.State), Expires: r.Expires, Self: r.Peer == n.host.ID(), Software: r.Software}
		if r.Experts != nil {
			si.Experts = r.Experts.String()
		}
		if l := n.dir.Latency(r.Peer); l > 0 {
			si.Latency = l.Round(10 * time.Microsecond).String()
		}
		st.Servers = append(st.Servers, si)
	}
	var serving []swarm.ServerRecord
	for _, r := range recs {
		if r.State == swarm.StateServing {
			serving = append(serving, r)
		}
	}
	cov := swarm.NewCoverage(m.Config.Layers, m.Config.Experts, serving, "")
	st.Coverage = cov
	for _, s := range cov.Missing() {
		st.Missing = append(st.Missing, api.LayerSpan{First: s.First, Last: s.Last})
	}
	med := median(cov)
	for l, v := range cov {
		if v > 0 && v < med/3 {
			st.Weak = append(st.Weak, l)
		}
	}
	return st, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// SwarmModel generates through the swarm: it holds a model's embedding,
// final norm, head and tokenizer, plans a route over the servers the
// directory knows, and runs a pipeline session per completion; completions
// run concurrently (the swarm's servers batch their steps). It is a
// Completer, so the OpenAI API serves any model the swarm serves.
type SwarmModel struct {
	name string
	w    *model.Weights
	tok  tokenizer.Tokenizer
	tmpl *chat.Template
	be   kernels.Backend
	cl   *swarm.Client // plain
	vcl  *swarm.Client // with every step checked against a shadow server
	pl   *swarm.Planner

	mu     sync.RWMutex // completions hold it shared, close exclusively
	closed bool
	vbe    kernels.Backend // the verifying client's (a backend runs one engine at a time)
	life   context.Context // the node's: its end ends the completions running
}

// SwarmModel returns the swarm client of a model (a CID or a registry
// name), fetching its embedding, head and tokenizer on first use.
func (n *Node) SwarmModel(ctx context.Context, ref string) (*SwarmModel, error) {
	root, err := n.resolve(ref)
	if err != nil {
		return nil, err
	}
	n.swarmMu.Lock()
	sm := n.swarmModels[root.String()]
	n.swarmMu.Unlock()
	if sm != nil {
		return sm, nil
	}
	if err := n.findModel(ctx, root); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	l, name, be, err := n.loadForCompletion(lctx, n.ex, root, shards.Span{Embedding: true, Head: true, Tokenizer: true})
	if err != nil {
		return nil, err
	}
	sm = &SwarmModel{name: name, w: l.Weights, tok: l.Tokenizer, be: be,
		tmpl: chatTemplate(name, l.ChatTemplate, l.Tokenizer), life: n.ctx}
	sm.pl = &swarm.Planner{Dir: n.dir, Model: root.String(), Layers: l.Weights.Config.Layers, Experts: l.Weights.Config.Experts}
	ccfg := swarm.ClientConfig{
		Model: root.String(), DType: kernels.F16, Replan: sm.pl.Replan, OnResult: n.countResult,
	}
	if sm.cl, err = swarm.NewClient(n.host.Libp2p(), l.Weights, be, ccfg); err != nil {
		be.Close()
		return nil, err
	}
	if sm.vbe, err = kernels.Open("cpu", 1); err != nil {
		be.Close()
		return nil, err
	}
	ccfg.Verify = true
	if sm.vcl, err = swarm.NewClient(n.host.Libp2p(), l.Weights, sm.vbe, ccfg); err != nil {
		be.Close()
		sm.vbe.Close()
		return nil, err
	}
	n.swarmMu.Lock()
	defer n.swarmMu.Unlock()
	if n.closing {
		sm.close()
		return nil, ErrClosed
	}
	if old := n.swarmModels[root.String()]; old != nil {
		sm.close()
		return old, nil
	}
	n.swarmModels[root.String()] = sm
	return sm, nil
}

// findModel makes sure some peer can send root's blocks: a model that is
// neither here, nor provided on the DHT, nor served by any server the swarm
// directory knows fails fast, instead of waiting for blocks nobody will
// send. The two lookups run together and either one is enough: the
// directory's servers hold the manifest, and once connected they are asked
// for blocks before anyone else.
func (n *Node) findModel(ctx context.Context, root cid.Cid) error {
	if has, err := n.store.Has(ctx, root); err != nil || has {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n.waitJoined(ctx)
	var provErr, dirErr error
	var servers []swarm.ServerRecord
	var wg sync.WaitGroup
	wg.Go(func() { _, provErr = n.ex.FindProviders(ctx, root, 1) })
	wg.Go(func() { servers, dirErr = n.dir.Servers(ctx, root.String()) })
	wg.Wait()
	connected := 0
	for _, r := range servers {
		if r.Peer == n.host.ID() {
			continue
		}
		if err := n.host.Connect(ctx, peer.AddrInfo{ID: r.Peer, Addrs: r.Addrs}); err != nil {
			log.Debug("server of the swarm unreachable", "model", root, "peer", r.Peer, "err", err)
			continue
		}
		connected++
	}
	switch {
	case provErr == nil || connected > 0:
		return nil
	case errors.Is(provErr, blocks.ErrNoProviders) && dirErr == nil:
		return fmt.Errorf("%w: model %s is not on the node, no peer provides it on the DHT, and the swarm directory knows no server of it that answers", api.ErrNotFound, root)
	}
	return fmt.Errorf("model %s: find a peer that has it: %w", root, errors.Join(provErr, dirErr))
}

// Name is the model's name in the OpenAI API: its manifest name, or CID.
func (s *SwarmModel) Name() string { return s.name }

// ChatTemplate is the model's chat format.
func (s *SwarmModel) ChatTemplate() *chat.Template { return s.tmpl }

// Complete runs one completion through the swarm.
func (s *SwarmModel) Complete(ctx context.Context, prompt string, o openai.CompleteOptions, emit func(string) error) (openai.CompleteResult, error) {
	return s.CompleteWithEvents(ctx, prompt, o, emit, nil)
}

// CompleteWithEvents is Complete, with the session's route changes
// (route, hop failed, re-route) passed to onEvent.
func (s *SwarmModel) CompleteWithEvents(ctx context.Context, prompt string, o openai.CompleteOptions, emit func(string) error, onEvent func(swarm.Event)) (openai.CompleteResult, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return openai.CompleteResult{}, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	cl := s.cl
	if o.Verify {
		cl = s.vcl
	}
	return openai.Generate(s.tok, s.w.Config.Context, prompt, o, emit, func(ids []int, g model.GenerateOptions, tok func(int) error) (model.Stats, error) {
		pl := *s.pl // this session's room; failover replans with any room
		pl.Positions = len(ids) + o.MaxTokens
		// The bans of both clients: a liar caught by the verifying one is
		// not used by the plain one either; nor is a server that left.
		route, err := pl.Route(ctx, append(s.cl.Excluded(), s.vcl.Excluded()...))
		if err != nil {
			return model.Stats{}, err
		}
		sess, err := cl.OpenWithEvents(ctx, route, len(ids)+o.MaxTokens, onEvent)
		if err != nil {
			return model.Stats{}, err
		}
		defer sess.Close()
		return sess.Generate(ctx, ids, g, tok)
	})
}

// close waits for the completions running, then frees the backends.
func (s *SwarmModel) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.be.Close(), s.vbe.Close())
}

// closeSwarm withdraws the node's servers and closes the swarm clients and
// the directory (before the host goes).
func (n *Node) closeSwarm() error {
	n.swarmMu.Lock()
	n.closing = true
	servings, models, blockModels := n.servings, n.swarmModels, n.blockModels
	n.servings, n.swarmModels, n.blockModels = nil, map[string]*SwarmModel{}, map[string]*LocalModel{}
	n.swarmMu.Unlock()
	for _, m := range blockModels {
		m.Close()
	}
	var errs []error
	for _, e := range servings {
		errs = append(errs, e.s.Close(), e.be.Close())
	}
	for _, m := range models {
		errs = append(errs, m.close())
	}
	if n.dir != nil {
		errs = append(errs, n.dir.Close())
	}
	return errors.Join(errs...)
}

// NewRouteInfo describes ev as the API reports it.
func NewRouteInfo(ev swarm.Event) *api.RouteInfo {
	ri := &api.RouteInfo{Kind: ev.Kind.String(), First: ev.Hop.Span.First, Last: ev.Hop.Span.Last,
		Replayed: ev.Replayed}
	if ev.Hop.Peer != "" {
		ri.Peer = ev.Hop.Peer.String()
	}
	if ev.Replaced != "" {
		ri.Replaced = ev.Replaced.String()
	}
	if ev.Other != "" {
		ri.Other = ev.Other.String()
	}
	if ev.Err != nil {
		ri.Error = ev.Err.Error()
	}
	for _, h := range ev.Chain {
		ri.Chain = append(ri.Chain, api.RouteHop{Peer: h.Peer.String(), First: h.Span.First, Last: h.Span.Last})
	}
	return ri
}

// Generate checks a generation through the swarm (the sampling and the
// tokens asked for) and loads the model's swarm client, fetching its
// embedding, head and tokenizer on first use; its errors come before any
// answer. The function it returns runs the generation, calling send with
// text and route events as they come (route events may come from other
// goroutines), and returns the last event: done with the counts, or the
// error.
func (n *Node) Generate(ctx context.Context, req api.GenerateRequest) (func(send func(api.GenerateEvent) error) api.GenerateEvent, error) {
	sc := model.SamplerConfig{Temperature: req.Temp, TopK: req.TopK, TopP: req.TopP, Seed: req.Seed}
	if err := sc.Validate(); err != nil {
		return nil, kindOf(err, api.ErrBadRequest)
	}
	if req.MaxTokens <= 0 {
		return nil, kindOf(errors.New("max_tokens must be positive"), api.ErrBadRequest)
	}
	sm, err := n.SwarmModel(ctx, req.Model)
	if err != nil {
		return nil, err
	}
	return func(send func(api.GenerateEvent) error) api.GenerateEvent {
		start := time.Now()
		res, err := sm.CompleteWithEvents(ctx, req.Prompt,
			openai.CompleteOptions{MaxTokens: req.MaxTokens, Sampler: sc, Verify: req.Verify, IgnoreEOS: req.IgnoreEOS},
			func(text string) error { return send(api.GenerateEvent{Text: text}) },
			func(ev swarm.Event) { send(api.GenerateEvent{Route: NewRouteInfo(ev)}) })
		if err != nil {
			return api.GenerateEvent{Error: err.Error()}
		}
		return api.GenerateEvent{Done: true, PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens,
			Seconds: time.Since(start).Seconds(), Finish: res.Finish}
	}, nil
}

// modelCompleter is the Completer for a model the node knows by CID or
// name but has not loaded from a file: the whole model from its blocks
// when every layer is here (the embedding and head are fetched if they
// are not), else a SwarmModel.
func (n *Node) modelCompleter(ctx context.Context, ref string) (openai.Completer, error) {
	root, err := n.resolve(ref)
	if err != nil {
		return nil, err
	}
	key := root.String()
	n.swarmMu.Lock()
	lm := n.blockModels[key]
	n.swarmMu.Unlock()
	if lm != nil {
		return lm, nil
	}
	info, err := n.Inspect(ctx, root)
	allLayers := err == nil && info.TotalParts > 0
	for _, p := range info.Parts {
		if !p.Local && strings.HasPrefix(p.Name, "layer ") {
			allLayers = false
		}
	}
	if !allLayers {
		return n.SwarmModel(ctx, ref)
	}
	if info.LocalParts < info.TotalParts {
		if err := n.Pull(ctx, api.PullRequest{CID: key}, func(api.PullProgress) {}); err != nil {
			return nil, err
		}
	}
	l, name, be, err := n.loadForCompletion(ctx, n.store, root, shards.Whole(info.Manifest.Config.Layers))
	if err != nil {
		return nil, err
	}
	lm = &LocalModel{name: name, w: l.Weights, release: func() error { return nil }, tok: l.Tokenizer,
		tmpl: chatTemplate(name, l.ChatTemplate, l.Tokenizer), be: be, eng: model.NewEngine(l.Weights, be)}
	n.swarmMu.Lock()
	defer n.swarmMu.Unlock()
	if n.closing {
		lm.Close()
		return nil, ErrClosed
	}
	if old := n.blockModels[key]; old != nil {
		lm.Close()
		return old, nil
	}
	n.blockModels[key] = lm
	return lm, nil
}

// loadForCompletion loads span s of model root (with its tokenizer) for a
// completer, and opens a backend for it; name is the manifest's name, or
// the CID.
func (n *Node) loadForCompletion(ctx context.Context, get shards.Getter, root cid.Cid, s shards.Span) (*shards.Loaded, string, kernels.Backend, error) {
	l, err := shards.Load(ctx, get, root, s)
	if err != nil {
		return nil, "", nil, fmt.Errorf("model %s: %w", root, err)
	}
	if l.Tokenizer == nil {
		return nil, "", nil, fmt.Errorf("model %s has no tokenizer in its manifest", root)
	}
	be, err := n.openBackend(0)
	if err != nil {
		return nil, "", nil, err
	}
	name := l.Manifest.Name
	if name == "" {
		name = root.String()
	}
	return l, name, be, nil
}
