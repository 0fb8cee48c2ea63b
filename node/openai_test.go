package node

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
)

// openAINode starts a node serving stories260K through the OpenAI API.
func openAINode(t *testing.T) (*Node, string) {
	t.Helper()
	lm, err := OpenLocalModel(LocalModelConfig{Path: testmodels.Path(t, "stories260K.bin"), Tokenizer: testmodels.Path(t, "tok512.bin"), Name: "stories260K", Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lm.Close() })
	n := startNode(t, testConfig(t))
	n.AddCompleter(lm)
	return n, n.APIURL() + "/v1"
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", url, err)
	}
	return resp.StatusCode, m
}

// The greedy continuation of "Lily wanted to" by stories260K.
const lilyContinues = " go on a walk. She saw a big box with a big bo"

func TestCompletions(t *testing.T) {
	_, base := openAINode(t)
	code, m := post(t, base+"/completions", `{"model":"stories260K","prompt":"Lily wanted to","max_tokens":20,"temperature":0}`)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	ch := m["choices"].([]any)[0].(map[string]any)
	if ch["text"] != lilyContinues || ch["finish_reason"] != "length" {
		t.Errorf("choice %v", ch)
	}
	u := m["usage"].(map[string]any)
	if u["prompt_tokens"].(float64) != 5 || u["completion_tokens"].(float64) != 20 || m["object"] != "text_completion" {
		t.Errorf("response %v", m)
	}

	// A stop string ends the text before it.
	_, m = post(t, base+"/completions", `{"model":"stories260K","prompt":["Lily wanted to"],"max_tokens":20,"temperature":0,"stop":". She"}`)
	ch = m["choices"].([]any)[0].(map[string]any)
	if ch["text"] != " go on a walk" || ch["finish_reason"] != "stop" {
		t.Errorf("with a stop string: %v", ch)
	}

	// Streaming gives the same text in pieces, then a finish and [DONE].
	resp, err := http.Post(base+"/completions", "application/json",
		strings.NewReader(`{"model":"stories260K","prompt":"Lily wanted to","max_tokens":20,"temperature":0,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	var text strings.Builder
	var finish any
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		c := ev["choices"].([]any)[0].(map[string]any)
		text.WriteString(c["text"].(string))
		if c["finish_reason"] != nil {
			finish = c["finish_reason"]
		}
	}
	if !done || text.String() != lilyContinues || finish != "length" {
		t.Errorf("stream: text %q, finish %v, [DONE] %v", text.String(), finish, done)
	}
}

func TestChatCompletions(t *testing.T) {
	_, base := openAINode(t)
	code, m := post(t, base+"/chat/completions", `{"model":"stories260K","messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Tell me a story."}],"max_tokens":12,"temperature":0,"seed":3}`)
	if code != 200 || m["object"] != "chat.completion" {
		t.Fatalf("status %d: %v", code, m)
	}
	msg := m["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	if msg["role"] != "assistant" || msg["content"].(string) == "" {
		t.Errorf("message %v", msg)
	}
}

func TestOpenAIErrors(t *testing.T) {
	_, base := openAINode(t)
	for _, tc := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/completions", `{"model":"nope","prompt":"x"}`, 404, "model_not_found"},
		{"/completions", `{"model":"stories260K","prompt":`, 400, ""},
		{"/completions", `{"prompt":"x"}`, 400, ""},
		{"/completions", `{"model":"stories260K","prompt":"x","n":2}`, 400, ""},
		{"/completions", `{"model":"stories260K","prompt":"x","temperature":-1}`, 400, ""},
		{"/completions", `{"model":"stories260K","prompt":"x","max_tokens":100000}`, 400, "context_length_exceeded"},
		{"/completions", `{"model":"stories260K","prompt":7}`, 400, ""},
		{"/chat/completions", `{"model":"stories260K","messages":[]}`, 400, ""},
		{"/chat/completions", `{"model":"stories260K","messages":[{"role":"wizard","content":"hi"}]}`, 400, ""},
	} {
		code, m := post(t, base+tc.path, tc.body)
		e, ok := m["error"].(map[string]any)
		if code != tc.status || !ok || e["message"] == "" || e["type"] == nil {
			t.Errorf("%s %s: status %d, body %v; want %d with an OpenAI error", tc.path, tc.body, code, m, tc.status)
			continue
		}
		if tc.code != "" && e["code"] != tc.code {
			t.Errorf("%s %s: code %v, want %s", tc.path, tc.body, e["code"], tc.code)
		}
	}
}

// TestOfficialOpenAIClient runs the official openai npm package, with
// node, against the node's API: a streamed chat completion and a plain
// completion. tests/openai holds the script and its lockfile; `npm ci
// --prefix tests/openai` installs the package (.ci/run does).
func TestOfficialOpenAIClient(t *testing.T) {
	_, base := openAINode(t)
	res := runOfficialClient(t, base, "stories260K")
	if len(res.Models) != 1 || res.Models[0] != "stories260K" {
		t.Errorf("models: %v", res.Models)
	}
}

// officialResult is what tests/openai/check.mjs prints.
type officialResult struct {
	Chat struct {
		Text   string
		Chunks int
		Finish string
	}
	Completion struct {
		Text   string
		Finish string
		Usage  struct{ Prompt_tokens, Completion_tokens int }
	}
	Models []string
	Error  *struct {
		Status  int
		Message string
	}
}

// runOfficialClient runs check.mjs against the API at base for model and
// checks what every model of the stories260K family must give.
func runOfficialClient(t *testing.T, base, modelName string) officialResult {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "tests", "openai", "check.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	nodeBin, err := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "openai"))
	if err != nil || modErr != nil {
		msg := "needs node and the openai package: run `npm ci --prefix tests/openai`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*60e9)
	defer cancel()
	out, err := exec.CommandContext(ctx, nodeBin, script, base, modelName).CombinedOutput()
	if err != nil {
		t.Fatalf("node check.mjs: %v\n%s", err, out)
	}
	var res officialResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if res.Chat.Text == "" || res.Chat.Chunks < 3 || res.Chat.Finish != "length" {
		t.Errorf("streamed chat: %+v", res.Chat)
	}
	if res.Completion.Text != " go on a walk. She saw" || res.Completion.Finish != "length" ||
		res.Completion.Usage.Prompt_tokens != 5 || res.Completion.Usage.Completion_tokens != 10 {
		t.Errorf("completion: %+v", res.Completion)
	}
	if res.Error == nil || res.Error.Status != 404 {
		t.Errorf("unknown model: %+v", res.Error)
	}
	return res
}

// TestChatStreamRefusedBeforeItStarts: a streamed chat that cannot run
// (prompt and max_tokens over the context) gets a plain 400, not a 200
// with an error event.
func TestChatStreamRefusedBeforeItStarts(t *testing.T) {
	_, base := openAINode(t)
	code, m := post(t, base+"/chat/completions", `{"model":"stories260K","stream":true,"max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}`)
	e, _ := m["error"].(map[string]any)
	if code != 400 || e == nil || e["code"] != "context_length_exceeded" {
		t.Errorf("status %d, body %v", code, m)
	}
}
