package openai

import (
	"errors"
	"strings"
	"testing"
)

func TestStopFilter(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		stops  []string
		want   string
		hit    bool
	}{
		{[]string{"hello ", "wor", "ld"}, nil, "hello world", false},
		{[]string{"hello ", "<|im", "_end|> more"}, []string{"<|im_end|>"}, "hello ", true},
		{[]string{"a<", "b"}, []string{"<|im_end|>"}, "a<b", false},
		{[]string{"one. two"}, []string{".", "two"}, "one", true},
		{[]string{"ab", "c"}, []string{"bcd"}, "abc", false},
	} {
		var got strings.Builder
		f := newStopFilter(tc.stops, func(s string) error { got.WriteString(s); return nil })
		hit := false
		for _, c := range tc.chunks {
			if err := f.write(c); errors.Is(err, errStopString) {
				hit = true
				break
			}
		}
		if !hit {
			f.flush()
		}
		if got.String() != tc.want || hit != tc.hit {
			t.Errorf("%q with stops %q: got %q (stopped %v), want %q (%v)", tc.chunks, tc.stops, got.String(), hit, tc.want, tc.hit)
		}
	}
}

func TestChatTemplates(t *testing.T) {
	msgs := []Message{{Role: "system", Content: "S"}, {Role: "user", Content: "U"}}
	for tmpl, want := range map[ChatTemplate]string{
		ChatML: "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n",
		Llama3: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
		Llama2: "[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]",
		Plain:  "System: S\nUser: U\nAssistant:",
	} {
		if got, _ := tmpl.Render(msgs); got != want {
			t.Errorf("%s:\n got %q\nwant %q", tmpl, got, want)
		}
	}
	if DetectChatTemplate("{% for m in messages %}<|im_start|>{{ m.role }}", nil) != ChatML ||
		DetectChatTemplate("<|start_header_id|>", nil) != Llama3 ||
		DetectChatTemplate("[INST] {{ x }}", nil) != Llama2 || DetectChatTemplate("", nil) != Plain {
		t.Error("template detection")
	}
}
