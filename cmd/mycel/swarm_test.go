package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// Real `mycel node` processes in one test: a publisher imports the
// built-in model, three volunteers run `mycel node --serve CID
// --max-layers 2` and choose their spans, and a node that holds no layer
// runs `mycel run -m CID -v`: on stdout the text mycel run gives with the
// file on this machine alone, the route on stderr; `mycel swarm status`
// shows the servers.
func TestRunThroughTheSwarm(t *testing.T) {
	p := testmodels.Builtin(t)
	pub := startNodeCmd(t)
	out, _, err := mycel(t, "--api", pub, "models", "import", p, "--name", "tales")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c := lines[len(lines)-1]
	boot := statusOf(t, pub).Addrs[0]
	for range 3 {
		startNodeCmd(t, "--bootstrap", boot, "--serve", c, "--max-layers", "2", "-t", "1")
	}
	client := startNodeCmd(t, "--bootstrap", boot)

	var ss api.SwarmStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		js, _, err := mycel(t, "--api", client, "swarm", "status", c, "--json")
		if err == nil && json.Unmarshal([]byte(js), &ss) == nil && len(ss.Servers) == 3 && len(ss.Missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the volunteers never covered the model: %s %v", js, err)
		}
	}
	table, _, err := mycel(t, "--api", client, "swarm", "status", c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "3 servers") || !strings.Contains(table, "every layer is served") || strings.Count(table, "serving") != 3 {
		t.Errorf("swarm status table:\n%s", table)
	}

	want, _ := localRun(t, "-n", "20", testmodels.BuiltinPrompt)
	stdout, stderr, err := mycel(t, "--api", client, "run", "-m", c, "-v", "--temp", "0", "-n", "20", testmodels.BuiltinPrompt)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	at := 0
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, "route: ") {
			continue
		}
		var first, last int
		var peer string
		if _, err := fmt.Sscanf(l, "route: %s layers %d:%d", &peer, &first, &last); err != nil || first != at {
			t.Fatalf("route line %q does not continue from layer %d", l, at)
		}
		at = last
	}
	if at != builtinLayers {
		t.Fatalf("the route lines do not cover the %d layers:\n%s", builtinLayers, stderr)
	}
	if !strings.Contains(stderr, "generated: 20 tokens through the swarm") {
		t.Errorf("summary missing:\n%s", stderr)
	}
	// Through the swarm too the story ends at the model's end of text,
	// unless --ignore-eos.
	story, storyTokens := builtinStory(t, 400, false)
	stdout, stderr, err = mycel(t, "--api", client, "run", "-m", c, "--temp", "0", "-n", "400", "")
	if err != nil || stdout != story ||
		!strings.Contains(stderr, fmt.Sprintf("generated: %d tokens through the swarm", storyTokens)) || !strings.Contains(stderr, "stopped at end of sequence") {
		t.Errorf("run to the end of the story: %v\n%s\n%s", err, stdout, stderr)
	}
	all, _ := builtinStory(t, 400, true)
	stdout, stderr, err = mycel(t, "--api", client, "run", "-m", c, "--temp", "0", "-n", "400", "--ignore-eos", "")
	if err != nil || stdout != all ||
		!strings.Contains(stderr, "generated: 400 tokens through the swarm") || strings.Contains(stderr, "stopped") {
		t.Errorf("run --ignore-eos: %v\n%s\n%s", err, stdout, stderr)
	}

	// A volunteer that serves every layer runs the model itself (a node is
	// never a hop of its own route): it fetches the embedding and head.
	whole := startNodeCmd(t, "--bootstrap", boot, "--serve", c, "-t", "1")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		js, _, err := mycel(t, "--api", whole, "models", "ls")
		if err == nil && strings.Contains(js, c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the whole-model volunteer never pulled its layers: %s %v", js, err)
		}
	}
	stdout, stderr, err = mycel(t, "--api", whole, "run", "-m", c, "--temp", "0", "-n", "20", testmodels.BuiltinPrompt)
	if err != nil {
		t.Fatalf("run on the whole-model volunteer: %v\n%s", err, stderr)
	}
	if stdout != want || strings.Contains(stderr, "through the swarm") {
		t.Errorf("run on the whole-model volunteer: stdout %q, stderr %q", stdout, stderr)
	}

	// An unknown model, and a file with --swarm, are clear errors.
	if _, stderr, err := mycel(t, "--api", client, "run", "-m", "no-such-model", "Hi"); err == nil || !strings.Contains(stderr+err.Error(), "no-such-model") {
		t.Errorf("unknown model: %v %s", err, stderr)
	}
	if _, stderr, err := mycel(t, "--api", client, "run", "-m", p, "--swarm", "Hi"); err == nil || !strings.Contains(stderr+err.Error(), "is a file") {
		t.Errorf("--swarm with a file: %v %s", err, stderr)
	}
}
