package node

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// synthModel writes a seeded random-weight model of the stories260K shape.
func synthModel(t *testing.T, seed uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "synth.gguf")
	if err := checkpoints.SynthFile(path, "stories260K", kernels.F32, seed); err != nil {
		t.Fatal(err)
	}
	return path
}

// failRoot is a block store that refuses the batch holding root: an
// import through it stops just before its manifest is written, as one
// whose node crashed then would.
type failRoot struct {
	*blocks.Store
	root cid.Cid
}

func (f failRoot) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if b.CID.Equals(f.root) {
			return errors.New("interrupted")
		}
	}
	return f.Store.PutMany(ctx, bs)
}

// interruptedImport writes every block of the model at path into n's
// store but its manifest, and returns how many bytes the store grew by.
func interruptedImport(t *testing.T, n *Node, path string) int64 {
	t.Helper()
	ctx := context.Background()
	src, err := checkpoints.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	probe, err := blocks.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	im, err := shards.Import(ctx, src, probe)
	probe.Close()
	if err != nil {
		t.Fatal(err)
	}
	before := n.Store().Size()
	if _, err := shards.Import(ctx, src, failRoot{n.Store(), im.Root}); err == nil {
		t.Fatal("the import through failRoot completed")
	}
	grew := n.Store().Size() - before
	if grew <= 0 {
		t.Fatal("the interrupted import stored nothing")
	}
	return grew
}

func export(t *testing.T, n *Node, c string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := api.NewClient(n.APIURL()).Export(context.Background(), c, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestStoreGC: an interrupted import's blocks are counted in the status,
// a dry run names them and removes nothing, gc removes them and only
// them (the kept model exports byte for byte as before), and a restart
// removes those of another interrupted import by itself.
func TestStoreGC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	n := startNode(t, cfg)
	cl := api.NewClient(n.APIURL())
	kept, err := cl.Import(ctx, api.ImportRequest{Path: synthModel(t, 1), Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	want := export(t, n, kept.CID)
	keptSize := n.Store().Size()
	if st, _ := cl.Status(ctx); st.UnreferencedBytes != 0 {
		t.Fatalf("unreferenced bytes after a clean import: %d", st.UnreferencedBytes)
	}

	orphan := interruptedImport(t, n, synthModel(t, 2))
	st, err := cl.Status(ctx)
	if err != nil || st.UnreferencedBytes != orphan {
		t.Fatalf("status after an interrupted import: %d unreferenced bytes (%v), want the %d it stored", st.UnreferencedBytes, err, orphan)
	}
	dry, err := cl.GC(ctx, api.GCRequest{DryRun: true})
	if err != nil || dry.Bytes != orphan || dry.Blocks == 0 || !dry.DryRun {
		t.Fatalf("dry run: %+v, %v; want %d bytes", dry, err, orphan)
	}
	if n.Store().Size() != keptSize+orphan {
		t.Fatal("the dry run removed blocks")
	}
	res, err := cl.GC(ctx, api.GCRequest{})
	if err != nil || res.Bytes != orphan || res.Blocks != dry.Blocks {
		t.Fatalf("gc: %+v, %v; want the dry run's %d blocks", res, err, dry.Blocks)
	}
	if n.Store().Size() != keptSize {
		t.Errorf("store holds %d bytes after gc, want the kept model's %d", n.Store().Size(), keptSize)
	}
	if st, _ := cl.Status(ctx); st.UnreferencedBytes != 0 {
		t.Errorf("unreferenced bytes after gc: %d", st.UnreferencedBytes)
	}
	if !bytes.Equal(export(t, n, kept.CID), want) {
		t.Fatal("the kept model exports differently after gc")
	}
	if again, err := cl.GC(ctx, api.GCRequest{}); err != nil || again.Blocks != 0 {
		t.Errorf("second gc: %+v, %v", again, err)
	}

	// Another interruption, then a restart: the node collects at start.
	interruptedImport(t, n, synthModel(t, 3))
	n.Close()
	n2 := startNode(t, cfg)
	if n2.Store().Size() != keptSize {
		t.Errorf("store holds %d bytes after a restart, want the kept model's %d", n2.Store().Size(), keptSize)
	}
	if !bytes.Equal(export(t, n2, kept.CID), want) {
		t.Fatal("the kept model exports differently after the restart")
	}
}

// TestStoreGCRefusedWhileImporting: gc does not run beside an import or
// pull, whose blocks nothing references yet, and says so; the status does
// not count them as unreferenced.
func TestStoreGCRefusedWhileImporting(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, testConfig(t))
	end := n.beginBlockWrites()
	_, err := api.NewClient(n.APIURL()).GC(ctx, api.GCRequest{})
	if err == nil || !strings.Contains(err.Error(), "an import or pull is running") {
		t.Errorf("gc during an import: %v", err)
	}
	if st := n.Status(); st.UnreferencedBytes != -1 {
		t.Errorf("status during an import counts %d unreferenced bytes, want -1 (not counted)", st.UnreferencedBytes)
	}
	end()
	if _, err := api.NewClient(n.APIURL()).GC(ctx, api.GCRequest{}); err != nil {
		t.Errorf("gc after the import: %v", err)
	}
}

// TestStoreGCKeepsUnfinishedPull: a pull that stopped keeps its blocks
// through gc and a restart, and pulling again completes it; removing the
// model drops them.
func TestStoreGCKeepsUnfinishedPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startNode(t, testConfig(t))
	res, err := a.Import(ctx, api.ImportRequest{Path: synthModel(t, 1)})
	if err != nil {
		t.Fatal(err)
	}
	want := export(t, a, res.CID)
	cfg := testConfig(t, a.Status().Addrs[0])
	cfg.FetchStall = 5 * time.Second
	c := startNode(t, cfg)

	// The pull stops once it has the manifest and the parts.
	stopped := func() {
		t.Helper()
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		if err := c.Pull(pctx, api.PullRequest{CID: res.CID}, func(api.PullProgress) { stop() }); err == nil {
			t.Fatal("the stopped pull completed")
		}
		if has, _ := c.Store().Has(ctx, mustCID(t, res.CID)); !has {
			t.Fatal("the stopped pull has not the manifest")
		}
	}
	stopped()
	if _, err := c.RemoveModel(ctx, mustCID(t, res.CID)); err != nil {
		t.Fatalf("remove an unfinished pull: %v", err)
	}
	if c.Store().Size() != 0 || len(c.pulls.entries()) != 0 {
		t.Fatalf("after removing the unfinished pull: %d bytes, unfinished %v", c.Store().Size(), c.pulls.entries())
	}

	stopped()
	held := c.Store().Size()
	if st := c.Status(); st.UnreferencedBytes != 0 {
		t.Errorf("an unfinished pull's %d bytes counted as unreferenced", st.UnreferencedBytes)
	}
	gc, err := c.GC(ctx, api.GCRequest{})
	if err != nil || gc.Blocks != 0 || !slices.Equal(gc.Unfinished, []string{res.CID}) {
		t.Fatalf("gc beside an unfinished pull: %+v, %v", gc, err)
	}
	c.Close()
	c2 := startNode(t, cfg)
	if c2.Store().Size() != held {
		t.Fatalf("the restart's gc left %d of the unfinished pull's %d bytes", c2.Store().Size(), held)
	}
	if err := c2.Pull(ctx, api.PullRequest{CID: res.CID}, func(api.PullProgress) {}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if len(c2.pulls.entries()) != 0 {
		t.Errorf("a completed pull is still listed unfinished: %v", c2.pulls.entries())
	}
	if !bytes.Equal(export(t, c2, res.CID), want) {
		t.Error("the resumed pull exports differently from the source")
	}
}
