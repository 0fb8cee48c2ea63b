package node

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/train"
)

// trainedState trains the built-in model one LoRA step on a story under a
// job naming modelRef and dataRef, and returns the trainer's checkpoint.
func trainedState(t *testing.T, modelRef, dataRef string) []byte {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	job := train.DefaultJob(modelRef, dataRef)
	job.Steps, job.Warmup, job.CheckpointEvery = 5, 1, 0
	job.SeqLen, job.BatchTokens, job.LoRARank, job.EvalFraction = 32, 32, 2, 0
	seqs, err := train.Pack(train.Tokenize([]train.Record{{Text: "Once upon a time, a checkpoint was kept by a node."}}, m.Tokenizer), job.SeqLen, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewTrainer(job, m.Weights, be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.RunStep(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tr.WriteCheckpoint(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A checkpoint stored on A under a name: its manifest links the base model
// and the data set the job named by name; the same state gives the same
// CID; a damaged state is refused and nothing stored. C, which knows only
// B, fetches it by CID; GC keeps it; removing it from C deletes its
// blocks there.
func TestCheckpoints(t *testing.T) {
	a, _, c := swarm3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca := api.NewClient(a.APIURL())
	model, err := ca.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t), Name: "tales"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := ca.ImportData(ctx, "story", strings.NewReader("Once upon a time, a checkpoint was kept by a node.\n"))
	if err != nil {
		t.Fatal(err)
	}
	state := trainedState(t, "tales", "story")

	size := a.Store().Size()
	if _, err := ca.PutCheckpoint(ctx, "story", bytes.NewReader(state[:len(state)-1])); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("a truncated checkpoint: %v", err)
	}
	if a.Store().Size() != size || len(a.ListCheckpoints(ctx)) != 0 {
		t.Errorf("a refused checkpoint left %d bytes and %d entries", a.Store().Size()-size, len(a.ListCheckpoints(ctx)))
	}

	info, err := ca.PutCheckpoint(ctx, "story", bytes.NewReader(state))
	if err != nil {
		t.Fatal(err)
	}
	if info.Step != 1 || info.Steps != 5 || info.Method != train.MethodLoRA || info.Base != model.CID || info.Data != data.CID ||
		info.Bytes != int64(len(state)) || !info.Whole || info.Name != "story" {
		t.Errorf("stored: %+v; want step 1 of 5 on model %s and data %s", info, model.CID, data.CID)
	}
	if again, err := ca.PutCheckpoint(ctx, "story", bytes.NewReader(state)); err != nil || again.CID != info.CID {
		t.Errorf("the same state again: %+v, %v", again, err)
	}
	if list, err := ca.ListCheckpoints(ctx); err != nil || len(list) != 1 || list[0].CID != info.CID || !list[0].Whole {
		t.Errorf("list: %+v, %v", list, err)
	}
	if got, err := ca.InspectCheckpoint(ctx, "story"); err != nil || got.CID != info.CID || got.LocalBlocks != got.TotalBlocks {
		t.Errorf("inspect by name: %+v, %v", got, err)
	}
	if _, err := ca.InspectCheckpoint(ctx, model.CID); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "not a checkpoint manifest") {
		t.Errorf("a model's CID as a checkpoint: %v", err)
	}
	if _, err := ca.InspectCheckpoint(ctx, "no-such-job"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("an unknown name: %v", err)
	}

	if gc, err := a.GC(ctx, api.GCRequest{}); err != nil || gc.Blocks != 0 {
		t.Errorf("gc on A: %+v, %v", gc, err)
	}
	cc := api.NewClient(c.APIURL())
	got, err := cc.CheckpointState(ctx, info.CID)
	if err != nil || !bytes.Equal(got, state) {
		t.Fatalf("C's fetch by CID: %d bytes, %v", len(got), err)
	}
	if list := c.ListCheckpoints(ctx); len(list) != 1 || list[0].CID != info.CID || !list[0].Whole || list[0].Base != model.CID {
		t.Errorf("C's list after the fetch: %+v", list)
	}
	if n, err := cc.RemoveCheckpoint(ctx, info.CID); err != nil || n != info.TotalBlocks+1 {
		t.Errorf("remove on C: %d blocks, %v; want %d", n, err, info.TotalBlocks+1)
	}
	if c.Store().Size() != 0 || len(c.ListCheckpoints(ctx)) != 0 {
		t.Errorf("after removing C's only checkpoint: %d bytes, %+v", c.Store().Size(), c.ListCheckpoints(ctx))
	}
	if got, err := ca.CheckpointState(ctx, "story"); err != nil || !bytes.Equal(got, state) {
		t.Errorf("A's copy after C removed its own: %d bytes, %v", len(got), err)
	}
}
