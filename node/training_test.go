package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/train"
)

// Fine-tuning on the swarm, with real nodes on loopback: jobs published
// by one node, trained by volunteers that pull the model and the data,
// followed, stopped, and pulled by others.

const foxText = "Once upon a time, a little fox named Tilly found a red kite in the tall grass. " +
	"She ran up the hill with it, and the wind took the kite high into the sky. " +
	"Tilly laughed and laughed, and her friend the owl came to watch.\n"

// foxJob is a job file on the model and data set names of the submitter.
func foxJob(steps, checkpointEvery, minPeers int) string {
	return fmt.Sprintf(`model = "tales"
data = "fox"
method = "lora"
lora_rank = 4
steps = %d
warmup = 1
lr = 0.01
seq_len = 16
batch_tokens = 128
eval_fraction = 0
checkpoint_every = %d
averaging = "sync"
min_peers = %d
`, steps, checkpointEvery, minPeers)
}

// submitter is a node that keeps the built-in model (as "tales") and the
// fox data set (as "fox").
func submitter(ctx context.Context, t *testing.T) *Node {
	t.Helper()
	a := startNode(t, testConfig(t))
	importBuiltin(ctx, t, a, "tales", "")
	if _, err := a.ImportData(ctx, "fox", strings.NewReader(strings.Repeat(foxText, 4))); err != nil {
		t.Fatal(err)
	}
	return a
}

func volunteer(t *testing.T, boot string) *Node {
	t.Helper()
	c := testConfig(t, boot)
	c.Train, c.TrainThreads, c.FetchStall = true, 1, 5*time.Second
	return startNode(t, c)
}

// waitStatus polls n's status of job until ok says so.
func waitStatus(ctx context.Context, t *testing.T, n *Node, id, what string, ok func(api.TrainStatus) bool) api.TrainStatus {
	t.Helper()
	var st api.TrainStatus
	var err error
	for {
		st, err = n.JobStatus(ctx, id)
		if err == nil && ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never; last status %+v, %v", what, st, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// A submits a sync job; B and C volunteer, pull the model and the data
// from A and train together. A goes offline once they train: they finish
// the job and carry it on, and D, who never met A, learns of the job from
// them and pulls the tuned model: the parameters one machine gets
// training the whole batch.
func TestSwarmJobOutlivesItsSubmitter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := submitter(ctx, t)
	const steps = 12
	job, err := a.SubmitJob(ctx, foxJob(steps, 4, 2))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(job.Model, "bagu") || !strings.HasPrefix(job.Data, "bagu") || job.State != "waiting" || job.Averaging != "sync" {
		t.Fatalf("submitted: %+v", job)
	}
	b := volunteer(t, a.Status().Addrs[0])
	c := volunteer(t, a.Status().Addrs[0])
	waitStatus(ctx, t, a, job.ID, "B and C train the job", func(st api.TrainStatus) bool {
		return len(st.Members) == 2 && st.Step >= 2
	})
	a.Close()

	st := waitStatus(ctx, t, b, job.ID, "the job done, its last checkpoint announced", func(st api.TrainStatus) bool {
		return st.State == "done" && st.CheckpointStep == steps
	})
	if len(st.Loss) < 4 || !(st.Loss[len(st.Loss)-1][1] < st.Loss[0][1]) || st.Loss[len(st.Loss)-1][0] != steps {
		t.Errorf("loss curve %v: want it to fall to step %d", st.Loss, steps)
	}
	if st.Bytes == 0 || !(st.Utilisation > 0 && st.Utilisation <= 1) {
		t.Errorf("B reports %d bytes averaged, utilisation %v", st.Bytes, st.Utilisation)
	}

	// D volunteers too, but takes no job that is done.
	dc := testConfig(t, b.Status().Addrs[0], c.Status().Addrs[0])
	dc.Train, dc.TrainThreads = true, 1
	d := startNode(t, dc)
	var listed bool
	for !listed {
		listed = slices.ContainsFunc(d.Jobs(ctx), func(j api.TrainJob) bool { return j.ID == job.ID && j.State == "done" })
		if ctx.Err() != nil {
			t.Fatal("D never learnt of the job from its members")
		}
	}
	dst := waitStatus(ctx, t, d, job.ID, "D leaves the done job alone", func(s api.TrainStatus) bool {
		return s.Here != "" && s.Here != "taking the job"
	})
	if dst.Checkpoint != st.Checkpoint || dst.Here != "done before this node came" {
		t.Fatalf("D's status %+v; B announces checkpoint %s", dst, st.Checkpoint)
	}
	state, err := d.CheckpointState(ctx, dst.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}

	// One machine, the whole batch.
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tj, err := train.ParseJob([]byte(dst.Spec))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := train.JobSets(tj, []byte(strings.Repeat(foxText, 4)), m.Tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ref, err := train.NewTrainer(tj, m.Weights, be, sets.Train, sets.Eval)
	if err != nil {
		t.Fatal(err)
	}
	for ref.Step < steps {
		if _, err := ref.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := train.NewTrainer(tj, m.Weights, be, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Restore(state); err != nil {
		t.Fatal(err)
	}
	if got.Step != steps {
		t.Fatalf("the pulled checkpoint is at step %d", got.Step)
	}
	want, have := train.Flatten(ref.Params, train.Values, nil), train.Flatten(got.Params, train.Values, nil)
	var diff, norm float64
	for i := range want {
		x := float64(want[i]) - float64(have[i])
		diff += x * x
		norm += float64(want[i]) * float64(want[i])
	}
	if diff > 1e-8*norm {
		t.Errorf("the swarm's parameters differ from one machine's by %.3g (relative, squared)", diff/norm)
	}
}

// A job is stopped by its submitter only; its volunteer stops training it.
func TestSwarmJobStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := submitter(ctx, t)
	job, err := a.SubmitJob(ctx, foxJob(100000, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	b := volunteer(t, a.Status().Addrs[0])
	waitStatus(ctx, t, b, job.ID, "B trains the job", func(st api.TrainStatus) bool {
		return st.Here == "training" && st.Step >= 1
	})
	if _, err := b.StopJob(ctx, job.ID); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("a volunteer stopped the job: %v", err)
	}
	stopped, err := a.StopJob(ctx, job.ID)
	if err != nil || stopped.State != "stopped" || stopped.Stopped == nil {
		t.Fatalf("stop: %+v, %v", stopped, err)
	}
	// B stops, and serves the state it reached.
	st := waitStatus(ctx, t, a, job.ID, "B stops the stopped job and serves its state", func(st api.TrainStatus) bool {
		return st.State == "stopped" && st.Checkpoint != "" && len(st.Members) == 1
	})
	if st.CheckpointStep < 1 || st.CheckpointStep >= 100000 {
		t.Errorf("stopped with a checkpoint at step %d", st.CheckpointStep)
	}
	if here := waitStatus(ctx, t, b, job.ID, "B says what it does", func(st api.TrainStatus) bool { return st.Here != "training" }); here.Here != "serving the result" {
		t.Errorf("B: %q", here.Here)
	}
	state, err := a.CheckpointState(ctx, st.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if h, _, err := train.ReadCheckpoint(state); err != nil || h.Step != st.CheckpointStep {
		t.Errorf("the pulled checkpoint: step %d, %v; announced at step %d", h.Step, err, st.CheckpointStep)
	}
	// Unknown jobs and bad job files are refused with reasons.
	if _, err := a.JobStatus(ctx, "jnosuchjob"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("status of an unknown job: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(foxJob(10, 0, 1), `"tales"`, `"nosuchmodel"`, 1),
		strings.Replace(foxJob(10, 0, 1), `averaging = "sync"`, `averaging = "sometimes"`, 1),
		strings.Replace(foxJob(10, 0, 1), "seq_len = 16", "seq_len = 100000", 1),
		foxJob(10, 0, 1) + "overlap = true\n", // overlap is DiLoCo's
	} {
		if _, err := a.SubmitJob(ctx, bad); err == nil {
			t.Errorf("submitted a bad job:\n%s", bad)
		}
	}
	if _, err := a.SubmitJob(ctx, "not = toml ["); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("a job file that does not parse: %v", err)
	}
}
