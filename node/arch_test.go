package node

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// `models import` takes every architecture that runs; a store gc keeps
// every block of the kept models, rope_freqs' chunk (linked from the
// manifest, not a part) and the expert parts (linked from their layer's
// part) included, and each but deepseek2 exports to a GGUF of its
// architecture, the same after the gc.
func TestImportArchFixtures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := startNode(t, testConfig(t))
	cl := api.NewClient(n.APIURL())
	names := []string{"llama3", "qwen2", "qwen3", "gemma2", "phi3", "mixtral", "qwen3moe", "deepseek2"}
	// deepseek2's YaRN has no GGUF form: it imports and survives a gc,
	// but does not export.
	exports := func(name string) bool { return name != "deepseek2" }
	cids := map[string]string{}
	exported := map[string][]byte{}
	for _, name := range names {
		res, err := cl.Import(ctx, api.ImportRequest{Path: testmodels.Path(t, "arch/"+name+".F32.gguf")})
		if err != nil {
			t.Fatalf("import %s: %v", name, err)
		}
		cids[name] = res.CID
		if exports(name) {
			exported[name] = export(t, n, res.CID)
		}
	}
	res, err := cl.GC(ctx, api.GCRequest{})
	if err != nil || res.Blocks != 0 {
		t.Fatalf("gc of a store holding only kept models: %+v, %v", res, err)
	}
	for _, name := range names {
		info, err := n.Inspect(ctx, mustCID(t, cids[name]))
		if err != nil || !info.Whole {
			t.Errorf("%s after gc: whole %v, %v", name, info.Whole, err)
		}
		if !exports(name) {
			continue
		}
		b := export(t, n, cids[name])
		if !bytes.Equal(b, exported[name]) {
			t.Errorf("%s exports differently after gc", name)
		}
		m, err := checkpoints.LoadBytes(b)
		if err != nil {
			t.Fatalf("%s: exported GGUF: %v", name, err)
		}
		if got, _ := m.GGUF.String("general.name"); got != "fixture-"+name && name != "phi3" {
			t.Errorf("%s: exported general.name %q", name, got)
		}
	}
}
