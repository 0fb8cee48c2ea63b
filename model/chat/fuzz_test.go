package chat

import (
	"strings"
	"testing"
)

// FuzzRender renders random conversations through fixed templates: a
// template either renders or gives a one-line "chat template: " error,
// never panics; ChatML writes every message whole, and Mistral's check
// fails exactly when the roles do not alternate.
func FuzzRender(f *testing.F) {
	f.Add("system\x00You are kind.\x00user\x00Hi\x00assistant\x00Hello\x00user\x00Bye", true)
	f.Add("user\x00<think>\nx\n</think>\n\ny\x00assistant\x00<think>a</think>b", false)
	f.Add("user\x00{{ raise_exception('x') }}\x00user\x00{% endfor %}", true)
	f.Add("tool\x00<tool_response>\x00assistant\x00\x00\x00", false)
	f.Add("", true)
	chatml := load(f, "chatml", Special{BOS: "<s>", EOS: "<|im_end|>"})
	mistral := load(f, "mistral-v0.3", Special{BOS: "<s>", EOS: "</s>"})
	others := []*Template{
		load(f, "qwen3", Special{BOS: "<|endoftext|>", EOS: "<|im_end|>"}),
		load(f, "llama3.1", Special{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"}),
		load(f, "gemma3", Special{BOS: "<bos>", EOS: "<eos>"}),
		Builtin(Llama2), Builtin(Gemma), Builtin(Plain),
	}
	f.Fuzz(func(t *testing.T, data string, agp bool) {
		var msgs []Message
		parts := strings.Split(data, "\x00")
		roles := []string{"system", "user", "assistant", "tool"}
		for i := 0; i+1 < len(parts); i += 2 {
			role := parts[i]
			if len(role) == 1 {
				role = roles[int(role[0])%len(roles)]
			}
			msgs = append(msgs, Message{Role: role, Content: parts[i+1]})
		}
		check := func(tm *Template) (string, error) {
			out, err := tm.Render(msgs, agp)
			if err != nil && (!strings.HasPrefix(err.Error(), "chat template: ") || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("%s: error %q is not one line starting \"chat template: \"", tm.Family(), err)
			}
			return out, err
		}
		out, err := check(chatml)
		if err != nil {
			t.Fatalf("chatml: %v", err)
		}
		var want strings.Builder
		for _, m := range msgs {
			want.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		if agp {
			want.WriteString("<|im_start|>assistant\n")
		}
		if out != want.String() {
			t.Fatalf("chatml: got %q, want %q", out, want.String())
		}

		_, err = check(mistral)
		loop := msgs
		if len(loop) > 0 && loop[0].Role == "system" {
			loop = loop[1:]
		}
		alternates, known := true, true
		n := 0
		for _, m := range loop {
			if m.Role == "tool" || m.Role == "tool_results" {
				continue
			}
			if (m.Role == "user") != (n%2 == 0) {
				alternates = false
			}
			if m.Role != "user" && m.Role != "assistant" {
				known = false
			}
			n++
		}
		switch {
		case !alternates:
			if err == nil || !strings.Contains(err.Error(), "must alternate") {
				t.Fatalf("mistral: roles do not alternate, got error %v", err)
			}
		case known && err != nil && !strings.Contains(err.Error(), "Tool call IDs"):
			t.Fatalf("mistral: %v", err)
		}

		for _, tm := range others {
			check(tm)
		}
	})
}
