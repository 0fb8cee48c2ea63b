package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"

	nodeapi "github.com/mycel-net/mycel/node/api"
)

// checkCheckpointInNode checks what train run printed with a node
// running: the CID of its final checkpoint (file, on disk), which the node
// lists under the job's name, and which train export takes by CID and by
// name, writing the same model as from the file.
func checkCheckpointInNode(t *testing.T, api, printed, file string) {
	t.Helper()
	if _, err := cid.Decode(printed); err != nil {
		t.Fatalf("last line of train run %q: want the checkpoint's CID (%v)", printed, err)
	}
	out, stderr, err := mycel(t, "--api", api, "train", "checkpoints", "--json")
	if err != nil {
		t.Fatalf("train checkpoints: %v\n%s", err, stderr)
	}
	var list []nodeapi.CheckpointInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range list {
		if c.CID == printed {
			found = c.Step == 4 && c.Steps == 4 && c.Name == "job" && c.Whole
		}
	}
	if !found {
		t.Fatalf("train checkpoints has no whole checkpoint %s of step 4 named job: %s", printed, out)
	}
	var models [][]byte
	for _, ref := range []string{file, printed, "job"} {
		o := filepath.Join(t.TempDir(), "tuned.gguf") // the name goes into the file
		if _, stderr, err := mycel(t, "--api", api, "train", "export", ref, "-o", o); err != nil {
			t.Fatalf("train export %s: %v\n%s", ref, err, stderr)
		}
		b, err := os.ReadFile(o)
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, b)
	}
	if !bytes.Equal(models[0], models[1]) || !bytes.Equal(models[0], models[2]) {
		t.Error("train export of the checkpoint by CID or name wrote another model than from its file")
	}
}
