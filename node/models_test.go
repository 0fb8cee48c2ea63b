package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// swarm3 starts A, B and C, where A and C know only B.
func swarm3(t *testing.T) (a, b, c *Node) {
	t.Helper()
	b = startNode(t, testConfig(t))
	addr := b.Status().Addrs[0]
	cfg := func() Config {
		c := testConfig(t, addr)
		c.FetchStall = 3 * time.Second
		return c
	}
	a, c = startNode(t, cfg()), startNode(t, cfg())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range []*Node{a, c} {
		if err := n.Host().WaitRoutable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return a, b, c
}

func TestImportPullRun(t *testing.T) {
	a, _, c := swarm3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := api.NewClient(a.APIURL()).Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t), Name: builtinName})
	if err != nil {
		t.Fatal(err)
	}
	root, err := cid.Decode(res.CID)
	if err != nil {
		t.Fatal(err)
	}
	// C knows only B; it finds A through the DHT and pulls everything.
	var last api.PullProgress
	err = api.NewClient(c.APIURL()).Pull(ctx, api.PullRequest{CID: res.CID}, func(p api.PullProgress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.DoneBlocks != last.TotalBlocks || last.DoneBytes != last.TotalBytes {
		t.Errorf("last progress %+v", last)
	}
	l, err := shards.Load(ctx, c.Store(), root, shards.Whole(builtinLayers))
	if err != nil {
		t.Fatal(err)
	}
	// C's copy generates what the file does.
	src, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	be, _ := kernels.Open("cpu", 1)
	defer be.Close()
	gen := func(w *model.Weights) []int {
		var ids []int
		if _, err := model.NewEngine(w, be).Generate(ctx, []int{1}, model.GenerateOptions{MaxTokens: 20}, func(id int) error {
			ids = append(ids, id)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got, want := gen(l.Weights), gen(src.Weights); fmt.Sprint(got) != fmt.Sprint(want) || len(want) != 20 {
		t.Errorf("C generates %v, the file %v", got, want)
	}
	info, err := api.NewClient(c.APIURL()).Inspect(ctx, res.CID)
	if err != nil || info.LocalParts != info.TotalParts || info.TotalParts != builtinLayers+2 || info.Name != builtinName {
		t.Errorf("inspect on C: %+v, %v", info, err)
	}
	list, err := api.NewClient(c.APIURL()).List(ctx)
	if err != nil || len(list) != 1 || list[0].CID != res.CID {
		t.Errorf("list on C: %+v, %v", list, err)
	}
	// Removing deletes its blocks; inspecting then says it is gone.
	if n, err := api.NewClient(c.APIURL()).Remove(ctx, res.CID); err != nil || n == 0 {
		t.Errorf("remove: %d blocks, %v", n, err)
	}
	if c.Store().Size() != 0 {
		t.Errorf("%d bytes left in C's store after removing its only model", c.Store().Size())
	}
	if _, err := api.NewClient(c.APIURL()).Inspect(ctx, res.CID); err == nil || !strings.Contains(err.Error(), "not on this node") {
		t.Errorf("inspect after remove: %v", err)
	}
}

// TestPullSpan pulls layers 2:4 and checks that only their blocks came.
func TestPullSpan(t *testing.T) {
	a, _, c := swarm3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t)})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := cid.Decode(res.CID)
	if err := c.Pull(ctx, api.PullRequest{CID: res.CID, Layers: "2:4"}, func(api.PullProgress) {}); err != nil {
		t.Fatal(err)
	}
	want, _, err := shards.BlocksFor(ctx, a.Store(), root, shards.Span{First: 2, Last: 4})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.Store().AllKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(want) {
		t.Errorf("C holds %d blocks after pulling layers 2:4, want %d", len(keys), len(want))
	}
	l, err := shards.Load(ctx, c.Store(), root, shards.Span{First: 2, Last: 4})
	if err != nil || !l.Weights.HasLayers(2, 4) {
		t.Fatalf("span load on C: %v", err)
	}
	if _, err := shards.Load(ctx, c.Store(), root, shards.Whole(builtinLayers)); !errors.Is(err, blocks.ErrNotFound) {
		t.Errorf("loading the whole model after pulling two layers: %v, want not found", err)
	}
}

func TestPullUnknownCID(t *testing.T) {
	_, _, c := swarm3(t)
	ctx := context.Background()
	unknown := "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	start := time.Now()
	err := api.NewClient(c.APIURL()).Pull(ctx, api.PullRequest{CID: unknown, Timeout: "20s"}, func(api.PullProgress) {})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("pull of an unknown CID: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("pull of an unknown CID took %v", d)
	}
	if err := api.NewClient(c.APIURL()).Pull(ctx, api.PullRequest{CID: "not-a-cid"}, func(api.PullProgress) {}); err == nil || !strings.Contains(err.Error(), `"not-a-cid" is neither a CID nor the name`) {
		t.Errorf("pull of garbage: %v", err)
	}
}

// TestRestartKeepsModels imports a model on a node that is alone (so its
// announcements reach nobody), restarts it with the same data directory
// and a bootstrap peer: it keeps its identity, its blocks and what it
// provides, so a node that knows only the bootstrap peer finds and pulls
// the model.
func TestRestartKeepsModels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfgA := testConfig(t)
	a, err := New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := a.Status().ID
	a.Close()

	b := startNode(t, testConfig(t))
	addr := b.Status().Addrs[0]
	cfgA.Bootstrap = []string{addr}
	a2 := startNode(t, cfgA)
	if a2.Status().ID != id {
		t.Errorf("identity changed across a restart")
	}
	if has, _ := a2.Store().Has(ctx, mustCID(t, res.CID)); !has {
		t.Fatal("blocks lost across a restart")
	}
	// B, new to the network, learns that A provides the model only from
	// A's announcement at start (A's own records stay on A's disk).
	for {
		ps, err := b.Host().DHT().LAN.ProviderStore().GetProviders(ctx, mustCID(t, res.CID).Hash())
		if err == nil && len(ps) > 0 && ps[0].ID.String() == id {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the restarted node did not announce its model to its new neighbour")
		case <-time.After(50 * time.Millisecond):
		}
	}
	cfgC := testConfig(t, addr)
	cfgC.FetchStall = 5 * time.Second
	c := startNode(t, cfgC)
	if err := c.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	// The DHT must answer for the model with the restarted node: its
	// announcements at start, and its own provider records kept in its
	// data directory, both make sure of that.
	for {
		ps, _ := c.Exchange().FindProviders(ctx, mustCID(t, res.CID), 1)
		if len(ps) > 0 && ps[0].ID.String() == id {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the restarted node never announced its model")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := c.Pull(ctx, api.PullRequest{CID: res.CID}, func(api.PullProgress) {}); err != nil {
		t.Fatalf("pull from the restarted node: %v", err)
	}
}

func mustCID(t *testing.T, s string) cid.Cid {
	c, err := cid.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
