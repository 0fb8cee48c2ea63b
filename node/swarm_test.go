package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
	"github.com/mycel-net/mycel/swarm"
)

// publishedSwarm starts a bootstrap node B and a publisher A that
// imports the built-in model. It returns the config of further nodes of
// that swarm (through B, quick to look servers up) and A's import.
func publishedSwarm(ctx context.Context, t *testing.T) (func() Config, api.ImportResult) {
	t.Helper()
	cfg, _, res := publishing(ctx, t, api.ImportRequest{Path: testmodels.Builtin(t), Name: builtinName})
	return cfg, res
}

// publishing is publishedSwarm for the model req imports; it returns the
// publisher A too.
func publishing(ctx context.Context, t *testing.T, req api.ImportRequest) (func() Config, *Node, api.ImportResult) {
	t.Helper()
	b := startNode(t, testConfig(t))
	addr := b.Status().Addrs[0]
	cfg := func() Config {
		c := testConfig(t, addr)
		c.FetchStall = 5 * time.Second
		c.LookupInterval = 200 * time.Millisecond
		return c
	}
	a := startNode(t, cfg())
	if err := a.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Import(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, a, res
}

// servingSwarm starts a bootstrap node B, a publisher A that imports
// the built-in model, three volunteers that serve two layers each (chosen by
// themselves) and a client node E that serves nothing. It returns A's
// model CID and E.
func servingSwarm(t *testing.T) (string, *Node, []*Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, res := publishedSwarm(ctx, t)
	var servers []*Node
	for range 3 {
		s := startNode(t, cfg())
		if _, err := s.Serve(ctx, ServeRequest{Model: res.CID, MaxLayers: 2, Threads: 1, RebalanceDelay: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	e := startNode(t, cfg())
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until E sees every layer served.
	for {
		st, err := e.SwarmStatus(ctx, res.CID)
		if err == nil && len(st.Missing) == 0 && len(st.Servers) == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the swarm never covered the model: %+v, %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return res.CID, e, servers
}

// A node that holds none of the layers generates through three volunteers
// that chose their spans, by the control API (with route events) and the
// OpenAI API (the official client, by CID), and gets the text a local
// engine gives.
func TestSwarmGenerate(t *testing.T) {
	cidStr, e, servers := servingSwarm(t)
	ref := builtinGreedy(t, testmodels.BuiltinPrompt, 20, false)
	var spans []swarm.Span
	for _, s := range servers {
		for _, sv := range s.servings {
			spans = append(spans, sv.s.Span())
		}
	}
	t.Logf("spans: %v", spans)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var text strings.Builder
	var routes []api.RouteInfo
	var done api.GenerateEvent
	err := api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: cidStr, Prompt: testmodels.BuiltinPrompt, MaxTokens: 20},
		func(ev api.GenerateEvent) error {
			text.WriteString(ev.Text)
			if ev.Route != nil {
				routes = append(routes, *ev.Route)
			}
			if ev.Done {
				done = ev
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != ref.Text {
		t.Errorf("text %q, want %q", text.String(), ref.Text)
	}
	if done.PromptTokens != ref.PromptTokens || done.CompletionTokens != 20 || done.Finish != api.FinishLength {
		t.Errorf("end %+v", done)
	}
	at := 0
	for _, r := range routes {
		if r.Kind != "route" || r.First != at {
			t.Fatalf("route events %+v do not chain from layer 0", routes)
		}
		at = r.Last
	}
	if at != builtinLayers {
		t.Fatalf("route events %+v do not reach layer %d", routes, builtinLayers)
	}

	st, err := api.NewClient(e.APIURL()).SwarmStatus(ctx, cidStr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Layers != builtinLayers || len(st.Servers) != 3 || len(st.Missing) != 0 || slices.Contains(st.Coverage, 0) {
		t.Errorf("swarm status %+v", st)
	}

	// With verification: no two servers share a span here, so every hop
	// runs unverified, says so, and the text is the same.
	text.Reset()
	var kinds []string
	err = api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: cidStr, Prompt: testmodels.BuiltinPrompt, MaxTokens: 20, Verify: true},
		func(ev api.GenerateEvent) error {
			text.WriteString(ev.Text)
			if ev.Route != nil {
				kinds = append(kinds, ev.Route.Kind)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != ref.Text || !slices.Contains(kinds, "unverified") {
		t.Errorf("verified generation: %q, events %v", text.String(), kinds)
	}

	// The greedy story from BOS ends with the model's end of text; with
	// IgnoreEOS the generation goes on past it.
	story := builtinGreedy(t, "", 400, false)
	if !story.StoppedAtEOS {
		t.Fatalf("the built-in model's story from BOS does not end in 400 tokens: %q", story.Text)
	}
	storyTokens := story.CompletionTokens
	for _, ignore := range []bool{false, true} {
		text.Reset()
		done = api.GenerateEvent{}
		err = api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: cidStr, MaxTokens: storyTokens + 20, IgnoreEOS: ignore},
			func(ev api.GenerateEvent) error {
				text.WriteString(ev.Text)
				if ev.Done {
					done = ev
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		want := api.GenerateEvent{Done: true, PromptTokens: 1, CompletionTokens: storyTokens, Finish: api.FinishStop}
		wantText := story.Text
		if ignore {
			want.CompletionTokens, want.Finish = storyTokens+20, api.FinishLength
			wantText = builtinGreedy(t, "", storyTokens+20, true).Text
		}
		if done.Done != want.Done || done.PromptTokens != want.PromptTokens || done.CompletionTokens != want.CompletionTokens || done.Finish != want.Finish ||
			text.String() != wantText {
			t.Errorf("ignore EOS %v: end %+v, want %+v; text\n%q\nwant\n%q", ignore, done, want, text.String(), wantText)
		}
	}

	// Concurrent completions: each gets the reference text and its own
	// route events only (three hops covering the layers once).
	sm, err := e.SwarmModel(ctx, cidStr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			var b strings.Builder
			var hops []swarm.Event
			_, err := sm.CompleteWithEvents(ctx, testmodels.BuiltinPrompt, openai.CompleteOptions{MaxTokens: 20},
				func(s string) error { b.WriteString(s); return nil },
				func(ev swarm.Event) { hops = append(hops, ev) })
			switch {
			case err != nil:
				errs[i] = err
			case b.String() != ref.Text:
				errs[i] = fmt.Errorf("text %q", b.String())
			case len(hops) != 3 || hops[0].Hop.Span.First != 0 || hops[2].Hop.Span.Last != builtinLayers:
				errs[i] = fmt.Errorf("events %v", hops)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent completions: %v", err)
	}

	t.Run("official client", func(t *testing.T) {
		res := runOfficialClient(t, e.APIURL()+"/v1", cidStr)
		t.Logf("official client through the swarm: %+v", res)
	})
}

// A model whose layers are not all served: the error names the missing
// layers and how to serve them; an unknown model is "not found".
func TestSwarmMissingLayers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	s := startNode(t, testConfig(t, addr))
	if _, err := s.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:3", Threads: 1}); err != nil {
		t.Fatal(err)
	}
	e := startNode(t, testConfig(t, addr))
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	sm, err := e.SwarmModel(ctx, res.CID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sm.Complete(ctx, "Once", openai.CompleteOptions{MaxTokens: 4, Sampler: model.SamplerConfig{}}, func(string) error { return nil })
	var nr *swarm.NoRouteError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "layers 3-5") || !strings.Contains(err.Error(), "--serve "+res.CID+" --layers 3:6") {
		t.Fatalf("err = %v; want the missing layers 3-5 and how to serve them", err)
	}
	if _, err := e.SwarmModel(ctx, "no-such-model"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown model: %v", err)
	}

	// A memory cap bounds the layers a volunteer takes (the built-in
	// model: about 866 kB of weights and 384 kB of full-context f16 KV
	// cache per layer, so 4500 kB holds three), and one that holds no
	// layer is refused.
	v := startNode(t, testConfig(t, addr))
	if _, err := v.Serve(ctx, ServeRequest{Model: res.CID, MemoryCap: 1000, Threads: 1}); err == nil || !strings.Contains(err.Error(), "holds no layer") {
		t.Fatalf("a 1000-byte cap: %v", err)
	}
	const memCap = 4500 << 10
	sv, err := v.Serve(ctx, ServeRequest{Model: res.CID, MemoryCap: memCap, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sp := sv.Span(); sp.Len() != 3 || sp != (swarm.Span{First: 3, Last: 6}) {
		t.Fatalf("with 4500 kB the volunteer took %s, want the 3 unserved layers [3,6)", sp)
	}
	if b := sv.Server().Config().MemoryBudget; b <= 0 || b >= memCap {
		t.Fatalf("session budget %d: want what the weights leave of the cap", b)
	}
}

// A volunteer that serves every layer itself cannot be a hop of its own
// route: its OpenAI API runs the model here instead, from its blocks
// (fetching the embedding and head it did not need to serve).
func TestServingNodeRunsWholeModelItself(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	v := startNode(t, testConfig(t, addr))
	sv, err := v.Serve(ctx, ServeRequest{Model: res.CID, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sp := sv.Span(); sp.First != 0 || sp.Last != builtinLayers {
		t.Fatalf("a lone volunteer took %s, want every layer", sp)
	}
	code, m := post(t, v.APIURL()+"/v1/completions", `{"model":"`+res.CID+`","prompt":"`+testmodels.BuiltinPrompt+`","max_tokens":20,"temperature":0}`)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	if ch := m["choices"].([]any)[0].(map[string]any); ch["text"] != builtinContinues(t) {
		t.Errorf("choice %v", ch)
	}
	c, err := v.modelCompleter(ctx, res.CID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*LocalModel); !ok {
		t.Errorf("the volunteer's completer is a %T, want its own blocks", c)
	}
}

// publish starts a bootstrap node and a node that imports the built-in
// model (named builtinName); it returns the bootstrap address and the
// import's result.
func publish(ctx context.Context, t *testing.T) (string, api.ImportResult) {
	t.Helper()
	b := startNode(t, testConfig(t))
	addr := b.Status().Addrs[0]
	a := startNode(t, testConfig(t, addr))
	if err := a.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t), Name: builtinName})
	if err != nil {
		t.Fatal(err)
	}
	return addr, res
}

// A node that closes ends the completions it runs through the swarm,
// rather than waiting for them.
func TestCloseEndsSwarmCompletions(t *testing.T) {
	cidStr, e, _ := servingSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sm, err := e.SwarmModel(ctx, cidStr)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := sm.Complete(context.Background(), testmodels.BuiltinPrompt, openai.CompleteOptions{MaxTokens: 400, IgnoreEOS: true, Sampler: model.SamplerConfig{}},
			func(string) error {
				once.Do(func() { close(started) })
				time.Sleep(5 * time.Millisecond) // a slow reader keeps it going
				return nil
			})
		done <- err
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the completion ran to its end after the node closed")
		}
		t.Logf("completion ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the completion outlived the node's close")
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
}
