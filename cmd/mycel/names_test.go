package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/node/api"
)

// importCmd runs `mycel models import` and returns the CID it prints.
func importCmd(t *testing.T, api string, args ...string) string {
	t.Helper()
	out, stderr, err := mycel(t, append([]string{"--api", api, "models", "import"}, args...)...)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// completeHTTP asks a node's OpenAI API for a greedy completion of model.
func completeHTTP(t *testing.T, api, model string) (int, string) {
	t.Helper()
	body := `{"model":"` + model + `","prompt":"Lily wanted to","max_tokens":8,"temperature":0}`
	resp, err := http.Post("http://"+api+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	if len(m.Choices) == 0 {
		return resp.StatusCode, m.Error.Message
	}
	return resp.StatusCode, m.Choices[0].Text
}

// A name given at import works wherever a CID does: run (here, from the
// node's blocks, not through the swarm), models inspect, export and rm,
// and the OpenAI API; a llama2.c model without -z is refused at import.
func TestModelNamesInTheCLI(t *testing.T) {
	p := testmodels.Builtin(t)
	api := startNodeCmd(t)

	_, _, err := mycel(t, "--api", api, "models", "import", tinyLlama2C(t), "--name", "s260")
	if err == nil || !strings.Contains(err.Error(), "-z") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("import of a llama2.c model without -z: %v", err)
	}
	if out, _, err := mycel(t, "--api", api, "models", "ls"); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("models after a refused import: %q (%v)", out, err)
	}

	c := importCmd(t, api, p, "--name", "s260")
	want, _ := localRun(t, "-n", "60")
	out, stderr, err := mycel(t, "--api", api, "run", "-m", "s260", "--temp", "0", "-n", "60")
	if err != nil {
		t.Fatalf("run -m NAME: %v\n%s", err, stderr)
	}
	if out != want || strings.Contains(stderr, "swarm") {
		t.Errorf("run -m NAME:\n got %q\nwant %q\nstderr %q", out, want, stderr)
	}
	if out, _, err := mycel(t, "--api", api, "models", "inspect", "s260"); err != nil || !strings.Contains(out, c) || !strings.Contains(out, "layer 5") {
		t.Errorf("inspect NAME: %q (%v)", out, err)
	}
	gguf := filepath.Join(t.TempDir(), "s260.gguf")
	if _, stderr, err := mycel(t, "--api", api, "models", "export", "s260", "-o", gguf); err != nil {
		t.Fatalf("export NAME: %v\n%s", err, stderr)
	}
	if out, _, err := mycel(t, "models", "inspect", gguf); err != nil || !strings.Contains(out, "6 layers") {
		t.Errorf("the exported file: %q (%v)", out, err)
	}
	if code, text := completeHTTP(t, api, "s260"); code != 200 || text == "" {
		t.Errorf("OpenAI completion by name: %d %q", code, text)
	}
	if _, _, err := mycel(t, "--api", api, "models", "rm", "s260"); err != nil {
		t.Errorf("rm NAME: %v", err)
	}
	for _, args := range [][]string{{"run", "-m", "s260", "-n", "4"}, {"models", "inspect", "s260"}} {
		_, _, err := mycel(t, append([]string{"--api", api}, args...)...)
		if err == nil || !strings.Contains(err.Error(), `"s260" is neither a CID nor the name`) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v after rm: %v", args, err)
		}
	}
}

// An export the node cannot complete prints the node's own reason, exits
// with an error and leaves no file: a model pulled in part (refused before
// the stream), and a block found damaged once the stream has begun.
func TestExportErrorsInTheCLI(t *testing.T) {
	pubData := t.TempDir()
	pub := startNodeCmd(t, "--data", pubData)
	c := importCmd(t, pub, testmodels.Builtin(t), "--name", "s260")
	st, err := api.NewClient(pub).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other := startNodeCmd(t, "--bootstrap", st.Addrs[0])
	if _, stderr, err := mycel(t, "--api", other, "models", "pull", c, "--layers", "2:4"); err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	noFiles := func(what string) {
		t.Helper()
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s left %d files behind (%s)", what, len(left), left[0].Name())
		}
	}
	_, _, err = mycel(t, "--api", other, "models", "export", "s260", "-o", out)
	if err == nil || strings.Contains(err.Error(), "no Mycel node") || !strings.Contains(err.Error(), "only part of model "+c) ||
		!strings.Contains(err.Error(), "mycel models pull") {
		t.Errorf("export of a partly pulled model: %v", err)
	}
	noFiles("the refused export")
	// The name came with the part pulled: pulling by name finishes it.
	if _, stderr, err := mycel(t, "--api", other, "models", "pull", "s260"); err != nil {
		t.Fatalf("pull by name: %v\n%s", err, stderr)
	}
	if _, stderr, err := mycel(t, "--api", other, "models", "export", "s260", "-o", out); err != nil {
		t.Fatalf("export after the pull: %v\n%s", err, stderr)
	}
	os.Remove(out)

	// Damage the last block of the head, which the export reads last.
	cl := api.NewClient(pub)
	info, err := cl.Inspect(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cl.Block(context.Background(), info.Parts[len(info.Parts)-1].CID)
	if err != nil {
		t.Fatal(err)
	}
	head, err := shards.DecodePart(raw)
	if err != nil {
		t.Fatal(err)
	}
	last := head.Tensors[len(head.Tensors)-1]
	data, err := cl.Block(context.Background(), last.Chunks[len(last.Chunks)-1].CID.String())
	if err != nil {
		t.Fatal(err)
	}
	flipByteOf(t, filepath.Join(pubData, node.BlocksDir), data)
	_, _, err = mycel(t, "--api", pub, "models", "export", c, "-o", out)
	if err == nil || !strings.Contains(err.Error(), "changed on disk") || strings.Contains(err.Error(), "\n") {
		t.Errorf("export with a damaged block: %v", err)
	}
	noFiles("the export that failed mid-way")
}

// flipByteOf flips a byte of data in the file under dir that holds it.
func flipByteOf(t *testing.T, dir string, data []byte) {
	t.Helper()
	done := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || done || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		i := bytes.Index(b, data)
		if i < 0 {
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		at := i + len(data)/2
		_, err = f.WriteAt([]byte{b[at] ^ 0xff}, int64(at))
		done = err == nil
		return err
	})
	if !done {
		t.Fatalf("no file under %s holds the block", dir)
	}
}

// Each --model takes its own tokenizer: a GGUF its vocabulary inside
// (-z is for the models without one), a llama2.c file the one after its
// colon, which -z does not override.
func TestNodeModelTokenizers(t *testing.T) {
	bin := testmodels.Path(t, "stories260K.bin")
	tok := testmodels.Path(t, "tok512.bin")
	bigTok := testmodels.Path(t, "tokenizer.bin")
	tiny := testmodels.Path(t, "llama-2-tiny-random.gguf")

	api := startNodeCmd(t, "--model", "a="+bin, "-z", tok, "--model", "b="+tiny, "-t", "1")
	for _, m := range []string{"a", "b"} {
		if code, text := completeHTTP(t, api, m); code != 200 {
			t.Errorf("model %s with -z for the llama2.c one: %d %s", m, code, text)
		}
	}
	api = startNodeCmd(t, "-z", bigTok, "--model", "a="+bin+":"+tok, "-t", "1")
	if code, text := completeHTTP(t, api, "a"); code != 200 || text == "" || !strings.HasPrefix(" go on a walk. She saw a big box", text) {
		t.Errorf("model a with its own tokenizer: %d %q", code, text)
	}

	nodeArgs := func(extra ...string) []string {
		return append([]string{"node", "--api", freeAddr(t), "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no tokenizer", []string{"--model", "a=" + bin}, []string{"has no tokenizer inside", "NAME=FILE:TOKENIZER", "-z"}},
		{"a tokenizer of another vocabulary", []string{"--model", "b=" + tiny + ":" + tok}, []string{"--model b=", "tok512.bin"}},
		{"a colon and no tokenizer", []string{"--model", "a=" + bin + ":"}, []string{"nothing after the colon"}},
	} {
		_, _, err := mycel(t, nodeArgs(tc.args...)...)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: %v; want one line with %q", tc.name, err, w)
			}
		}
	}
}

func TestParseModelSpec(t *testing.T) {
	dir := t.TempDir()
	colon := filepath.Join(dir, "v1:q8.bin")
	os.WriteFile(colon, nil, 0o600)
	for _, tc := range []struct {
		spec, name, path, tok string
	}{
		{"m.gguf", "", "m.gguf", ""},
		{"a=m.bin:tok.bin", "a", "m.bin", "tok.bin"},
		{"a=" + colon, "a", colon, ""},
		{"a=" + colon + ":" + colon, "a", colon, colon},
	} {
		mc, err := parseModelSpec(tc.spec)
		if err != nil || mc.Name != tc.name || mc.Path != tc.path || mc.Tokenizer != tc.tok {
			t.Errorf("%q: %+v, %v; want name %q, file %q, tokenizer %q", tc.spec, mc, err, tc.name, tc.path, tc.tok)
		}
	}
}
