package node

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
)

// openAINode starts a node serving the built-in model, named
// builtinName, through the OpenAI API.
func openAINode(t *testing.T) (*Node, string) {
	t.Helper()
	lm, err := OpenLocalModel(LocalModelConfig{Path: testmodels.Builtin(t), Name: builtinName, Threads: 1})
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

// completionBody is the JSON of a greedy completion request for the
// built-in model, with more fields (",..." or "").
func completionBody(prompt string, maxTokens int, more string) string {
	p, _ := json.Marshal(prompt)
	return `{"model":"` + builtinName + `","prompt":` + string(p) + `,"max_tokens":` + strconv.Itoa(maxTokens) + `,"temperature":0` + more + `}`
}

func TestCompletions(t *testing.T) {
	_, base := openAINode(t)
	ref := builtinGreedy(t, testmodels.BuiltinPrompt, 20, false)
	code, m := post(t, base+"/completions", completionBody(testmodels.BuiltinPrompt, 20, ""))
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	ch := m["choices"].([]any)[0].(map[string]any)
	if ch["text"] != ref.Text || ch["finish_reason"] != "length" {
		t.Errorf("choice %v, want the text %q", ch, ref.Text)
	}
	u := m["usage"].(map[string]any)
	if u["prompt_tokens"].(float64) != float64(ref.PromptTokens) || u["completion_tokens"].(float64) != 20 || m["object"] != "text_completion" {
		t.Errorf("response %v", m)
	}

	// A stop string (here the continuation's third word) ends the text
	// before it.
	stop := " " + strings.Fields(ref.Text)[2]
	before, _, ok := strings.Cut(ref.Text, stop)
	if !ok || before == "" {
		t.Fatalf("no stop string in %q", ref.Text)
	}
	_, m = post(t, base+"/completions", `{"model":"`+builtinName+`","prompt":["`+testmodels.BuiltinPrompt+`"],"max_tokens":20,"temperature":0,"stop":"`+stop+`"}`)
	ch = m["choices"].([]any)[0].(map[string]any)
	if ch["text"] != before || ch["finish_reason"] != "stop" {
		t.Errorf("with the stop string %q: %v, want %q", stop, ch, before)
	}

	// Streaming gives the same text in pieces, then a finish and [DONE].
	resp, err := http.Post(base+"/completions", "application/json",
		strings.NewReader(completionBody(testmodels.BuiltinPrompt, 20, `,"stream":true`)))
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
	if !done || text.String() != ref.Text || finish != "length" {
		t.Errorf("stream: text %q, finish %v, [DONE] %v", text.String(), finish, done)
	}
}

func TestChatCompletions(t *testing.T) {
	_, base := openAINode(t)
	code, m := post(t, base+"/chat/completions", `{"model":"`+builtinName+`","messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Tell me a story."}],"max_tokens":12,"temperature":0,"seed":3}`)
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
		{"/completions", `{"model":"` + builtinName + `","prompt":`, 400, ""},
		{"/completions", `{"prompt":"x"}`, 400, ""},
		{"/completions", `{"model":"` + builtinName + `","prompt":"x","n":2}`, 400, ""},
		{"/completions", `{"model":"` + builtinName + `","prompt":"x","temperature":-1}`, 400, ""},
		{"/completions", `{"model":"` + builtinName + `","prompt":"x","max_tokens":100000}`, 400, "context_length_exceeded"},
		{"/completions", `{"model":"` + builtinName + `","prompt":7}`, 400, ""},
		{"/chat/completions", `{"model":"` + builtinName + `","messages":[]}`, 400, ""},
		{"/chat/completions", `{"model":"` + builtinName + `","messages":[{"role":"wizard","content":"hi"}]}`, 400, ""},
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
	res := runOfficialClient(t, base, builtinName)
	if len(res.Models) != 1 || res.Models[0] != builtinName {
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

// runOfficialClient runs check.mjs against the API at base for model, the
// built-in model under some name, and checks what it must give.
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
	out, err := exec.CommandContext(ctx, nodeBin, script, base, modelName, testmodels.BuiltinPrompt).CombinedOutput()
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
	ref := builtinGreedy(t, testmodels.BuiltinPrompt, 10, false)
	if res.Completion.Text != ref.Text || res.Completion.Finish != "length" ||
		res.Completion.Usage.Prompt_tokens != ref.PromptTokens || res.Completion.Usage.Completion_tokens != 10 {
		t.Errorf("completion: %+v, want the text %q", res.Completion, ref.Text)
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
	code, m := post(t, base+"/chat/completions", `{"model":"`+builtinName+`","stream":true,"max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}`)
	e, _ := m["error"].(map[string]any)
	if code != 400 || e == nil || e["code"] != "context_length_exceeded" {
		t.Errorf("status %d, body %v", code, m)
	}
}
