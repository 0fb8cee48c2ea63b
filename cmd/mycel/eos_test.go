package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
)

// TestRunStopsAtEndOfText: mycel run ends the built-in model's story from
// BOS at its end of text, unless --ignore-eos, which runs on past it up to
// -n; the text is what one engine generates.
func TestRunStopsAtEndOfText(t *testing.T) {
	story, n := builtinStory(t, 400, false)
	if n >= 400 {
		t.Fatalf("the built-in model's story does not end in 400 tokens: %q", story)
	}
	args := []string{"run", "-m", testmodels.Builtin(t), "--temp", "0", "-n", "400"}
	out, stderr, err := mycel(t, args...)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if out != story || !strings.Contains(stderr, "generated: "+strconv.Itoa(n)+" tokens") || !strings.Contains(stderr, "stopped at end of sequence") {
		t.Errorf("run (want %d tokens):\n%s\n%s", n, out, stderr)
	}
	all, _ := builtinStory(t, 400, true)
	out, stderr, err = mycel(t, append(args, "--ignore-eos")...)
	if err != nil {
		t.Fatalf("run --ignore-eos: %v\n%s", err, stderr)
	}
	if out != all || !strings.HasPrefix(out, strings.TrimSuffix(story, "\n")) || len(out) <= len(story) ||
		!strings.Contains(stderr, "generated: 400 tokens") || strings.Contains(stderr, "stopped") {
		t.Errorf("run --ignore-eos:\n%s\n%s", out, stderr)
	}
}
