package openai

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
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

// recorder is a Completer that records what it is asked to complete and
// answers "ok".
type recorder struct {
	tmpl   *chat.Template
	prompt string
	o      CompleteOptions
	calls  int
}

func (r *recorder) Name() string                 { return "m" }
func (r *recorder) ChatTemplate() *chat.Template { return r.tmpl }
func (r *recorder) Complete(_ context.Context, prompt string, o CompleteOptions, emit func(string) error) (CompleteResult, error) {
	r.prompt, r.o = prompt, o
	r.calls++
	return CompleteResult{PromptTokens: 1, CompletionTokens: 1, Finish: api.FinishStop}, emit("ok")
}

type oneModel struct{ c Completer }

func (b oneModel) Completer(_ context.Context, name string) (Completer, error) {
	if name != b.c.Name() {
		return nil, api.ErrNotFound
	}
	return b.c, nil
}
func (b oneModel) CompletionModels(context.Context) []Model { return []Model{{ID: b.c.Name()}} }

// A chat request is rendered with the model's own template (developer
// turns as system ones), and the completion is told which template, so
// that it encodes and stops by it; a conversation the template refuses
// answers 400 with the template's message and runs nothing.
func TestChatRendersWithModelTemplate(t *testing.T) {
	const src = "{% if messages[0].role != 'system' %}{{ raise_exception('Start with a system message') }}{% endif %}" +
		"{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}" +
		"{% if add_generation_prompt %}<assistant>{% endif %}"
	tmpl, err := chat.Compile(src, chat.Special{BOS: "<s>", EOS: "</s>"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{tmpl: tmpl}
	mux := http.NewServeMux()
	Register(mux, oneModel{rec})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}

	code, m := post(`{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"}],"stop":"x"}`)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	if want := "<s><system>Be brief.</s><user>Hi</s><assistant>"; rec.prompt != want {
		t.Errorf("prompt %q, want %q", rec.prompt, want)
	}
	if rec.o.Chat != tmpl || !slices.Equal(rec.o.Stop, []string{"x"}) {
		t.Errorf("options: template %p (want %p), stop %q", rec.o.Chat, tmpl, rec.o.Stop)
	}

	code, m = post(`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`)
	e, _ := m["error"].(map[string]any)
	if code != 400 || e == nil || e["type"] != "invalid_request_error" || e["message"] != "chat template: Start with a system message" {
		t.Errorf("refused conversation: status %d, %v", code, m)
	}
	if rec.calls != 1 {
		t.Errorf("%d completions ran, want 1", rec.calls)
	}

	// A plain completion has no template.
	resp, err := http.Post(srv.URL+"/v1/completions", "application/json", strings.NewReader(`{"model":"m","prompt":"<s>"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if rec.prompt != "<s>" || rec.o.Chat != nil {
		t.Errorf("completion: prompt %q, template %v", rec.prompt, rec.o.Chat)
	}
}

// chatVocab is a small SentencePiece vocabulary with ChatML's markers as
// control tokens.
func chatVocab(t *testing.T) tokenizer.Tokenizer {
	t.Helper()
	v := tokenizer.SPVocab{BOS: 1, EOS: 2, UNK: 0, AddBOS: true}
	add := func(p string, typ int32) {
		v.Tokens, v.Scores, v.Types = append(v.Tokens, p), append(v.Scores, 0), append(v.Types, typ)
	}
	add("<unk>", tokenizer.TypeUnknown)
	add("<s>", tokenizer.TypeControl)
	add("</s>", tokenizer.TypeControl)
	add("<|im_start|>", tokenizer.TypeControl)
	add("<|im_end|>", tokenizer.TypeControl)
	add("<0x0A>", tokenizer.TypeByte)
	add("\u2581", tokenizer.TypeNormal)
	for c := 'a'; c <= 'z'; c++ {
		add(string(c), tokenizer.TypeNormal)
	}
	tok, err := tokenizer.NewSentencePiece(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Generate with a chat template encodes the prompt's markers as their
// control tokens and ends at the template's end-of-turn token; without
// one, the prompt's markers are plain text.
func TestGenerateChat(t *testing.T) {
	tok := chatVocab(t)
	tmpl := chat.Builtin(chat.ChatML)
	prompt, err := tmpl.Render([]chat.Message{{Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	const imStart, imEnd = 3, 4
	idO, idK := 7+int('o'-'a'), 7+int('k'-'a')
	run := func(o CompleteOptions) ([]int, string, CompleteResult) {
		var seen []int
		var text strings.Builder
		res, err := Generate(tok, 100, prompt, o, func(s string) error { text.WriteString(s); return nil },
			func(ids []int, g model.GenerateOptions, emit func(int) error) (model.Stats, error) {
				seen = ids
				var st model.Stats
				for _, id := range []int{idO, idK, imEnd, idO} {
					if g.Stop != nil && g.Stop(id) {
						st.StoppedAtEOS = true
						return st, nil
					}
					st.Generated++
					if err := emit(id); err != nil {
						return st, err
					}
				}
				return st, nil
			})
		if err != nil {
			t.Fatal(err)
		}
		return seen, text.String(), res
	}
	ids, text, res := run(CompleteOptions{MaxTokens: 10, Chat: tmpl})
	if !slices.Equal(ids, chat.Encode(tok, prompt)) || ids[0] != 1 || ids[1] != imStart || res.PromptTokens != len(ids) {
		t.Errorf("chat prompt encoded to %v (%d prompt tokens), want chat.Encode's %v", ids, res.PromptTokens, chat.Encode(tok, prompt))
	}
	if text != "ok" || res.Finish != api.FinishStop || res.CompletionTokens != 2 {
		t.Errorf("chat: text %q, %+v; want \"ok\" stopped at <|im_end|>", text, res)
	}
	_, text, res = run(CompleteOptions{MaxTokens: 10, Chat: tmpl, IgnoreEOS: true})
	if text != "oko" || res.Finish != api.FinishLength || res.CompletionTokens != 4 {
		t.Errorf("chat with ignore_eos: text %q, %+v; want \"oko\" past <|im_end|>", text, res)
	}
	if ids, _, _ = run(CompleteOptions{MaxTokens: 10}); slices.Contains(ids, imStart) {
		t.Errorf("plain: prompt %v; want its markers as text", ids)
	}
}
