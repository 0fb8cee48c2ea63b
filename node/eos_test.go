package node

import (
	"strings"
	"testing"
)

// storyTokens is the length of stories260K's greedy story from BOS: the
// model then writes BOS, to begin the next one, and generation stops.
const storyTokens = 345

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCompletionStopsAtEndOfText: a completion ends at the model's end
// of text with finish_reason "stop"; with ignore_eos it runs on into the
// next story up to max_tokens, with finish_reason "length".
func TestCompletionStopsAtEndOfText(t *testing.T) {
	_, base := openAINode(t)
	for _, ignore := range []bool{false, true} {
		body := `{"model":"stories260K","prompt":"","max_tokens":400,"temperature":0}`
		if ignore {
			body = strings.Replace(body, `"temperature"`, `"ignore_eos":true,"temperature"`, 1)
		}
		code, m := post(t, base+"/completions", body)
		if code != 200 {
			t.Fatalf("status %d: %v", code, m)
		}
		ch := m["choices"].([]any)[0].(map[string]any)
		n := m["usage"].(map[string]any)["completion_tokens"].(float64)
		text := ch["text"].(string)
		wantN, wantFinish, wantStories := float64(storyTokens), "stop", 1
		if ignore {
			wantN, wantFinish, wantStories = 400, "length", 2
		}
		if n != wantN || ch["finish_reason"] != wantFinish || strings.Count(text, "Once upon a time") != wantStories {
			t.Errorf("ignore_eos %v: %v tokens, finish %v, want %v and %q; text %q", ignore, n, ch["finish_reason"], wantN, wantFinish, text)
		}
	}
}
