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

// servingSwarm starts a bootstrap node B, a publisher A that imports
// stories260K, three volunteers that serve two layers each (chosen by
// themselves) and a client node E that serves nothing. It returns A's
// model CID and E.
func servingSwarm(t *testing.T) (string, *Node, []*Node) {
	t.Helper()
	b := startNode(t, testConfig(t))
	addr := b.Status().Addrs[0]
	cfg := func() Config {
		c := testConfig(t, addr)
		c.FetchStall = 5 * time.Second
		c.LookupInterval = 200 * time.Millisecond
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startNode(t, cfg())
	if err := a.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Path(t, "stories260K.bin"), Tokenizer: testmodels.Path(t, "tok512.bin"), Name: "stories260K"})
	if err != nil {
		t.Fatal(err)
	}
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
// OpenAI API (the official client, by CID), and gets the reference text.
func TestSwarmGenerate(t *testing.T) {
	cidStr, e, servers := servingSwarm(t)
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
	err := api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: cidStr, Prompt: "Lily wanted to", MaxTokens: 20},
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
	if text.String() != lilyContinues {
		t.Errorf("text %q, want %q", text.String(), lilyContinues)
	}
	if done.PromptTokens != 5 || done.CompletionTokens != 20 || done.Finish != api.FinishLength {
		t.Errorf("end %+v", done)
	}
	at := 0
	for _, r := range routes {
		if r.Kind != "route" || r.First != at {
			t.Fatalf("route events %+v do not chain from layer 0", routes)
		}
		at = r.Last
	}
	if at != 5 {
		t.Fatalf("route events %+v do not reach layer 5", routes)
	}

	st, err := api.NewClient(e.APIURL()).SwarmStatus(ctx, cidStr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Layers != 5 || len(st.Servers) != 3 || len(st.Missing) != 0 || slices.Contains(st.Coverage, 0) {
		t.Errorf("swarm status %+v", st)
	}

	// With verification: no two servers share a span here, so every hop
	// runs unverified, says so, and the text is the same.
	text.Reset()
	var kinds []string
	err = api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: cidStr, Prompt: "Lily wanted to", MaxTokens: 20, Verify: true},
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
	if text.String() != lilyContinues || !slices.Contains(kinds, "unverified") {
		t.Errorf("verified generation: %q, events %v", text.String(), kinds)
	}

	// The greedy story from BOS ends with the model's end of text after
	// storyTokens tokens; with IgnoreEOS the next story follows.
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
		if ignore {
			want.CompletionTokens, want.Finish = storyTokens+20, api.FinishLength
		}
		if done.Done != want.Done || done.PromptTokens != want.PromptTokens || done.CompletionTokens != want.CompletionTokens || done.Finish != want.Finish ||
			strings.Count(text.String(), "Once upon a time") != 1+btoi(ignore) {
			t.Errorf("ignore EOS %v: end %+v, want %+v; text %q", ignore, done, want, text.String())
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
			_, err := sm.CompleteWithEvents(ctx, "Lily wanted to", openai.CompleteOptions{MaxTokens: 20},
				func(s string) error { b.WriteString(s); return nil },
				func(ev swarm.Event) { hops = append(hops, ev) })
			switch {
			case err != nil:
				errs[i] = err
			case b.String() != lilyContinues:
				errs[i] = fmt.Errorf("text %q", b.String())
			case len(hops) != 3 || hops[0].Hop.Span.First != 0 || hops[2].Hop.Span.Last != 5:
				errs[i] = fmt.Errorf("events %v", hops)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent completions: %v", err)
	}

	res := runOfficialClient(t, e.APIURL()+"/v1", cidStr)
	t.Logf("official client through the swarm: %+v", res)
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
	_, err = sm.Complete(ctx, "Lily", openai.CompleteOptions{MaxTokens: 4, Sampler: model.SamplerConfig{}}, func(string) error { return nil })
	var nr *swarm.NoRouteError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "layers 3-4") || !strings.Contains(err.Error(), "--serve "+res.CID+" --layers 3:5") {
		t.Fatalf("err = %v; want the missing layers 3-4 and how to serve them", err)
	}
	if _, err := e.SwarmModel(ctx, "no-such-model"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown model: %v", err)
	}

	// A memory cap bounds the layers a volunteer takes (stories260K: about
	// 100 kB of weights and 128 kB of full-context f16 KV cache per layer,
	// so 560 kB holds two), and one that holds no layer is refused.
	v := startNode(t, testConfig(t, addr))
	if _, err := v.Serve(ctx, ServeRequest{Model: res.CID, MemoryCap: 1000, Threads: 1}); err == nil || !strings.Contains(err.Error(), "holds no layer") {
		t.Fatalf("a 1000-byte cap: %v", err)
	}
	sv, err := v.Serve(ctx, ServeRequest{Model: res.CID, MemoryCap: 560 << 10, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sp := sv.Span(); sp.Len() != 2 || sp != (swarm.Span{First: 3, Last: 5}) {
		t.Fatalf("with 560 kB the volunteer took %s, want the 2 unserved layers [3,5)", sp)
	}
	if b := sv.Server().Config().MemoryBudget; b <= 0 || b >= 560<<10 {
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
	if sp := sv.Span(); sp.First != 0 || sp.Last != 5 {
		t.Fatalf("a lone volunteer took %s, want every layer", sp)
	}
	code, m := post(t, v.APIURL()+"/v1/completions", `{"model":"`+res.CID+`","prompt":"Lily wanted to","max_tokens":20,"temperature":0}`)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	if ch := m["choices"].([]any)[0].(map[string]any); ch["text"] != lilyContinues {
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

// publish starts a bootstrap node and a node that imports stories260K; it
// returns the bootstrap address and the import's result.
func publish(ctx context.Context, t *testing.T) (string, api.ImportResult) {
	t.Helper()
	b := startNode(t, testConfig(t))
	addr := b.Status().Addrs[0]
	a := startNode(t, testConfig(t, addr))
	if err := a.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Path(t, "stories260K.bin"), Tokenizer: testmodels.Path(t, "tok512.bin"), Name: "stories260K"})
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
		_, err := sm.Complete(context.Background(), "Lily wanted to", openai.CompleteOptions{MaxTokens: 500, Sampler: model.SamplerConfig{}},
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
