package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
)

// mycelIn runs the CLI in process with stdin and returns stdout, stderr
// and the error.
func mycelIn(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// promptLines returns the prompts that mycel chat -v says the model saw.
func promptLines(t *testing.T, stderr string) (prompts []string, cached []int) {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		_, rest, ok := strings.Cut(line, "prompt: ")
		if !ok || !strings.Contains(rest, "from the cache: ") {
			continue
		}
		var n, c int
		var p string
		if _, err := fmt.Sscanf(rest, "%d tokens, %d from the cache: %q", &n, &c, &p); err != nil {
			t.Fatalf("prompt line %q: %v", line, err)
		}
		prompts, cached = append(prompts, p), append(cached, c)
	}
	return prompts, cached
}

// TestChatQwen3Template: mycel chat formats the conversation with the
// Jinja template stored in the GGUF (Qwen3's), keeps the history, runs
// only the new turn's tokens, forgets on /reset and stops at /exit.
func TestChatQwen3Template(t *testing.T) {
	gguf := testmodels.Path(t, "tokenizers/qwen3-tokenizer-random.gguf")
	stdin := "Hello!\n\nWhat is 2+2?\n/reset\nAgain\n/exit\nNot read\n"
	out, stderr, err := mycelIn(t, stdin, "chat", "-m", gguf, "--temp", "0", "-n", "6", "--system", "You are terse.", "-v", "-t", "1")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "chat format: chatml (the model's template)") {
		t.Errorf("format line missing:\n%s", stderr)
	}
	replies := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	prompts, cached := promptLines(t, stderr)
	if len(replies) != 3 || len(prompts) != 3 {
		t.Fatalf("%d replies, %d prompts:\n%s\n%s", len(replies), len(prompts), out, stderr)
	}
	sys := "<|im_start|>system\nYou are terse.<|im_end|>\n"
	want := []string{
		sys + "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
		sys + "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n" + strings.TrimSpace(replies[0]) + "<|im_end|>\n" +
			"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
		sys + "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n",
	}
	for i := range want {
		if prompts[i] != want[i] {
			t.Errorf("turn %d: the model saw\n%q\nwant\n%q", i+1, prompts[i], want[i])
		}
	}
	// Turn 2 reuses the cache of turn 1 (its prompt and reply); turn 3
	// only the system message.
	if cached[0] != 0 || cached[1] < 19 || cached[2] == 0 || cached[2] >= cached[1] {
		t.Errorf("positions from the cache: %v", cached)
	}
	if strings.Count(stderr, "reply: 6 tokens") != 3 {
		t.Errorf("replies of 6 tokens:\n%s", stderr)
	}
}

// TestChatPlain: a model without a template (the built-in model) chats
// in the plain format, with the history growing over the turns, until
// /exit.
func TestChatPlain(t *testing.T) {
	p := testmodels.Builtin(t)
	out, stderr, err := mycelIn(t, "Once upon a time\nThe end\n/exit\nNot read\n", "chat", "-m", p, "--temp", "0", "-n", "20", "-v", "--seed", "3")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, `chat format: plain (built-in); stop strings ["\nUser:" "\nSystem:"]`) {
		t.Errorf("format line missing:\n%s", stderr)
	}
	prompts, cached := promptLines(t, stderr)
	if len(prompts) != 2 || prompts[0] != "User: Once upon a time\nAssistant:" {
		t.Fatalf("prompts %q\n%s", prompts, stderr)
	}
	reply, _, _ := strings.Cut(out, "\n")
	if want := "User: Once upon a time\nAssistant: " + strings.TrimSpace(reply) + "\nUser: The end\nAssistant:"; prompts[1] != want {
		t.Errorf("turn 2: the model saw %q, want %q", prompts[1], want)
	}
	if cached[1] == 0 {
		t.Errorf("turn 2 reused no cached positions")
	}
}

// TestChatTemplateErrors: a turn the template refuses is reported and
// skipped, and the chat goes on; a template file that does not compile
// stops the command.
func TestChatTemplateErrors(t *testing.T) {
	p := testmodels.Builtin(t)
	dir := t.TempDir()
	strict := filepath.Join(dir, "strict.jinja")
	os.WriteFile(strict, []byte(`{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}`+
		`{% for m in messages %}{{ m.role }}: {{ m.content }}{{ '\n' }}{% endfor %}model:`), 0o644)
	out, stderr, err := mycelIn(t, "Hi\nHi again\n", "chat", "-m", p, "--template", strict, "--system", "Be nice", "-n", "4")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, stderr)
	}
	if strings.Count(stderr, "mycel: chat template: System role not supported\n") != 2 || out != "" {
		t.Errorf("stdout %q, stderr:\n%s", out, stderr)
	}
	broken := filepath.Join(dir, "broken.jinja")
	os.WriteFile(broken, []byte(`{% for m in messages %}`), 0o644)
	_, _, err = mycelIn(t, "Hi\n", "chat", "-m", p, "--template", broken)
	if err == nil || !strings.Contains(err.Error(), "chat template: does not compile") {
		t.Errorf("broken template: %v", err)
	}
	_, _, err = mycelIn(t, "Hi\n", "chat", "-m", p, "--template", "nosuchformat")
	if err == nil || !strings.Contains(err.Error(), "chatml, llama3, llama2, gemma, phi3 or plain") {
		t.Errorf("unknown format: %v", err)
	}
}

// TestChatContextFull: a reply is cut to the room left in --ctx, and a
// conversation that no longer fits is refused until /reset.
func TestChatContextFull(t *testing.T) {
	p := testmodels.Builtin(t)
	out, stderr, err := mycelIn(t, "Once upon a time\nThe end\n/reset\nHi\n", "chat", "-m", p, "--temp", "0", "--ctx", "24", "-v")
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, stderr)
	}
	// The first turn's prompt leaves 24 - its tokens for the reply.
	var first int
	if _, rest, ok := strings.Cut(stderr, "> prompt: "); !ok {
		t.Fatalf("no prompt line:\n%s", stderr)
	} else if _, err := fmt.Sscanf(rest, "%d tokens", &first); err != nil || first >= 24 {
		t.Fatalf("first prompt line %q: %d tokens, %v", rest, first, err)
	}
	if !strings.Contains(stderr, fmt.Sprintf("reply: %d tokens", 24-first)) || !strings.Contains(stderr, "and 24 fit (--ctx): /reset starts over") ||
		strings.Count(stderr, "reply: ") != 2 || strings.Count(out, "\n") != 2 {
		t.Errorf("stdout %q, stderr:\n%s", out, stderr)
	}
}

func TestStopWriter(t *testing.T) {
	for _, c := range []struct {
		pieces   []string
		out      string
		reply    string
		stopped  bool
		unflushd string // written before the final flush
	}{
		{[]string{"Hel", "lo"}, "Hello", "Hello", false, "Hello"},
		{[]string{"Hi", "<|im_", "end|>", "more"}, "Hi", "Hi", true, "Hi"},
		{[]string{"Hi<", "|im_end|> tail"}, "Hi", "Hi", true, "Hi"},
		{[]string{"a <", "b"}, "a <b", "a <b", false, "a <b"},
		{[]string{"x\nUs", "er: y"}, "x", "x", true, "x"},
		{[]string{"x <|im_"}, "x <|im_", "x <|im_", false, "x "},
	} {
		var b bytes.Buffer
		w := &stopWriter{w: &b, stops: []string{"<|im_end|>", "\nUser:"}}
		stopped := false
		for _, p := range c.pieces {
			if w.write(p) {
				stopped = true
				break
			}
		}
		before := b.String()
		w.flush()
		if b.String() != c.out || w.text != c.reply || stopped != c.stopped || before != c.unflushd {
			t.Errorf("%q: wrote %q (%q before flush), reply %q, stopped %v", c.pieces, b.String(), before, w.text, stopped)
		}
	}
}
