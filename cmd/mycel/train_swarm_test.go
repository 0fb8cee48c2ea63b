package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// A fine-tuning job through the swarm, as a researcher and a volunteer
// run it with real `mycel node`s: submit prints the job's ID last, a
// volunteer (node --train) takes and finishes it (DiLoCo rounds, each
// averaged during the next), ls and status show it
// (with a loss curve), pull writes the tuned model that run runs, and
// only the submitter may stop it.
func TestSwarmJobInTheCLI(t *testing.T) {
	dir := t.TempDir()
	fox := filepath.Join(dir, "fox.txt")
	os.WriteFile(fox, []byte(strings.Repeat("Once upon a time, a little fox named Tilly found a red kite in the tall grass. She ran up the hill with it.\n", 4)), 0o644)
	const steps = 6
	jobFile := filepath.Join(dir, "fox.toml")
	os.WriteFile(jobFile, []byte(`model = "tales"
data = "fox"
method = "lora"
lora_rank = 4
steps = 6
warmup = 1
lr = 0.01
seq_len = 16
batch_tokens = 64
eval_fraction = 0
checkpoint_every = 3
averaging = "diloco"
inner_steps = 3
overlap = true
`), 0o644)

	pub := startNodeCmd(t)
	for _, args := range [][]string{
		{"models", "import", testmodels.Builtin(t), "--name", "tales"},
		{"data", "import", fox, "--name", "fox"},
	} {
		if _, stderr, err := mycel(t, append([]string{"--api", pub}, args...)...); err != nil {
			t.Fatalf("%s: %v\n%s", args, err, stderr)
		}
	}
	out, stderr, err := mycel(t, "--api", pub, "train", "submit", jobFile)
	if err != nil {
		t.Fatalf("train submit: %v\n%s", err, stderr)
	}
	id := lastLine(out)
	if !strings.HasPrefix(id, "j") || len(id) < 20 {
		t.Fatalf("train submit printed %q, want the job's ID last", out)
	}

	stOut, _, err := mycel(t, "--api", pub, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(stOut), &st); err != nil || len(st.Addrs) == 0 {
		t.Fatalf("status: %v %q", err, stOut)
	}
	vol := startNodeCmd(t, "--train", "-t", "1", "--bootstrap", st.Addrs[0])

	var js api.TrainStatus
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, _, err := mycel(t, "--api", pub, "train", "status", id, "--json")
		if err == nil && json.Unmarshal([]byte(out), &js) == nil && js.State == "done" && js.CheckpointStep == steps {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the volunteer never finished the job: %s %v", out, err)
		}
	}
	if len(js.Members) != 1 || len(js.Loss) == 0 || js.Loss[len(js.Loss)-1][0] != steps {
		t.Errorf("status: members %+v, loss %v", js.Members, js.Loss)
	}
	out, _, err = mycel(t, "--api", pub, "train", "status", id)
	if err != nil || !strings.Contains(out, "done, step 6 of 6") || !strings.Contains(out, "latest checkpoint: "+js.Checkpoint) || !strings.Contains(out, "•") {
		t.Errorf("train status: %v\n%s", err, out)
	}
	out, _, err = mycel(t, "--api", vol, "train", "ls")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "done") {
		t.Errorf("train ls on the volunteer: %v\n%s", err, out)
	}

	tuned := filepath.Join(dir, "fox-tuned.gguf")
	if _, stderr, err := mycel(t, "--api", pub, "train", "pull", id, "-o", tuned); err != nil {
		t.Fatalf("train pull: %v\n%s", err, stderr)
	}
	out, stderr, err = mycel(t, "run", "-m", tuned, "--temp", "0", "-n", "8", "Once upon a time")
	if err != nil || len(strings.TrimSpace(out)) == 0 {
		t.Errorf("run the pulled model: %v\n%s%s", err, out, stderr)
	}

	if _, _, err := mycel(t, "--api", vol, "train", "stop", id); err == nil || !strings.Contains(err.Error(), "only its submitter") {
		t.Errorf("a volunteer stopped the job: %v", err)
	}
	if out, _, err := mycel(t, "--api", pub, "train", "stop", id); err != nil || !strings.Contains(out, "stopped") {
		t.Errorf("train stop by the submitter: %v %q", err, out)
	}
}
