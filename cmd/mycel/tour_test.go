package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
)

// syncBuffer is a bytes.Buffer that a node writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNodeLog is startNodeCmd that also returns what the node prints.
func startNodeLog(t *testing.T, extra ...string) (string, *syncBuffer) {
	t.Helper()
	api := freeAddr(t)
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &syncBuffer{}
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"node", "--api", api, "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"}, extra...))
		cmd.SetErr(out)
		cmd.SetOut(&bytes.Buffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, _, err := mycel(t, "--api", api, "status"); err == nil {
			return api, out
		}
	}
	t.Fatalf("node did not start:\n%s", out)
	return "", nil
}

// waitFor waits until the node's output contains s, as a user watching
// it would.
func waitFor(t *testing.T, out *syncBuffer, s string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(out.String(), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the node never printed %q:\n%s", s, out)
		}
	}
}

// TestSwarmTour follows the README's swarm tour with the default settings
// (no --dht anywhere): A imports a model, two volunteers serve it (the
// second choosing its span from what it sees of the first), and a plain
// node generates through them with `mycel run --swarm` on the first try,
// whether it joined after the servers or before them. No step waits for
// the client's view of the swarm: each waits only for what a user sees
// printed by the nodes.
func TestSwarmTour(t *testing.T) {
	for _, clientFirst := range []bool{false, true} {
		name := "client started last"
		if clientFirst {
			name = "client started first"
		}
		t.Run(name, func(t *testing.T) { testSwarmTour(t, clientFirst) })
	}
}

func testSwarmTour(t *testing.T, clientFirst bool) {
	a, _ := startNodeLog(t)
	out, _, err := mycel(t, "--api", a, "models", "import", testmodels.Builtin(t), "--name", "tales")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c := lines[len(lines)-1]
	boot := statusOf(t, a).Addrs[0]

	var client string
	if clientFirst {
		client, _ = startNodeLog(t, "--bootstrap", boot)
	}
	// The built-in model has 6 layers: with 3 at most each, the second
	// volunteer must see the first to cover the model.
	for range 2 {
		_, log := startNodeLog(t, "--bootstrap", boot, "--serve", c, "--max-layers", "3", "-t", "1")
		waitFor(t, log, "serving layers")
		if strings.Contains(log.String(), "before the DHT has peers") {
			t.Errorf("a volunteer served blind:\n%s", log)
		}
	}
	if !clientFirst {
		client, _ = startNodeLog(t, "--bootstrap", boot)
	}
	want, _ := localRun(t, "-n", "20", testmodels.BuiltinPrompt)
	stdout, stderr, err := mycel(t, "--api", client, "run", "-m", c, "--swarm", "-v", "--temp", "0", "-n", "20", testmodels.BuiltinPrompt)
	if err != nil {
		t.Fatalf("first run through the swarm: %v\n%s", err, stderr)
	}
	if stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if strings.Count(stderr, "route: ") != 2 {
		t.Errorf("want a route of two hops:\n%s", stderr)
	}
}
