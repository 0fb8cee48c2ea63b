package node

import (
	"testing"

	"github.com/mycel-net/mycel/train"
	"github.com/mycel-net/mycel/train/allreduce"
	"github.com/mycel-net/mycel/train/collab"
)

// The job file's averaging keys reach the group as they are written.
func TestGroupConfigFromJob(t *testing.T) {
	j, err := train.ParseJob([]byte(`model = "tales"
data = "fox"
steps = 400
checkpoint_every = 200
averaging = "diloco"
inner_steps = 50
outer_lr = 0.5
outer_momentum = 0.8
encoding = "q4"
overlap = true
min_peers = 3
verify = 0
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := groupConfig("job", j)
	if err != nil {
		t.Fatal(err)
	}
	want := collab.Config{Job: "job", Mode: collab.DiLoCo, InnerSteps: 50, OuterLR: 0.5, OuterMomentum: 0.8,
		Encoding: allreduce.Q4, Overlap: true, MinPeers: 3, Verify: -1, CheckpointEvery: 4}
	if cfg.Job != want.Job || cfg.Mode != want.Mode || cfg.InnerSteps != want.InnerSteps || cfg.OuterLR != want.OuterLR ||
		cfg.OuterMomentum != want.OuterMomentum || cfg.Encoding != want.Encoding || cfg.Overlap != want.Overlap ||
		cfg.MinPeers != want.MinPeers || cfg.Verify != want.Verify || cfg.CheckpointEvery != want.CheckpointEvery {
		t.Errorf("group config %+v, want %+v", cfg, want)
	}
}
