package main

import (
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
)

// talesGolden is the built-in model's greedy continuation of
// testmodels.BuiltinPrompt: 40 new tokens, as mycel run prints them.
const talesGolden = "Once upon a time, there was a little girl named Nina. Her best friend was Pebble, a playful frog. One day, Nina and Pebble went to the meadow to play. There they found a little toy car behind"

// The built-in model (in the repository, so this runs on every checkout):
// mycel run prints the recorded greedy continuation, the same every time
// and with an f32 KV cache, and a whole story stops at the model's end of
// text.
func TestRunBuiltinModel(t *testing.T) {
	p := testmodels.Builtin(t)
	for _, extra := range [][]string{nil, nil, {"--kv", "f32"}} {
		out, stderr, err := mycel(t, append([]string{"run", "-m", p, "--temp", "0", "-n", "40", testmodels.BuiltinPrompt}, extra...)...)
		if err != nil {
			t.Fatalf("run %v: %v\n%s", extra, err, stderr)
		}
		if got := strings.TrimSuffix(out, "\n"); got != talesGolden {
			t.Errorf("greedy %v:\n got %q\nwant %q", extra, got, talesGolden)
		}
		if !strings.Contains(stderr, "generated: 40 tokens") {
			t.Errorf("summary on stderr: %q", stderr)
		}
	}
	out, stderr, err := mycel(t, "run", "-m", p, "--temp", "0", testmodels.BuiltinPrompt)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if !strings.HasPrefix(out, talesGolden) || !strings.Contains(stderr, "stopped at end of sequence") || strings.Count(out, "Once upon a time") != 1 {
		t.Errorf("a whole story:\n%s\n%s", out, stderr)
	}
}

// The swarm demo on the built-in model, as make run runs it: three servers
// choose their spans, the client generates through them the same text as
// mycel run, also when a node of the route stops half way and the client
// moves to a spare.
func TestSwarmDemoBuiltinModel(t *testing.T) {
	p := testmodels.Builtin(t)
	for _, kill := range []bool{false, true} {
		args := []string{"swarm", "demo", "-m", p, "--nodes", "3", "-n", "40", testmodels.BuiltinPrompt}
		if kill {
			args = append(args, "--kill-after", "20")
		}
		out, stderr, err := mycel(t, args...)
		if err != nil {
			t.Fatalf("demo %v: %v\n%s", args, err, stderr)
		}
		if got := strings.TrimSuffix(out, "\n"); got != talesGolden {
			t.Errorf("demo %v:\n got %q\nwant %q", args, got, talesGolden)
		}
		if strings.Count(stderr, "chose layers") < 3 || !strings.Contains(stderr, "route: ") {
			t.Errorf("demo %v did not show its servers and route:\n%s", args, stderr)
		}
		if kill && (!strings.Contains(stderr, "(stopping ") || !strings.Contains(stderr, " left; re-routing layers ")) {
			t.Errorf("demo %v did not show the failover:\n%s", args, stderr)
		}
	}
}
