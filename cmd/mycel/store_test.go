package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// TestDataDirInUse: `mycel node` on the data directory of a running node
// stops at once with one line naming the other node and what to do.
func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	startInProcessNode(t, dir)
	_, _, err := mycel(t, "node", "--data", dir, "--api", freeAddr(t), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	want := fmt.Sprintf("another mycel node (pid %d) is using the data directory %s; stop it or pick another with --data", os.Getpid(), dir)
	if err == nil || err.Error() != want {
		t.Fatalf("second node on one data directory: %v\nwant %s", err, want)
	}
}

// TestStoreGCCommand: blocks no model uses show in `mycel status`, `mycel
// store gc --dry-run` counts them, `mycel store gc` removes them, and the
// kept model exports the same bytes as before.
func TestStoreGCCommand(t *testing.T) {
	ctx := context.Background()
	n := startInProcessNode(t, t.TempDir())
	api := n.APIURL()
	model := filepath.Join(t.TempDir(), "synth.gguf")
	if err := checkpoints.SynthFile(model, "stories260K", kernels.F32, 1); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := mycel(t, "--api", api, "models", "import", model, "--name", "kept")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	kept := lines[len(lines)-1]
	exportBytes := func() []byte {
		t.Helper()
		path := filepath.Join(t.TempDir(), "out.gguf")
		if _, stderr, err := mycel(t, "--api", api, "models", "export", kept, "-o", path); err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want := exportBytes()
	if out, _, err := mycel(t, "--api", api, "status"); err != nil || strings.Contains(out, "unused") {
		t.Errorf("status with nothing unreferenced: %q (%v)", out, err)
	}

	// What an import that stopped half way leaves: blocks under no manifest.
	rng := rand.New(rand.NewPCG(1, 2))
	var orphans []blocks.Block
	for range 3 {
		data := make([]byte, 300_000)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		orphans = append(orphans, blocks.NewBlock(data))
	}
	if err := n.Store().PutMany(ctx, orphans); err != nil {
		t.Fatal(err)
	}
	out, _, err = mycel(t, "--api", api, "status")
	if err != nil || !strings.Contains(out, "unused    900.0 kB in blocks no kept model uses (mycel store gc removes them)") {
		t.Errorf("status with orphaned blocks: %q (%v)", out, err)
	}
	out, _, err = mycel(t, "--api", api, "store", "gc", "--dry-run")
	if err != nil || out != "would remove 3 blocks, 900.0 kB\n" {
		t.Errorf("store gc --dry-run: %q (%v)", out, err)
	}
	out, _, err = mycel(t, "--api", api, "store", "gc")
	if err != nil || out != "removed 3 blocks, 900.0 kB\n" {
		t.Errorf("store gc: %q (%v)", out, err)
	}
	out, _, err = mycel(t, "--api", api, "store", "gc")
	if err != nil || !strings.HasPrefix(out, "nothing to remove") {
		t.Errorf("store gc again: %q (%v)", out, err)
	}
	if out, _, err := mycel(t, "--api", api, "status"); err != nil || strings.Contains(out, "unused") {
		t.Errorf("status after gc: %q (%v)", out, err)
	}
	for _, o := range orphans {
		if has, _ := n.Store().Has(ctx, o.CID); has {
			t.Errorf("orphan %s survived gc", o.CID)
		}
	}
	if !bytes.Equal(exportBytes(), want) {
		t.Error("the kept model exports differently after gc")
	}
}

// startInProcessNode starts a node on loopback with the given data
// directory, in this process, until the test ends.
func startInProcessNode(t *testing.T, dir string) *node.Node {
	t.Helper()
	n, err := node.New(node.Config{
		DataDir: dir, APIAddr: "127.0.0.1:0", DHTMode: "server",
		LoopbackOnly: true, NoMDNS: true, NoNAT: true, NoQUIC: true, NoRelay: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}
