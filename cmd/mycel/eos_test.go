package main

import (
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
)

// storyTokens is the length of stories260K's greedy story from BOS; the
// model then writes BOS, to begin another story.
const storyTokens = "345"

// TestRunStopsAtEndOfText: mycel run ends the story at the model's end of
// text, with the llama2.c file and with the GGUF, unless --ignore-eos,
// which runs on into the next story up to -n.
func TestRunStopsAtEndOfText(t *testing.T) {
	bin := testmodels.Path(t, "stories260K.bin")
	tok := testmodels.Path(t, "tok512.bin")
	gguf := testmodels.Path(t, "stories260K.gguf")
	for _, model := range [][]string{{"-m", bin, "-z", tok}, {"-m", gguf}} {
		args := append([]string{"run", "--temp", "0", "-n", "400"}, model...)
		out, stderr, err := mycel(t, args...)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, stderr)
		}
		if !strings.HasPrefix(out, refFromBOS) || strings.Count(out, "Once upon a time") != 1 ||
			!strings.Contains(stderr, "generated: "+storyTokens+" tokens") || !strings.Contains(stderr, "stopped at end of sequence") {
			t.Errorf("%v:\n%s\n%s", model, out, stderr)
		}
		out, stderr, err = mycel(t, append(args, "--ignore-eos")...)
		if err != nil {
			t.Fatalf("run --ignore-eos: %v\n%s", err, stderr)
		}
		if strings.Count(out, "Once upon a time") != 2 || !strings.Contains(stderr, "generated: 400 tokens") || strings.Contains(stderr, "stopped") {
			t.Errorf("%v --ignore-eos:\n%s\n%s", model, out, stderr)
		}
	}
}
