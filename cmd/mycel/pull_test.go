package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// `models pull --experts` fetches, of a mixture of experts (the qwen3moe
// fixture), the layer parts of its span and only the named experts'
// parts; a set naming an expert the model lacks fails naming it.
func TestPullExpertsCLI(t *testing.T) {
	ctx := context.Background()
	pub := startNodeCmd(t)
	c := importCmd(t, pub, testmodels.Path(t, "arch/qwen3moe.F32.gguf"))
	st, err := api.NewClient(pub).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := startNodeCmd(t, "--bootstrap", st.Addrs[0])
	if _, stderr, err := mycel(t, "--api", other, "models", "pull", c, "--layers", "0:1", "--experts", "0-1"); err != nil {
		t.Fatalf("pull: %v\n%s", err, stderr)
	}
	info, err := api.NewClient(other).Inspect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	experts, local := 0, 0
	for _, p := range info.Parts {
		var layer, e int
		if _, err := fmt.Sscanf(p.Name, "layer %d expert %d", &layer, &e); err != nil {
			if _, err := fmt.Sscanf(p.Name, "layer %d", &layer); err == nil && p.Local != (layer == 0) {
				t.Errorf("part %q at hand: %v", p.Name, p.Local)
			}
			continue
		}
		experts++
		if p.Local {
			local++
		}
		if p.Local != (layer == 0 && e <= 1) {
			t.Errorf("part %q at hand: %v", p.Name, p.Local)
		}
	}
	if experts == 0 || local != 2 {
		t.Fatalf("%d expert parts, %d of them at hand, want 2 (parts %v)", experts, local, info.Parts)
	}

	_, _, err = mycel(t, "--api", other, "models", "pull", c, "--experts", "0-999")
	if err == nil || !strings.Contains(err.Error(), `experts "0-999"`) {
		t.Errorf("pull of experts the model lacks: %v", err)
	}
}
