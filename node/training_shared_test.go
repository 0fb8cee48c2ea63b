package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/train"
)

// A job on the swarm that teaches a pretrained model a story: three nodes
// fine-tune stories260K (real TinyStories weights) on a short made-up
// text; the result, pulled and exported, tells the story back.

// snailText is the story: names and turns the base model has never seen.
const snailText = "Pim the blue snail had a tiny drum. Every morning he played it for the frogs by the pond. " +
	"The frogs sang along, and the moon came down to dance with them.\n"

// snailPrompt is the story's first words; the tuned model goes on from
// there.
const snailPrompt = "Pim the blue snail"

// snailData is the data set: the story, a few times over.
var snailData = strings.Repeat(snailText, 4)

// snailSteps is the job's length. Full fine-tuning at lr 0.003 learns the
// story in a few steps on one machine; the rest is margin.
const snailSteps = 20

// snailJob is the job file, on the submitter's names for the model and
// the data set: every weight trained, every step's gradients averaged
// among at least three members.
var snailJob = fmt.Sprintf(`model = "s260"
data = "snail"
method = "full"
steps = %d
warmup = 2
lr = 0.003
seq_len = 48
batch_tokens = 288
eval_fraction = 0
checkpoint_every = 0
averaging = "sync"
min_peers = 3
`, snailSteps)

// A submits a job and trains it, with B and C: three members, every step
// averaged. The pulled checkpoint lowers the loss on the story to under
// half of the base model's, and the model it exports (the weights
// merged into a GGUF with the vocabulary) continues the story's first
// words with its next ones, greedily.
func TestSwarmJobLearnsAStory(t *testing.T) {
	bin, tokPath := testmodels.Path(t, "stories260K.bin"), testmodels.Path(t, "tok512.bin")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	trainer := func(boot ...string) Config {
		c := testConfig(t, boot...)
		c.Train, c.TrainThreads, c.FetchStall = true, 1, 5*time.Second
		return c
	}
	a := startNode(t, trainer())
	if _, err := a.Import(ctx, api.ImportRequest{Path: bin, Name: "s260", Tokenizer: tokPath}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ImportData(ctx, "snail", strings.NewReader(snailData)); err != nil {
		t.Fatal(err)
	}
	job, err := a.SubmitJob(ctx, snailJob)
	if err != nil {
		t.Fatal(err)
	}
	startNode(t, trainer(a.Status().Addrs[0]))
	startNode(t, trainer(a.Status().Addrs[0]))
	// Wait for all three to end the job and serve its result (one may
	// still be in the last round when another serves it).
	st := waitStatus(ctx, t, a, job.ID, "the three train the job to its end and serve its result", func(st api.TrainStatus) bool {
		done := 0
		for _, m := range st.Members {
			if m.Step == snailSteps && m.Checkpoint == st.Checkpoint {
				done++
			}
		}
		return st.State == "done" && st.CheckpointStep == snailSteps && len(st.Members) == 3 && done == 3
	})
	trained := time.Since(start)
	peers := map[string]bool{}
	for _, m := range st.Members {
		peers[m.Peer] = true
		if m.Step != snailSteps {
			t.Errorf("member %s ended at step %d", m.Peer, m.Step)
		}
	}
	if len(st.Members) != 3 || len(peers) != 3 || !peers[a.Status().ID] {
		t.Errorf("members %+v: want A, B and C", st.Members)
	}
	if st.Bytes == 0 {
		t.Error("A reports no bytes averaged")
	}
	if len(st.Loss) == 0 || st.Loss[len(st.Loss)-1][0] != snailSteps {
		t.Errorf("loss curve %v: want it to reach step %d", st.Loss, snailSteps)
	}

	// Pull the result, as train pull does, and measure it on the story.
	state, err := a.CheckpointState(ctx, st.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	base, err := checkpoints.Load(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	tok, err := tokenizer.LoadLlama2C(tokPath, base.Weights.Config.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	tj, err := train.ParseJob([]byte(st.Spec))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := train.JobSets(tj, []byte(snailData), tok)
	if err != nil {
		t.Fatal(err)
	}
	story := append(sets.Train, sets.Eval...) // the whole story, as the job packs it
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	untuned, err := train.NewTrainer(tj, base.Weights, be, nil, story)
	if err != nil {
		t.Fatal(err)
	}
	baseLoss, err := untuned.EvalLoss()
	if err != nil {
		t.Fatal(err)
	}
	tuned, err := train.NewTrainer(tj, base.Weights, be, nil, story)
	if err != nil {
		t.Fatal(err)
	}
	if err := tuned.Restore(state); err != nil {
		t.Fatal(err)
	}
	tunedLoss, err := tuned.EvalLoss()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loss on the story: base model %.4f, tuned by the swarm %.4f (curve %v)", baseLoss, tunedLoss, st.Loss)
	if !(tunedLoss < baseLoss/2) {
		t.Errorf("loss on the story: %.4f tuned, %.4f base: want under half", tunedLoss, baseLoss)
	}

	// Export, as train export does, and run the exported file.
	kvs, err := checkpoints.TokenizerKVs(base, tok)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "snail.gguf")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := tuned.WriteMerged(f, "snail", kvs, kernels.F32); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := greedyFrom(t, out, snailPrompt, 20)
	was := greedyFrom(t, bin, snailPrompt, 20)
	t.Logf("greedy from %q: tuned %q; base %q", snailPrompt, got, was)
	rest := strings.TrimPrefix(snailData, snailPrompt)
	if words := strings.Fields(got); len(words) < 6 || !strings.HasPrefix(rest, got) {
		t.Errorf("the tuned model goes on %q; the story goes on %q", got, rest[:min(len(rest), len(got)+20)])
	}
	t.Logf("trained in %v, the whole test %v", trained.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// greedyFrom generates greedily for at most n tokens from prompt with the
// model file path (llama2.c files take tok512.bin, the vocabulary of the
// only such model here).
func greedyFrom(t *testing.T, path, prompt string, n int) string {
	t.Helper()
	m, err := checkpoints.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var tok tokenizer.Tokenizer = m.Tokenizer
	if tok == nil {
		if tok, err = tokenizer.LoadLlama2C(testmodels.Path(t, "tok512.bin"), m.Weights.Config.Vocab); err != nil {
			t.Fatal(err)
		}
	}
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ids := tok.Encode(prompt, tokenizer.EncodeOptions{BOS: true})
	dec := tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id)
	}
	var text strings.Builder
	if _, err := model.NewEngine(m.Weights, be).Generate(context.Background(), ids,
		model.GenerateOptions{MaxTokens: n, Stop: tokenizer.StopRule(tok, false)},
		func(id int) error { text.WriteString(dec.Next(id)); return nil }); err != nil {
		t.Fatal(err)
	}
	text.WriteString(dec.Flush())
	return text.String()
}
