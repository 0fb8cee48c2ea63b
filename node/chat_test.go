package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
)

// headerTemplate is a chat template none of model/chat's built-in formats
// writes; it refuses a conversation that opens with the assistant.
const headerTemplate = "{% if messages[0].role == 'assistant' %}{{ raise_exception('Conversations must not open with the assistant') }}{% endif %}" +
	"{{ bos_token }}{% for m in messages %}### {{ m.role | upper }}\n{{ m.content | trim }}\n{% endfor %}" +
	"{% if add_generation_prompt %}### ASSISTANT\n{% endif %}"

// templateGGUF writes a small random model (Synth's stories260K shape,
// with its synthetic vocabulary) whose tokenizer.chat_template is src,
// and returns its path.
func templateGGUF(t *testing.T, src string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := checkpoints.Synth(&buf, "stories260K", kernels.F32, 11); err != nil {
		t.Fatal(err)
	}
	g, err := checkpoints.ParseGGUF(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	kvs := append(g.KVs, checkpoints.KV{Key: chat.MetadataKey, Value: checkpoints.Str(src)})
	var ts []checkpoints.TensorSpec
	for _, ti := range g.Tensors {
		ts = append(ts, checkpoints.TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data})
	}
	var out bytes.Buffer
	if err := checkpoints.WriteGGUF(&out, kvs, ts); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "templated.gguf")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// promptSeen is a local model that records the prompt it was asked to
// complete.
type promptSeen struct {
	*LocalModel
	prompt string
}

func (p *promptSeen) Complete(ctx context.Context, prompt string, o openai.CompleteOptions, emit func(string) error) (openai.CompleteResult, error) {
	p.prompt = prompt
	return p.LocalModel.Complete(ctx, prompt, o, emit)
}

// serveFile starts a node serving the model file at path, recording its
// prompts, under the name "m".
func serveFile(t *testing.T, path string) (*promptSeen, string) {
	t.Helper()
	lm, err := OpenLocalModel(LocalModelConfig{Path: path, Name: "m", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lm.Close() })
	n := startNode(t, testConfig(t))
	p := &promptSeen{LocalModel: lm}
	n.AddCompleter(p)
	return p, n.APIURL() + "/v1"
}

// chatOK posts a chat completion that must succeed and returns its
// prompt_tokens.
func chatOK(t *testing.T, url, body string) int {
	t.Helper()
	code, m := post(t, url, body)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	return int(m["usage"].(map[string]any)["prompt_tokens"].(float64))
}

// chatRefused checks that a chat completion answers 400 with the
// template's message.
func chatRefused(t *testing.T, url, body, msg string) {
	t.Helper()
	code, m := post(t, url, body)
	e, _ := m["error"].(map[string]any)
	if code != 400 || e == nil || e["type"] != "invalid_request_error" || e["message"] != msg {
		t.Errorf("status %d, %v; want 400 with %q", code, m, msg)
	}
}

const (
	headerChat    = `{"model":"m","max_tokens":3,"temperature":0,"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"  Hi  "}]}`
	headerPrompt  = "<s>### SYSTEM\nBe kind.\n### USER\nHi\n### ASSISTANT\n"
	headerRefusal = `{"model":"m","messages":[{"role":"assistant","content":"Hello"},{"role":"user","content":"Hi"}]}`
	headerRaised  = "chat template: Conversations must not open with the assistant"
)

// A model file's own chat template formats the conversation: the model
// sees exactly its rendering, encoded with the template's special tokens
// (one BOS, the one the template writes); a conversation the template
// refuses answers 400 with its message.
func TestChatUsesFileTemplate(t *testing.T) {
	p, base := serveFile(t, templateGGUF(t, headerTemplate))
	if src := p.ChatTemplate().Source(); src != headerTemplate {
		t.Fatalf("template %q", src)
	}
	n := chatOK(t, base+"/chat/completions", headerChat)
	if p.prompt != headerPrompt {
		t.Errorf("the model saw %q, want %q", p.prompt, headerPrompt)
	}
	ids := chat.Encode(p.tok, headerPrompt)
	if n != len(ids) || ids[0] != p.tok.BOS() || ids[1] == p.tok.BOS() {
		t.Errorf("%d prompt tokens, want the %d of %v", n, len(ids), ids)
	}
	chatRefused(t, base+"/chat/completions", headerRefusal, headerRaised)
}

// A template that does not compile leaves the model served with the
// built-in format its vocabulary calls for (plain lines here).
func TestChatBrokenTemplate(t *testing.T) {
	p, base := serveFile(t, templateGGUF(t, "{% for m in messages %}{{ m.content }}"))
	if tm := p.ChatTemplate(); tm.Source() != "" || tm.Family() != chat.Plain {
		t.Fatalf("format %s, source %q", tm.Family(), tm.Source())
	}
	n := chatOK(t, base+"/chat/completions", headerChat)
	const want = "System: Be kind.\nUser:   Hi  \nAssistant:"
	if p.prompt != want || n != len(chat.Encode(p.tok, want)) {
		t.Errorf("the model saw %q (%d tokens), want %q", p.prompt, n, want)
	}
}

// Qwen3's real template (in the tokenizer test GGUF) formats the
// conversation: the reasoning of an earlier assistant turn is dropped, as
// only the template knows to do.
func TestChatQwen3FileTemplate(t *testing.T) {
	p, base := serveFile(t, testmodels.Path(t, "tokenizers/qwen3-tokenizer-random.gguf"))
	n := chatOK(t, base+"/chat/completions", `{"model":"m","max_tokens":2,"temperature":0,"messages":[`+
		`{"role":"system","content":"You are terse."},{"role":"user","content":"Hello!"},`+
		`{"role":"assistant","content":"<think>\nA greeting.\n</think>\n\nHi."},{"role":"user","content":"What is 2+2?"}]}`)
	want := "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
		"<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
	if p.prompt != want {
		t.Errorf("the model saw %q, want %q", p.prompt, want)
	}
	if ids := chat.Encode(p.tok, want); n != len(ids) {
		t.Errorf("%d prompt tokens, want %d", n, len(ids))
	}
}

// A model imported into the node's blocks keeps its chat template: run
// from the blocks, it formats and refuses chats as the file does.
func TestImportedModelKeepsChatTemplate(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, testConfig(t))
	if _, err := n.Import(ctx, api.ImportRequest{Path: templateGGUF(t, headerTemplate), Name: "m"}); err != nil {
		t.Fatal(err)
	}
	base := n.APIURL() + "/v1"
	got := chatOK(t, base+"/chat/completions", headerChat)
	c, err := n.Completer(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	lm, ok := c.(*LocalModel)
	if !ok {
		t.Fatalf("completer %T, want the model from its blocks", c)
	}
	if src := lm.ChatTemplate().Source(); src != headerTemplate {
		t.Fatalf("template from the blocks %q", src)
	}
	if want := len(chat.Encode(lm.tok, headerPrompt)); got != want {
		t.Errorf("%d prompt tokens, want %d", got, want)
	}
	chatRefused(t, base+"/chat/completions", headerRefusal, headerRaised)
}
