package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// The data commands through real `mycel node`s: import prints the CID
// last, ls and inspect show it by name (with --model, its tokens), a file
// that does not parse is refused with the line that is wrong and nothing
// kept, a second node pulls it by CID and knows its name, rm drops it.
func TestDataInTheCLI(t *testing.T) {
	dir := t.TempDir()
	pairs := filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(pairs, []byte(`{"prompt":"Lily wanted to","completion":" play."}`+"\n"+`{"prompt":"Tom saw","completion":" a big dog.\nIt ran."}`+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"text":"fine"}`+"\n"+`{"text": broken}`+"\n"), 0o644)

	pub := startNodeCmd(t)
	out, stderr, err := mycel(t, "--api", pub, "data", "import", pairs, "--name", "pairs")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c := lines[len(lines)-1]
	if _, err := cid.Decode(c); err != nil {
		t.Fatalf("import printed %q, want a CID last: %v", out, err)
	}
	if !strings.Contains(stderr, "jsonl-pair, 2 examples") {
		t.Errorf("import's summary: %q", stderr)
	}

	_, _, err = mycel(t, "--api", pub, "data", "import", bad)
	if err == nil || !strings.Contains(err.Error(), "bad data set: line 2") || strings.Contains(err.Error(), "\n") {
		t.Errorf("import of a bad file: %v", err)
	}
	out, _, err = mycel(t, "--api", pub, "data", "ls")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, c) || !strings.Contains(out, "pairs") || !strings.Contains(out, "jsonl-pair") {
		t.Errorf("ls: %q (%v)", out, err)
	}

	out, _, err = mycel(t, "--api", pub, "data", "inspect", "pairs")
	if err != nil || !strings.Contains(out, "jsonl-pair, 2 examples") || !strings.Contains(out, `completion  " a big dog.⏎It ran."`) {
		t.Errorf("inspect: %q (%v)", out, err)
	}
	importCmd(t, pub, testmodels.Builtin(t), "--name", "s260")
	out, _, err = mycel(t, "--api", pub, "data", "inspect", c, "--model", "s260", "--json")
	var info api.DataInfo
	if err != nil || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("inspect --json: %q (%v)", out, err)
	}
	if info.Tokens == nil || info.Tokens.Tokens == 0 || info.Tokens.Trained == 0 || len(info.Sample) != 2 || info.Sample[0].Prompt != "Lily wanted to" {
		t.Errorf("inspect --model --json: %+v", info)
	}
	if out, _, err := mycel(t, "--api", pub, "data", "inspect", "pairs", "--model", "s260"); err != nil || !strings.Contains(out, "trained") {
		t.Errorf("inspect --model: %q (%v)", out, err)
	}

	st, err := api.NewClient(pub).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other := startNodeCmd(t, "--bootstrap", st.Addrs[0])
	out, stderr, err = mycel(t, "--api", other, "data", "pull", c)
	if err != nil || strings.TrimSpace(out) != c {
		t.Fatalf("pull: %q (%v)\n%s", out, err, stderr)
	}
	if out, _, err := mycel(t, "--api", other, "data", "inspect", "pairs"); err != nil || !strings.Contains(out, c) {
		t.Errorf("inspect by name on the second node: %q (%v)", out, err)
	}
	if _, _, err := mycel(t, "--api", other, "data", "rm", "pairs"); err != nil {
		t.Errorf("rm: %v", err)
	}
	_, _, err = mycel(t, "--api", other, "data", "inspect", "pairs")
	if err == nil || !strings.Contains(err.Error(), `"pairs" is neither a CID nor the name of a data set`) {
		t.Errorf("inspect after rm: %v", err)
	}
}
