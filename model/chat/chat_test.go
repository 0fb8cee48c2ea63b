package chat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The conversations every template renders.
var (
	sys  = Message{"system", "You are a helpful assistant."}
	u1   = Message{"user", "Hello!"}
	a1   = Message{"assistant", "Hi there. How can I help?"}
	u2   = Message{"user", "What is 2+2?"}
	full = []Message{sys, u1, a1, u2}
	// noSys is the same conversation without the system message.
	noSys = []Message{u1, a1, u2}
	// twoUsers breaks the user/assistant alternation.
	twoUsers = []Message{u1, {"user", "Anyone there?"}}
)

func load(t testing.TB, name string, sp Special) *Template {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := Compile(string(src), sp)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tm
}

type renderCase struct {
	name string
	msgs []Message
	agp  bool
	want string // the prompt; "error: ..." for an error
}

func checkRenders(t *testing.T, tm *Template, cases []renderCase) {
	t.Helper()
	for _, c := range cases {
		got, err := tm.Render(c.msgs, c.agp)
		if strings.HasPrefix(c.want, "error: ") {
			want := "chat template: " + strings.TrimPrefix(c.want, "error: ")
			if err == nil || err.Error() != want {
				t.Errorf("%s: got %q, %v; want error %q", c.name, got, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
	}
}

func TestLlama3(t *testing.T) {
	tm := load(t, "llama3", Special{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"})
	checkRenders(t, tm, []renderCase{
		{"full", full, true, "<|begin_of_text|>" +
			"<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"no system, no generation prompt", noSys, false, "<|begin_of_text|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"},
		// Content is trimmed.
		{"trim", []Message{{"user", "  spaced out \n"}}, true, "<|begin_of_text|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nspaced out<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\n"},
	})
	if tm.Family() != Llama3 || strings.Join(tm.Stops(), " ") != "<|eot_id|>" {
		t.Errorf("family %s, stops %q", tm.Family(), tm.Stops())
	}
}

func TestLlama31(t *testing.T) {
	tm := load(t, "llama3.1", Special{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"})
	head := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
		"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
	turns := "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
	checkRenders(t, tm, []renderCase{
		{"full", full, true, head + "You are a helpful assistant.<|eot_id|>" + turns +
			"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		// Without a system message the system turn still carries the dates.
		{"no system", noSys, false, head + "<|eot_id|>" + turns},
	})
}

func TestQwen25(t *testing.T) {
	tm := load(t, "qwen2.5", Special{EOS: "<|im_end|>"})
	turns := "<|im_start|>user\nHello!<|im_end|>\n" +
		"<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n" +
		"<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
	checkRenders(t, tm, []renderCase{
		{"full", full, true, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + turns + "<|im_start|>assistant\n"},
		// Qwen 2.5 brings its own system prompt.
		{"no system", noSys, true, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
			turns + "<|im_start|>assistant\n"},
		{"no generation prompt", full, false, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + turns},
	})
	if tm.Family() != ChatML || strings.Join(tm.Stops(), " ") != "<|im_end|>" {
		t.Errorf("family %s, stops %q", tm.Family(), tm.Stops())
	}
}

func TestQwen3(t *testing.T) {
	tm := load(t, "qwen3", Special{BOS: "<|endoftext|>", EOS: "<|im_end|>"})
	turns := "<|im_start|>user\nHello!<|im_end|>\n" +
		"<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n" +
		"<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
	checkRenders(t, tm, []renderCase{
		{"full", full, true, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + turns + "<|im_start|>assistant\n"},
		// No default system prompt, unlike Qwen 2.5.
		{"no system", noSys, true, turns + "<|im_start|>assistant\n"},
		// The reasoning of an earlier turn is dropped from the history.
		{"earlier thinking dropped", []Message{u1, {"assistant", "<think>\nThey greet me.\n</think>\n\nHi!"}, u2}, true,
			"<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n" +
				"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"},
		// After the last user message, an assistant turn keeps its
		// reasoning, and one without gets an empty think block.
		{"last turn keeps thinking", []Message{u1, {"assistant", "<think>\nThey greet me.\n</think>\n\nHi!"}}, false,
			"<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\nThey greet me.\n</think>\n\nHi!<|im_end|>\n"},
		{"empty think block", []Message{u1, {"assistant", "Hi!"}}, false,
			"<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi!<|im_end|>\n"},
		{"tool response", []Message{u1, {"tool", "42"}}, true,
			"<|im_start|>user\nHello!<|im_end|>\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"},
	})
	if got := strings.Join(tm.Stops(), " "); got != "<|im_end|>" {
		t.Errorf("stops %q", got)
	}
}

func TestMistral(t *testing.T) {
	tm := load(t, "mistral-v0.3", Special{BOS: "<s>", EOS: "</s>"})
	alternate := "error: After the optional system message, conversation roles must alternate user/assistant/user/assistant/..."
	checkRenders(t, tm, []renderCase{
		// The system message goes into the last user turn; the generation
		// prompt changes nothing.
		{"full", full, true, "<s>[INST] Hello![/INST] Hi there. How can I help?</s>" +
			"[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]"},
		{"full, no generation prompt", full, false, "<s>[INST] Hello![/INST] Hi there. How can I help?</s>" +
			"[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]"},
		{"no system", noSys, true, "<s>[INST] Hello![/INST] Hi there. How can I help?</s>[INST] What is 2+2?[/INST]"},
		{"two users", twoUsers, true, alternate},
		{"assistant first", []Message{a1, u1}, true, alternate},
		{"system later", []Message{u1, a1, sys}, true, alternate},
		{"unknown role", []Message{u1, {"narrator", "Meanwhile"}}, true,
			"error: Only user and assistant roles are supported, with the exception of an initial optional system message!"},
	})
	if tm.Family() != Llama2 || strings.Join(tm.Stops(), " ") != "[INST] </s>" {
		t.Errorf("family %s, stops %q", tm.Family(), tm.Stops())
	}
}

func TestGemma2(t *testing.T) {
	tm := load(t, "gemma2", Special{BOS: "<bos>", EOS: "<eos>"})
	checkRenders(t, tm, []renderCase{
		{"no system", noSys, true, "<bos><start_of_turn>user\nHello!<end_of_turn>\n" +
			"<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n" +
			"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"},
		{"system", full, true, "error: System role not supported"},
		{"two users", twoUsers, true, "error: Conversation roles must alternate user/assistant/user/assistant/..."},
	})
}

func TestGemma3(t *testing.T) {
	tm := load(t, "gemma3", Special{BOS: "<bos>", EOS: "<eos>"})
	checkRenders(t, tm, []renderCase{
		// The system prompt opens the first user turn.
		{"full", full, true, "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n" +
			"<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n" +
			"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"},
		{"no system, no generation prompt", noSys, false, "<bos><start_of_turn>user\nHello!<end_of_turn>\n" +
			"<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n" +
			"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"},
		{"two users", twoUsers, true, "error: Conversation roles must alternate user/assistant/user/assistant/..."},
	})
	if tm.Family() != Gemma || strings.Join(tm.Stops(), " ") != "<end_of_turn> <eos>" {
		t.Errorf("family %s, stops %q", tm.Family(), tm.Stops())
	}
}

func TestPhi3(t *testing.T) {
	tm := load(t, "phi3", Special{BOS: "<s>", EOS: "<|endoftext|>"})
	turns := "<|user|>\nHello!<|end|>\n<|assistant|>\nHi there. How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n"
	checkRenders(t, tm, []renderCase{
		{"full", full, true, "<|system|>\nYou are a helpful assistant.<|end|>\n" + turns + "<|assistant|>\n"},
		{"no system", noSys, true, turns + "<|assistant|>\n"},
		// Without the generation prompt the text ends with EOS.
		{"no generation prompt", noSys, false, turns + "<|endoftext|>"},
	})
	if tm.Family() != Phi3 || strings.Join(tm.Stops(), " ") != "<|end|> <|endoftext|>" {
		t.Errorf("family %s, stops %q", tm.Family(), tm.Stops())
	}
}

func TestChatML(t *testing.T) {
	tm := load(t, "chatml", Special{BOS: "<s>", EOS: "<|im_end|>"})
	turns := "<|im_start|>user\nHello!<|im_end|>\n" +
		"<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n" +
		"<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
	checkRenders(t, tm, []renderCase{
		{"full", full, true, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + turns + "<|im_start|>assistant\n"},
		{"no system", noSys, false, turns},
		// No alternation check: any roles, content as given.
		{"any roles", []Message{{"tool", " x "}, {"user", ""}}, true,
			"<|im_start|>tool\n x <|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"},
	})
}

func TestLlama2(t *testing.T) {
	tm := load(t, "llama2", Special{BOS: "<s>", EOS: "</s>"})
	checkRenders(t, tm, []renderCase{
		{"full", full, true, "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST]" +
			" Hi there. How can I help? </s><s>[INST] What is 2+2? [/INST]"},
		{"no system", noSys, true, "<s>[INST] Hello! [/INST] Hi there. How can I help? </s><s>[INST] What is 2+2? [/INST]"},
		{"two users", twoUsers, true, "error: Conversation roles must alternate user/assistant/user/assistant/..."},
	})
}

// The built-in formats are node's: ChatML, Llama 3, Llama 2 and plain
// lines, plus Gemma and Phi-3.
func TestBuiltin(t *testing.T) {
	cases := []struct {
		f         Family
		want      string
		wantNoAGP string
		stops     string
	}{
		{ChatML, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
			"<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
			"<|im_end|>"},
		{Llama3, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
			"<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
			"<|eot_id|>"},
		{Llama2, "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. How can I help? </s><s>[INST] What is 2+2? [/INST]",
			"[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. How can I help? </s><s>[INST] What is 2+2? [/INST]",
			"[INST]"},
		{Gemma, "<start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n" +
			"<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
			"<start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n" +
				"<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n",
			"<end_of_turn>"},
		{Phi3, "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n" +
			"<|assistant|>\nHi there. How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
			"<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n" +
				"<|assistant|>\nHi there. How can I help?<|end|>\n<|user|>\nWhat is 2+2?<|end|>\n",
			"<|end|>"},
		{Plain, "System: You are a helpful assistant.\nUser: Hello!\nAssistant: Hi there. How can I help?\nUser: What is 2+2?\nAssistant:",
			"System: You are a helpful assistant.\nUser: Hello!\nAssistant: Hi there. How can I help?\nUser: What is 2+2?\n",
			"\nUser:|\nSystem:"},
	}
	for _, c := range cases {
		tm := Builtin(c.f)
		if tm.Family() != c.f || tm.Source() != "" {
			t.Errorf("Builtin(%s): family %s, source %q", c.f, tm.Family(), tm.Source())
		}
		for _, agp := range []bool{true, false} {
			want := c.want
			if !agp {
				want = c.wantNoAGP
			}
			if got, err := tm.Render(full, agp); err != nil || got != want {
				t.Errorf("%s, generation prompt %v:\n got  %q, %v\n want %q", c.f, agp, got, err, want)
			}
		}
		if got := strings.Join(tm.Stops(), "|"); got != c.stops {
			t.Errorf("%s stops %q, want %q", c.f, got, c.stops)
		}
	}
	if Builtin(Custom).Family() != Plain || Builtin("nonsense").Family() != Plain {
		t.Error("an unknown family's built-in format is not Plain")
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		src  string
		want Family
	}{
		{"{% for m in messages %}<|im_start|>{{ m.role }}", ChatML},
		{"<|start_header_id|>", Llama3},
		{"[INST] {{ x }}", Llama2},
		{"{{ '<start_of_turn>' + role }}", Gemma},
		{"{{'<|user|>\n' + m + '<|end|>\n'}}", Phi3},
		{"", Plain},
		{"{{ messages }}", Plain},
	} {
		if got := Detect(c.src, nil); got != c.want {
			t.Errorf("Detect(%q) = %s, want %s", c.src, got, c.want)
		}
	}
	for _, c := range []struct {
		pieces []string
		want   Family
	}{
		{[]string{"a", "<|im_start|>", "<|im_end|>"}, ChatML},
		{[]string{"<|start_header_id|>"}, Llama3},
		{[]string{"<start_of_turn>", "<end_of_turn>"}, Gemma},
		{[]string{"<|user|>", "<|end|>"}, Phi3},
		{[]string{"<|user|>"}, Plain},
		{[]string{"<s>", "</s>", "hello"}, Plain},
	} {
		if got := Detect("", fakeVocab(c.pieces)); got != c.want {
			t.Errorf("Detect(vocab %q) = %s, want %s", c.pieces, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, src := range []string{
		"{% for m in messages %}no end",
		"{{ messages[0 }}",
		"{% if x %}no endif",
		"{{ 'unclosed }}",
		"{% endfor %}",
		"   ",
	} {
		_, err := Compile(src, Special{})
		if err == nil {
			t.Errorf("Compile(%q): no error", src)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "chat template: ") || strings.Contains(msg, "\n") {
			t.Errorf("Compile(%q): error %q is not one line starting \"chat template: \"", src, msg)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"{{ raise_exception('Roles must alternate\nuser/assistant') }}", "chat template: Roles must alternate user/assistant"},
		{"{{ raise_exception() }}", "chat template: raise_exception called"},
		{"{% for i in range(10000000) %}{% endfor %}", "chat template: range: 10000000 items, more than the 1048576 a chat template may make"},
		{"{{ 'x' * -1 }}", "chat template: "},
		{"{{ messages | nosuchfilter }}", "chat template: "},
	} {
		tm, err := Compile(c.src, Special{})
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.src, err)
		}
		got, err := tm.Render(full, true)
		if err == nil {
			t.Errorf("Render(%q) = %q, want an error", c.src, got)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("Render(%q): error %q, want one line starting %q", c.src, msg, c.want)
		}
	}
	// range itself still works.
	tm, _ := Compile("{% for i in range(2, 11, 4) %}{{ i }},{% endfor %}{{ range(3)|list|length }}{{ range(5, 0, -2)|list }}", Special{})
	if got, err := tm.Render(nil, false); err != nil || got != "2,6,10,3[5, 3, 1]" {
		t.Errorf("range: %q, %v", got, err)
	}
}

func TestForModel(t *testing.T) {
	v := fakeVocab([]string{"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"})
	tm, err := ForModel("", v)
	if err != nil || tm.Family() != ChatML || tm.Source() != "" {
		t.Fatalf("no template: %s %q %v", tm.Family(), tm.Source(), err)
	}
	src := "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{{ eos_token }}"
	tm, err = ForModel(src, v)
	if err != nil || tm.Source() != src || tm.Special() != (Special{"<s>", "</s>"}) {
		t.Fatalf("template: %q %+v %v", tm.Source(), tm.Special(), err)
	}
	if got, _ := tm.Render([]Message{u1}, false); got != "<s><|im_start|>user\nHello!<|im_end|>\n</s>" {
		t.Errorf("rendered %q", got)
	}
	tm, err = ForModel("[INST] {% if %}", v)
	if err == nil || tm == nil || tm.Family() != Llama2 || tm.Source() != "" {
		t.Fatalf("broken template: %v, %v", tm, err)
	}
}
