package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// mycel runs the CLI in process and returns stdout, stderr and the error.
func mycel(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// statusOf is the status of the node whose API answers on addr.
func statusOf(t *testing.T, addr string) api.Status {
	t.Helper()
	out, _, err := mycel(t, "--api", addr, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The reference greedy texts of stories260K (the shared test models'
// README): from BOS, and from the prompt "Lily wanted to".
const (
	refFromBOS = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high"
	refPrompt  = "Lily wanted to go on a walk. She saw a big box with a big box. She wanted to see what was inside. She wanted to see what was inside.\n\"Hello, little boy,\" Lily said. \"What are"
)

func TestRunStories260KGreedy(t *testing.T) {
	bin := testmodels.Path(t, "stories260K.bin")
	tok := testmodels.Path(t, "tok512.bin")
	gguf := testmodels.Path(t, "stories260K.gguf")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"bin", []string{"-m", bin, "-z", tok}},
		{"gguf", []string{"-m", gguf}},
		{"bin with an f32 KV cache", []string{"-m", bin, "-z", tok, "--kv", "f32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--temp", "0", "-n", "60"}, tc.args...)
			out, stderr, err := mycel(t, args...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, stderr)
			}
			if got := strings.TrimSuffix(out, "\n"); got != refFromBOS {
				t.Errorf("from BOS:\n got %q\nwant %q", got, refFromBOS)
			}
			if !strings.Contains(stderr, "generated: 60 tokens") {
				t.Errorf("summary on stderr: %q", stderr)
			}
			// 81 positions in all: 5 prompt tokens (BOS included), 76 new.
			args = append([]string{"run", "--temp", "0", "-n", "76"}, append(tc.args, "Lily wanted to")...)
			out, stderr, err = mycel(t, args...)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, stderr)
			}
			if !strings.HasPrefix(out, refPrompt) {
				t.Errorf("from a prompt:\n got %q\nwant %q...", out, refPrompt)
			}
		})
	}
}

func TestRunSamplingIsSeeded(t *testing.T) {
	p := testmodels.Builtin(t)
	run := func(seed string) string {
		out, stderr, err := mycel(t, "run", "-m", p, "-n", "30", "--temp", "1", "--top-p", "0.9", "--seed", seed)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, stderr)
		}
		return out
	}
	a, b, c := run("5"), run("5"), run("6")
	if a != b {
		t.Errorf("the same seed gave different text:\n%q\n%q", a, b)
	}
	if a == c {
		t.Errorf("seeds 5 and 6 gave the same text %q", a)
	}
}

func TestRunTinyRandomGGUF(t *testing.T) {
	p := testmodels.Path(t, "llama-2-tiny-random.gguf")
	out, stderr, err := mycel(t, "run", "-m", p, "--temp", "0", "-n", "8", "Hello")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if !strings.HasPrefix(out, "Hello") || !strings.Contains(stderr, "generated: ") {
		t.Errorf("stdout %q, stderr %q", out, stderr)
	}
}

// TestRunBadInput checks that each kind of bad input is refused with a
// one-line error naming the problem.
func TestRunBadInput(t *testing.T) {
	p := testmodels.Builtin(t)
	tiny := tinyLlama2C(t) // a llama2.c checkpoint, whose vocabulary is a file of its own
	dir := t.TempDir()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.gguf")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	garbage := filepath.Join(dir, "garbage.gguf")
	os.WriteFile(garbage, []byte("this is not a model file at all, not even close"), 0o644)
	long := strings.Repeat("Lily wanted to play. ", 200)

	for _, tc := range []struct {
		name string
		args []string
		want string // a fragment the error must contain
	}{
		{"missing model", []string{"run", "-m", filepath.Join(dir, "nope.gguf")}, "nope.gguf"},
		{"truncated model", []string{"run", "-m", truncated}, "truncated.gguf"},
		{"not a model", []string{"run", "-m", garbage}, "garbage.gguf"},
		{"no tokenizer", []string{"run", "-m", tiny}, "-z"},
		{"wrong tokenizer", []string{"run", "-m", tiny, "-z", p}, "tokenizer"},
		{"prompt over context", []string{"run", "-m", p, long}, "context"},
		{"-n over context", []string{"run", "-m", p, "-n", "600"}, "context"},
		{"negative -n", []string{"run", "-m", p, "-n", "-1"}, "-n"},
		{"bad temperature", []string{"run", "-m", p, "--temp", "-1"}, "temperature"},
		{"bad KV cache type", []string{"run", "-m", p, "--kv", "q8_0"}, "--kv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := mycel(t, tc.args...)
			if err == nil {
				t.Fatalf("accepted; stdout %q", out)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
		})
	}
}

// TestExitStatus runs the real binary: errors exit non-zero with one line
// on stderr and nothing on stdout.
func TestExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	cmd := exec.Command(mycelBinary(t), "run", "-m", filepath.Join(t.TempDir(), "missing.gguf"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("exit: %v", err)
	}
	if stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "mycel: ") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestSynthRuns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	if _, stderr, err := mycel(t, "models", "synth", "--shape", "stories260K", "--dtype", "f32", "-o", p); err != nil {
		t.Fatalf("synth: %v\n%s", err, stderr)
	}
	out, stderr, err := mycel(t, "run", "-m", p, "--temp", "0", "-n", "5", "hi")
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if !strings.HasPrefix(out, "hi") {
		t.Errorf("stdout %q", out)
	}
	out, _, err = mycel(t, "bench", "decode", "-m", p, "-p", "4", "-n", "4", "--runs", "1", "--bandwidth=false")
	if err != nil || !strings.Contains(out, "decode") || strings.Contains(out, "bandwidth") {
		t.Errorf("bench decode --bandwidth=false: %v\n%s", err, out)
	}
	for _, depth := range []string{"0", "9"} {
		out, _, err = mycel(t, "bench", "decode", "-m", p, "-p", "4", "-n", "4", "--runs", "1", "--bandwidth=false", "--depth", depth)
		if err != nil || !strings.Contains(out, "4 tokens from "+depth+" cached positions") {
			t.Errorf("bench decode --depth %s: %v\n%s", depth, err, out)
		}
	}
	if _, stderr, err := mycel(t, "bench", "decode", "-m", p, "--depth", "100000"); err == nil || !strings.Contains(err.Error()+stderr, "context") {
		t.Errorf("bench decode --depth beyond the context: err %v, stderr %q", err, stderr)
	}
	// With the bandwidth: measured before and after the one run, and the
	// run's ratio against their mean.
	out, _, err = mycel(t, "bench", "decode", "-m", p, "-p", "4", "-n", "4", "--runs", "1")
	if err != nil || !strings.Contains(out, "median of 2 measurements around the runs") || !strings.Contains(out, "(median of 1 runs") {
		t.Errorf("bench decode: %v\n%s", err, out)
	}
	for _, kv := range []string{"f16", "f32"} {
		out, _, err = mycel(t, "bench", "decode", "-m", p, "-p", "4", "-n", "4", "--runs", "1", "--bandwidth=false", "--kv", kv)
		if err != nil || !strings.Contains(out, "read per decoded token on average ("+kv+",") {
			t.Errorf("bench decode --kv %s: %v\n%s", kv, err, out)
		}
	}
}

// TestSwarmDemo runs the local swarm demo on the built-in model from BOS
// with f32 on the wire: three servers on loopback choose their spans, the
// client finds them and plans a route, and greedy generation through them
// gives what mycel run gives on this machine alone.
func TestSwarmDemo(t *testing.T) {
	p := testmodels.Builtin(t)
	want, _ := localRun(t, "-n", "60", "")
	out, stderr, err := mycel(t, "swarm", "demo", "-m", p, "-n", "60", "--wire", "f32", "")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr)
	}
	if out != want {
		t.Errorf("demo text:\n got %q\nwant %q", out, want)
	}
	if strings.Count(stderr, "route: ") < 1 || strings.Count(stderr, "chose layers") != 3 || !strings.Contains(stderr, "layers 0:") {
		t.Errorf("demo did not show its route:\n%s", stderr)
	}
	// Stopping the second node mid-generation: the client moves to the
	// spare, replays, and the text is the same. The stopped server left:
	// one line says so and where its layers went; it is no liar, so
	// nobody is banned.
	out, stderr, err = mycel(t, "swarm", "demo", "-m", p, "-n", "60", "--wire", "f32", "--kill-after", "15", "")
	if err != nil {
		t.Fatalf("demo with a failure: %v\n%s", err, stderr)
	}
	if out != want {
		t.Errorf("demo text after failover:\n got %q\nwant %q", out, want)
	}
	var stopped, layers string
	for _, l := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(l, "(stopping "); ok {
			// (stopping ID, which runs layers A:B of the route, after N tokens)
			if f := strings.Fields(strings.ReplaceAll(rest, ",", "")); len(f) > 4 {
				stopped, layers = f[0], f[4]
			}
		}
	}
	left := "server " + stopped + " left; re-routing layers " + layers + " to "
	if stopped == "" || strings.Count(stderr, left) != 1 || !strings.Contains(stderr, "(16 positions replayed)") ||
		strings.Contains(stderr, "banned") || strings.Contains(stderr, "hop failed") {
		t.Errorf("demo did not show one line for the server that left (%q):\n%s", left, stderr)
	}
	// A generation longer than the story stops at its end, the model's
	// end of text.
	story, n := builtinStory(t, 400, false)
	out, stderr, err = mycel(t, "swarm", "demo", "-m", p, "-n", "400", "--wire", "f32", "")
	if err != nil {
		t.Fatalf("demo to the end of the story: %v\n%s", err, stderr)
	}
	if out != story || n >= 400 || !strings.Contains(stderr, fmt.Sprintf("generated %d tokens", n)) || !strings.Contains(stderr, "stopped at end of sequence") {
		t.Errorf("demo to the end of the story (%d tokens):\n%s\n%s", n, out, stderr)
	}
}
