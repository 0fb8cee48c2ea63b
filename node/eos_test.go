package node

import (
	"strings"
	"testing"
)

// TestCompletionStopsAtEndOfText: a completion from BOS ends at the
// model's end of text with finish_reason "stop"; with ignore_eos it runs
// on past it up to max_tokens, with finish_reason "length". The texts are
// a local engine's.
func TestCompletionStopsAtEndOfText(t *testing.T) {
	_, base := openAINode(t)
	story := builtinGreedy(t, "", 400, false)
	if !story.StoppedAtEOS {
		t.Fatalf("the built-in model's story from BOS does not end in 400 tokens: %q", story.Text)
	}
	for _, ignore := range []bool{false, true} {
		body := completionBody("", 400, "")
		want, wantFinish := story, "stop"
		if ignore {
			body = completionBody("", 400, `,"ignore_eos":true`)
			want, wantFinish = builtinGreedy(t, "", 400, true), "length"
		}
		code, m := post(t, base+"/completions", body)
		if code != 200 {
			t.Fatalf("status %d: %v", code, m)
		}
		ch := m["choices"].([]any)[0].(map[string]any)
		n := m["usage"].(map[string]any)["completion_tokens"].(float64)
		text := ch["text"].(string)
		if n != float64(want.CompletionTokens) || ch["finish_reason"] != wantFinish || text != want.Text {
			t.Errorf("ignore_eos %v: %v tokens, finish %v, want %d and %q; text\n%q\nwant\n%q", ignore, n, ch["finish_reason"], want.CompletionTokens, wantFinish, text, want.Text)
		}
		if ignore && (want.CompletionTokens != 400 || !strings.HasPrefix(text, story.Text) || len(text) <= len(story.Text)) {
			t.Errorf("with ignore_eos the story does not go on: %q", text)
		}
	}
}
