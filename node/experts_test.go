package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
)

// Two volunteers of a mixture of experts (the qwen3moe fixture) serve
// every layer with half its experts each (--experts), having pulled only
// those experts' parts; a node that holds no layer generates through
// them, the route's server sending the rows that chose the other half to
// the other volunteer, and gets the text the whole model gives on the
// publisher. A set naming experts the model lacks, or a set on a dense
// model, fails naming the flag.
func TestSwarmExpertsSplit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, a, res := publishing(ctx, t, api.ImportRequest{Path: testmodels.Path(t, "arch/qwen3moe.F32.gguf")})
	info, err := a.Inspect(ctx, mustCID(t, res.CID))
	if err != nil {
		t.Fatal(err)
	}
	c := info.Manifest.Config
	if c.Experts < 2 {
		t.Fatalf("fixture of %d experts", c.Experts)
	}
	half := c.Experts / 2
	sets := []string{fmt.Sprintf("0-%d", half-1), fmt.Sprintf("%d-%d", half, c.Experts-1)}

	// The whole model on the publisher: the text to get.
	const prompt, tokens = "Once upon a time", 12
	opts := openai.CompleteOptions{MaxTokens: tokens, IgnoreEOS: true}
	local, err := a.modelCompleter(ctx, res.CID)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	if _, err := local.Complete(ctx, prompt, opts, func(s string) error { want.WriteString(s); return nil }); err != nil {
		t.Fatal(err)
	}

	var servers []*Node
	for _, set := range sets {
		s := startNode(t, cfg())
		sv, err := s.Serve(ctx, ServeRequest{Model: res.CID, Experts: set, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := sv.Experts().String(); got != set {
			t.Fatalf("serving experts %s, asked for %s", got, set)
		}
		servers = append(servers, s)
	}
	// Each pulled its experts' parts and no other's.
	pulled := func(s *Node, first, last int, set model.ExpertSet) {
		t.Helper()
		in, err := s.Inspect(ctx, mustCID(t, res.CID))
		if err != nil {
			t.Fatal(err)
		}
		experts := 0
		for _, p := range in.Parts {
			var layer, e int
			if _, err := fmt.Sscanf(p.Name, "layer %d expert %d", &layer, &e); err != nil {
				continue
			}
			experts++
			if p.Local != (layer >= first && layer < last && set.Has(e)) {
				t.Errorf("server of experts %s: part %q at hand: %v", set, p.Name, p.Local)
			}
		}
		if experts == 0 {
			t.Fatalf("no expert part among %d parts", len(in.Parts))
		}
	}
	for i, s := range servers {
		set, _ := model.ParseExperts(sets[i], c.Experts)
		pulled(s, 0, c.Layers, set)
	}

	e := startNode(t, cfg())
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := e.SwarmStatus(ctx, res.CID)
		held := map[string]bool{}
		for _, si := range st.Servers {
			if si.State == "serving" {
				held[si.Experts] = true
			}
		}
		if err == nil && held[sets[0]] && held[sets[1]] {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the client never saw both halves served: %+v, %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var text strings.Builder
	err = api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: res.CID, Prompt: prompt, MaxTokens: tokens, IgnoreEOS: true},
		func(ev api.GenerateEvent) error { text.WriteString(ev.Text); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != want.String() {
		t.Errorf("through the swarm %q, the whole model %q", text.String(), want.String())
	}
	// The route's server sent rows to the other half's holder, and its
	// router's picks are announced.
	var ran int64
	for _, s := range servers {
		for _, layer := range s.servings[0].s.Server().ExpertLoad() {
			for _, n := range layer {
				ran += n
			}
		}
	}
	if ran == 0 {
		t.Error("no volunteer ran experts for the other")
	}

	// A volunteer whose memory cap holds not one whole layer serves one
	// layer with as many experts as fit (all but one here), picks them
	// itself, and pulls only those.
	weights, err := info.Manifest.LayerBytes(ctx, a.store, c.Layers-1)
	if err != nil {
		t.Fatal(err)
	}
	kv := model.CacheBytes(&c, model.DefaultKVType, 1, c.Context)
	f := startNode(t, cfg())
	sv, err := f.Serve(ctx, ServeRequest{Model: res.CID, Threads: 1, MemoryCap: weights + kv - 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := sv.Experts().Count(c.Experts); sv.Experts() == nil || n != c.Experts-1 || sv.Span().Len() != 1 {
		t.Fatalf("a cap of a layer less a byte holds experts %v of layers %s, want %d of %d of one layer", sv.Experts(), sv.Span(), c.Experts-1, c.Experts)
	}
	pulled(f, sv.Span().First, sv.Span().Last, sv.Experts())

	// Bad sets fail naming the flag.
	bad := []struct{ model, experts, says string }{
		{res.CID, fmt.Sprintf("0-%d", c.Experts), "outside the model's experts"},
		{res.CID, "two", "invalid syntax"},
	}
	dense, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t), Name: builtinName})
	if err != nil {
		t.Fatal(err)
	}
	bad = append(bad, struct{ model, experts, says string }{dense.CID, "0-1", "no routed experts"})
	for _, x := range bad {
		_, err := a.Serve(ctx, ServeRequest{Model: x.model, Experts: x.experts, Threads: 1})
		if err == nil || !strings.Contains(err.Error(), "--experts") || !strings.Contains(err.Error(), x.says) {
			t.Errorf("serving experts %q of %s: %v, want an error naming --experts that says %q", x.experts, x.model, err, x.says)
		}
	}
}
