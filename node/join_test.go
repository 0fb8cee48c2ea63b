package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// A model imported on a node that was alone (nobody to announce it to) is
// announced once a peer arrives: a newcomer that never dialed the
// importer learns from the DHT who has it.
func TestImportAloneIsAnnouncedLater(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startNode(t, testConfig(t))
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t)})
	if err != nil {
		t.Fatal(err)
	}
	root := mustCID(t, res.CID)
	b := startNode(t, testConfig(t, a.Status().Addrs[0]))
	c := startNode(t, testConfig(t, b.Status().Addrs[0]))
	for {
		provs, err := c.Exchange().FindProviders(ctx, root, 0)
		if err == nil && len(provs) > 0 && provs[0].ID == a.Host().ID() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the DHT never learnt that the lone importer has the model: %v %v", provs, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// When the DHT knows nothing (every node a DHT client here, so no routing
// table has a peer) but the swarm directory knows a server of the model,
// generation goes ahead through that server instead of giving up.
func TestGenerateWhenOnlyTheDirectoryKnows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := func(boot ...string) Config {
		c := testConfig(t, boot...)
		c.DHTMode = "client"
		c.FetchStall = 5 * time.Second
		return c
	}
	a := startNode(t, cfg())
	res, err := a.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t)})
	if err != nil {
		t.Fatal(err)
	}
	aAddr := a.Status().Addrs[0]
	s := startNode(t, cfg(aAddr))
	if _, err := s.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:6", Threads: 1}); err != nil {
		t.Fatal(err)
	}
	e := startNode(t, cfg(aAddr, s.Status().Addrs[0]))
	e.waitJoined(ctx)
	if _, err := e.Exchange().FindProviders(ctx, mustCID(t, res.CID), 1); err == nil {
		t.Fatal("the DHT found a provider: the test no longer covers the directory alone")
	}
	var text strings.Builder
	err = api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: res.CID, Prompt: testmodels.BuiltinPrompt, MaxTokens: 20},
		func(ev api.GenerateEvent) error { text.WriteString(ev.Text); return nil })
	if err != nil {
		t.Fatalf("generation with the directory alone: %v", err)
	}
	if want := builtinContinues(t); text.String() != want {
		t.Errorf("text %q, want %q", text.String(), want)
	}
}
