package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// ourStory is a short text of our own; the built-in model has never seen
// it (its stories come from internal/tales, where Pip is only a pet's
// name).
const ourStory = "Pip the gray mouse lived under the old red bridge. Every morning Pip counted the boats " +
	"that went by: one blue boat, two green boats and a yellow boat with a sleepy dog. " +
	"One day a paper boat came down the river. Pip jumped on it and sailed all the way to the sea."

type fixture struct {
	w   *model.Weights
	tok tokenizer.Tokenizer
	be  kernels.Backend
}

// loadBuiltin loads the built-in model (models/tales.gguf), with its
// vocabulary, and a backend of threads.
func loadBuiltin(t *testing.T, threads int) fixture {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok := m.Tokenizer
	be, err := kernels.Open("cpu", threads)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return fixture{w: m.Weights, tok: tok, be: be}
}

func storyJob(method string) *Job {
	j := DefaultJob("tales", "story")
	j.Method, j.Steps, j.Warmup, j.CheckpointEvery = method, 40, 4, 0
	j.SeqLen, j.BatchTokens, j.LR, j.EvalFraction = 32, 64, 1e-2, 0
	j.LoRARank, j.LoRAAlpha = 8, 16
	return j
}

func storySeqs(t *testing.T, f fixture, j *Job) []Sequence {
	t.Helper()
	seqs, err := Pack(Tokenize([]Record{{Text: ourStory}}, f.tok), j.SeqLen, 0)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// lossOn is the mean loss of the model the trainer runs on seqs.
func lossOn(t *testing.T, tr *Trainer, seqs []Sequence) float64 {
	t.Helper()
	saved := tr.evalSet
	tr.evalSet = seqs
	defer func() { tr.evalSet = saved }()
	l, err := tr.EvalLoss()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// greedy continues prompt with the trainer's engine for n tokens.
func greedy(t *testing.T, e *model.Engine, tok tokenizer.Tokenizer, prompt string, n int) string {
	t.Helper()
	ids := tok.Encode(prompt, tokenizer.EncodeOptions{BOS: true})
	var out []int
	_, err := e.Generate(context.Background(), ids, model.GenerateOptions{MaxTokens: n, Sampler: model.SamplerConfig{Temperature: 0}},
		func(id int) error { out = append(out, id); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return tok.Decode(out)
}

// LoRA fine-tuning of the built-in model on a text of our own halves its loss
// on that text (and more), and greedy generation from the text's first
// words then follows the text.
func TestLoRALearnsOurStory(t *testing.T) {
	f := loadBuiltin(t, 2)
	j := storyJob(MethodLoRA)
	j.Steps, j.LR = 100, 5e-3
	seqs := storySeqs(t, f, j)
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := lossOn(t, tr, seqs)
	var last StepResult
	for range j.Steps {
		if last, err = tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	after := lossOn(t, tr, seqs)
	t.Logf("loss on our story: %.3f before, %.3f after %d LoRA steps (last step %.3f, grad norm %.2f)", before, after, j.Steps, last.Loss, last.GradNorm)
	if !(after < before/2) {
		t.Errorf("loss %.3f after training, want under half of %.3f", after, before)
	}
	got := greedy(t, tr.Engine(), f.tok, "Pip the gray mouse", 20)
	t.Logf("greedy: %q", got)
	if !strings.HasPrefix(strings.TrimSpace(got), "lived under the old red bridge") {
		t.Errorf("greedy continuation %q does not follow the story", got)
	}
}

// An adapter at initialisation leaves the logits bitwise unchanged.
func TestLoRAInitIsIdentity(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	j.LoRATargets = []string{"q", "k", "v", "o", "gate", "up", "down"}
	tr, err := NewTrainer(j, f.w, f.be, storySeqs(t, f, j), nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := model.NewEngine(f.w, f.be, model.KVType(kernels.F32))
	if a, b := logitsOf(t, plain, f.tok), logitsOf(t, tr.Engine(), f.tok); !slices.Equal(a, b) {
		t.Error("fresh adapters change the logits")
	}
}

func logitsOf(t *testing.T, e *model.Engine, tok tokenizer.Tokenizer) []float32 {
	t.Helper()
	c := &e.Weights().Config
	ids := tok.Encode("Pip the gray mouse lived", tokenizer.EncodeOptions{BOS: true})
	cache, err := e.NewCache(0, c.Layers, len(ids))
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(ids)*c.Dim)
	if err := e.Embed(x, ids); err != nil {
		t.Fatal(err)
	}
	if err := e.Forward(cache, x, len(ids)); err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, len(ids)*c.Vocab)
	if err := e.LogitsRows(logits, x, len(ids)); err != nil {
		t.Fatal(err)
	}
	return logits
}

// Two runs of one job are bitwise equal, and a run whose trainer is
// rebuilt half way from the state of the first half (the resume path)
// ends bitwise where the straight run ends.
func TestTrainingIsDeterministic(t *testing.T) {
	f := loadBuiltin(t, 2)
	j := storyJob(MethodLoRA)
	j.Steps = 6
	seqs := storySeqs(t, f, j)
	run := func(steps int, tr *Trainer) *Trainer {
		t.Helper()
		var err error
		if tr == nil {
			if tr, err = NewTrainer(j, f.w, f.be, seqs, nil); err != nil {
				t.Fatal(err)
			}
		}
		for range steps {
			if _, err := tr.RunStep(); err != nil {
				t.Fatal(err)
			}
		}
		return tr
	}
	a, b := run(6, nil), run(6, nil)
	for i := range a.Params {
		if !slices.Equal(a.Params[i].W, b.Params[i].W) {
			t.Fatalf("two runs differ in %s", a.Params[i].Name)
		}
	}
	if math.IsNaN(float64(a.Params[0].W[0])) {
		t.Fatal("NaN parameters")
	}
}

// A job stopped at step 3, saved, and resumed in a new trainer from its
// checkpoint ends bitwise where a straight run of 6 steps ends.
func TestResumeIsBitwise(t *testing.T) {
	f := loadBuiltin(t, 2)
	for _, method := range []string{MethodLoRA, MethodFull} {
		t.Run(method, func(t *testing.T) {
			j := storyJob(method)
			j.Steps, j.Warmup, j.BatchTokens = 6, 2, 32 // one sequence a step: the cursor crosses epochs
			seqs := storySeqs(t, f, j)
			straight, err := NewTrainer(j, f.w, f.be, seqs, nil)
			if err != nil {
				t.Fatal(err)
			}
			first, err := NewTrainer(j, f.w, f.be, seqs, nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 6 {
				if _, err := straight.RunStep(); err != nil {
					t.Fatal(err)
				}
			}
			for range 3 {
				if _, err := first.RunStep(); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			path, err := first.SaveCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			if latest, _ := LatestCheckpoint(dir); latest != path {
				t.Errorf("latest checkpoint %q, want %q", latest, path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			resumed, err := NewTrainer(j, f.w, f.be, seqs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := resumed.Restore(data); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := resumed.RunStep(); err != nil {
					t.Fatal(err)
				}
			}
			if !resumed.Cursor.Same(straight.Cursor) || resumed.Step != 6 {
				t.Errorf("cursor %+v step %d, straight run %+v", resumed.Cursor, resumed.Step, straight.Cursor)
			}
			for i := range straight.Params {
				if !slices.Equal(straight.Params[i].W, resumed.Params[i].W) {
					t.Fatalf("resumed run differs from the straight one in %s", straight.Params[i].Name)
				}
			}
		})
	}
}

func TestBadCheckpoints(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	seqs := storySeqs(t, f, j)
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.RunStep(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tr.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flip := append([]byte(nil), good...)
	flip[len(flip)/2] ^= 1
	magic := append([]byte(nil), good...)
	copy(magic, "NOTMYCEL")
	other := *j
	other.LR = 0.5
	otherTr, err := NewTrainer(&other, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		data []byte
		tr   *Trainer
		want string
	}{
		"truncated":   {good[:len(good)-100], tr, "CRC"},
		"empty":       {nil, tr, "too short"},
		"flipped bit": {flip, tr, "CRC"},
		"magic":       {magic, tr, "magic"},
		"other job":   {good, otherTr, "another job"},
	} {
		err := c.tr.Restore(c.data)
		if !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadCheckpoint naming %q", name, err, c.want)
		}
	}
	// A checkpoint written before a job key existed (its job file without
	// the key, which takes its default) restores.
	older := withHeaderJob(t, good, func(job string) string { return strings.Replace(job, "overlap = false\n", "", 1) })
	if err := tr.Restore(older); err != nil {
		t.Errorf("a checkpoint whose job file lacks a key with its default: %v", err)
	}
}

// withHeaderJob rewrites checkpoint data with its header's job file
// changed by edit (and the CRC made anew).
func withHeaderJob(t *testing.T, data []byte, edit func(string) string) []byte {
	t.Helper()
	hdrLen := binary.LittleEndian.Uint32(data[12:16])
	var h map[string]any
	if err := json.Unmarshal(data[16:16+hdrLen], &h); err != nil {
		t.Fatal(err)
	}
	job := h["job"].(string)
	if edit(job) == job {
		t.Fatal("the edit changed nothing in the job file")
	}
	h["job"] = edit(job)
	hdr, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), data[:12]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(hdr)))
	out = append(out, hdr...)
	out = append(out, data[16+hdrLen:len(data)-4]...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crc32.MakeTable(crc32.Castagnoli)))
}

// quantized copies w with every matrix whose rows are whole Q4_0 blocks in
// Q4_0 (the rest stay as they are): a QLoRA base.
func quantized(t *testing.T, w *model.Weights) *model.Weights {
	t.Helper()
	q := func(m *kernels.Matrix) *kernels.Matrix {
		if m.Cols%kernels.QK != 0 {
			return m
		}
		f := make([]float32, m.Rows*m.Cols)
		for r := range m.Rows {
			kernels.Decode(f[r*m.Cols:(r+1)*m.Cols], m.Type, m.Row(r))
		}
		out, err := kernels.NewMatrix(kernels.Q4_0, m.Rows, m.Cols, kernels.Encode(nil, kernels.Q4_0, f))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := *w
	out.Layers = make([]*model.Layer, len(w.Layers))
	for i, l := range w.Layers {
		ql := *l
		ql.Wq, ql.Wk, ql.Wv, ql.Wo, ql.W1, ql.W2, ql.W3 = q(l.Wq), q(l.Wk), q(l.Wv), q(l.Wo), q(l.W1), q(l.W2), q(l.W3)
		out.Layers[i] = &ql
	}
	return &out
}

// QLoRA: the same fine-tuning on a Q4_0 copy of the model learns the story
// as well, and the quantized base stays untouched.
func TestQLoRALearnsOurStory(t *testing.T) {
	f := loadBuiltin(t, 2)
	qw := quantized(t, f.w)
	if qw.Layers[0].Wq.Type != kernels.Q4_0 {
		t.Fatal("the base is not quantized")
	}
	snapshot := append([]byte(nil), qw.Layers[0].Wq.Data...)
	j := storyJob(MethodLoRA)
	j.Steps, j.LR = 100, 5e-3
	seqs := storySeqs(t, f, j)
	tr, err := NewTrainer(j, qw, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := lossOn(t, tr, seqs)
	for range j.Steps {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	after := lossOn(t, tr, seqs)
	t.Logf("Q4_0 base: loss %.3f before, %.3f after", before, after)
	if !(after < before/2) {
		t.Errorf("loss %.3f after training, want under half of %.3f", after, before)
	}
	if got := greedy(t, tr.Engine(), f.tok, "Pip the gray mouse", 20); !strings.HasPrefix(strings.TrimSpace(got), "lived under the old red bridge") {
		t.Errorf("greedy continuation %q does not follow the story", got)
	}
	if !bytes.Equal(snapshot, qw.Layers[0].Wq.Data) {
		t.Error("QLoRA wrote to the quantized base")
	}
}

// Full fine-tuning learns the story too and never writes to the base.
func TestFullFineTuneLearnsOurStory(t *testing.T) {
	f := loadBuiltin(t, 2)
	j := storyJob(MethodFull)
	j.Steps, j.LR = 20, 3e-3
	seqs := storySeqs(t, f, j)
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := lossOn(t, tr, seqs)
	for range j.Steps {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	after := lossOn(t, tr, seqs)
	t.Logf("full fine-tuning: loss %.3f before, %.3f after", before, after)
	if !(after < before/2) {
		t.Errorf("loss %.3f after training, want under half of %.3f", after, before)
	}
	if tr.W == f.w || tr.W.Layers[0].Wq == f.w.Layers[0].Wq {
		t.Error("full fine-tuning trains the base's own weights")
	}
}

// Merging the adapters into float32 weights gives the logits the adapters
// give unmerged, to float32 rounding.
func TestLoRAMergeMatches(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	j.Steps = 10
	seqs := storySeqs(t, f, j)
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range j.Steps {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	merged := tr.Merged()
	a := logitsOf(t, tr.Engine(), f.tok)
	b := logitsOf(t, model.NewEngine(merged, f.be, model.KVType(kernels.F32)), f.tok)
	var worst float64
	for i := range a {
		worst = max(worst, math.Abs(float64(a[i]-b[i])))
	}
	t.Logf("largest logit difference merged/unmerged: %.2g", worst)
	if worst > 1e-3 {
		t.Errorf("merged and unmerged logits differ by %g", worst)
	}
	if slices.Equal(a, logitsOf(t, model.NewEngine(f.w, f.be, model.KVType(kernels.F32)), f.tok)) {
		t.Error("the trained adapters do not change the logits")
	}
}

// The adapter written as a GGUF and applied to a fresh engine gives the
// trainer's logits bitwise; the merged GGUF loads as a model and gives
// them to rounding.
func TestExportAdapterAndMerged(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	j.Steps = 10
	j.LoRATargets = []string{"q", "v", "down"}
	tr, err := NewTrainer(j, f.w, f.be, storySeqs(t, f, j), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range j.Steps {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	want := logitsOf(t, tr.Engine(), f.tok)

	var ab bytes.Buffer
	if err := tr.WriteAdapter(&ab, "pip"); err != nil {
		t.Fatal(err)
	}
	g, err := checkpoints.ParseGGUF(ab.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ad, err := ParseAdapter(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(ad.Pairs) != 3*f.w.Config.Layers || ad.Alpha != 16 {
		t.Fatalf("adapter: %d pairs, alpha %v", len(ad.Pairs), ad.Alpha)
	}
	e := model.NewEngine(f.w, f.be, model.KVType(kernels.F32))
	if err := ad.Apply(f.be, e); err != nil {
		t.Fatal(err)
	}
	if got := logitsOf(t, e, f.tok); !slices.Equal(got, want) {
		t.Error("the applied adapter file does not give the trainer's logits")
	}

	var mb bytes.Buffer
	tokKVs, err := checkpoints.TokenizerKVs(nil, f.tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.WriteMerged(&mb, "pip-merged", tokKVs, kernels.F32); err != nil {
		t.Fatal(err)
	}
	m, err := checkpoints.LoadBytes(mb.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if m.Tokenizer == nil || m.Tokenizer.VocabSize() != f.tok.VocabSize() {
		t.Fatal("the merged GGUF lost its tokenizer")
	}
	got := logitsOf(t, model.NewEngine(m.Weights, f.be, model.KVType(kernels.F32)), m.Tokenizer)
	var worst float64
	for i := range got {
		worst = max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if worst > 1e-3 {
		t.Errorf("merged GGUF logits differ by %g", worst)
	}

	// Bad adapters: a model, a lone lora_a, a shape that does not fit.
	mg, _ := checkpoints.ParseGGUF(mb.Bytes())
	if _, err := ParseAdapter(mg); !errors.Is(err, ErrBadAdapter) || !strings.Contains(err.Error(), "general.type") {
		t.Errorf("a model as an adapter: %v", err)
	}
	kvs := []checkpoints.KV{
		{Key: "general.architecture", Value: checkpoints.Str("llama")},
		{Key: "general.type", Value: checkpoints.Str("adapter")},
		{Key: "adapter.type", Value: checkpoints.Str("lora")},
		{Key: "adapter.lora.alpha", Value: checkpoints.F32(8)},
	}
	lone := []checkpoints.TensorSpec{{Name: "blk.0.attn_q.weight.lora_a", Type: checkpoints.GGMLF32, Dims: []uint64{64, 2}, Data: make([]byte, 4*128)}}
	var lb bytes.Buffer
	if err := checkpoints.WriteGGUF(&lb, kvs, lone); err != nil {
		t.Fatal(err)
	}
	lg, _ := checkpoints.ParseGGUF(lb.Bytes())
	if _, err := ParseAdapter(lg); !errors.Is(err, ErrBadAdapter) || !strings.Contains(err.Error(), "pairs") {
		t.Errorf("a lone lora_a: %v", err)
	}
	wrong := append(lone, checkpoints.TensorSpec{Name: "blk.0.attn_q.weight.lora_b", Type: checkpoints.GGMLF32, Dims: []uint64{2, 32}, Data: make([]byte, 4*64)})
	lb.Reset()
	if err := checkpoints.WriteGGUF(&lb, kvs, wrong); err != nil {
		t.Fatal(err)
	}
	wg, _ := checkpoints.ParseGGUF(lb.Bytes())
	wa, err := ParseAdapter(wg)
	if err != nil {
		t.Fatal(err)
	}
	if err := wa.Apply(f.be, model.NewEngine(f.w, f.be)); !errors.Is(err, ErrBadAdapter) || !strings.Contains(err.Error(), "32×64") {
		t.Errorf("an adapter of the wrong shape: %v", err)
	}
}

// failingWriter fails once n bytes have been written, as a full disk does.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("no space left on device")
	}
	w.n -= len(p)
	return len(p), nil
}

// A checkpoint that cannot be written whole is an error, and no file with
// a checkpoint's name is left behind.
func TestCheckpointWriteFails(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	tr, err := NewTrainer(j, f.w, f.be, storySeqs(t, f, j), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.WriteCheckpoint(&failingWriter{n: 1000}); err == nil || !strings.Contains(err.Error(), "no space") {
		t.Errorf("write to a full disk: %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Getuid() != 0 { // root writes anywhere
		if _, err := tr.SaveCheckpoint(dir); err == nil {
			t.Error("a checkpoint into a folder that cannot be written succeeded")
		}
	}
	if latest, _ := LatestCheckpoint(dir); latest != "" {
		t.Errorf("a failed save left %s", latest)
	}
	// A temporary file is never taken for a checkpoint.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, ".tmp-123.ckpt"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if latest, _ := LatestCheckpoint(dir2); latest != "" {
		t.Errorf("a temporary file was taken for a checkpoint: %s", latest)
	}
}

// Sequences handed back with Redo come first in the next batches, travel
// in checkpoints, and with them an epoch trains every sequence once: none
// lost, none twice.
func TestRedo(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	j.SeqLen, j.BatchTokens = 8, 3*8
	var seqs []Sequence
	for i := range 20 {
		seqs = append(seqs, Sequence{Tokens: make([]int, j.SeqLen+1), Weights: make([]float32, j.SeqLen)})
		seqs[i].Tokens[0] = i // tells them apart
	}
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	trained := map[int]int{}
	for range 3 {
		tr.NextBatch()
		ids := tr.LastBatch()
		// The last of every batch is lost and handed back.
		for _, k := range ids[:len(ids)-1] {
			trained[k]++
		}
		tr.Redo(ids[len(ids)-1:])
	}
	var b bytes.Buffer
	if err := tr.WriteCheckpoint(&b); err != nil {
		t.Fatal(err)
	}
	again, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Restore(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if len(tr.Cursor.Redo) != 1 || !again.Cursor.Same(tr.Cursor) {
		t.Fatalf("cursor %+v, restored %+v: want a sequence to redo", tr.Cursor, again.Cursor)
	}
	redo := slices.Clone(again.Cursor.Redo)
	got := again.NextBatch()
	if !slices.Equal(again.LastBatch()[:len(redo)], redo) || got[0].Tokens[0] != redo[0] {
		t.Fatalf("the batch after the redo is %v, want %v first", again.LastBatch(), redo)
	}
	for _, k := range again.LastBatch() {
		trained[k]++
	}
	for again.Cursor.Epoch == 0 {
		again.NextBatch()
		if again.Cursor.Epoch > 0 {
			break // this batch went into the next epoch
		}
		for _, k := range again.LastBatch() {
			trained[k]++
		}
	}
	// Every sequence once, but those the batch that crossed into the
	// next epoch took.
	left := 0
	for k := range seqs {
		if trained[k] > 1 {
			t.Errorf("sequence %d trained %d times in the epoch", k, trained[k])
		}
		if trained[k] == 0 {
			left++
		}
	}
	if left >= j.Sequences() {
		t.Errorf("%d sequences of the epoch never trained", left)
	}
	// A checkpoint that names a sequence beyond the training set is
	// refused, and the trainer left as it was.
	tr.Cursor.Redo = []int{25}
	b.Reset()
	if err := tr.WriteCheckpoint(&b); err != nil {
		t.Fatal(err)
	}
	before := again.Cursor
	if err := again.Restore(b.Bytes()); !errors.Is(err, ErrBadCheckpoint) || !again.Cursor.Same(before) {
		t.Errorf("restore of a redo beyond the set: %v, cursor %+v", err, again.Cursor)
	}
}

// A member's inner state (WriteInnerCheckpoint) restores parameters,
// AdamW moments, steps, cursor and residual, and the next steps from it
// give bitwise what the original trainer's give; a trainer checkpoint
// without a residual is refused as inner state.
func TestInnerCheckpoint(t *testing.T) {
	f := loadBuiltin(t, 1)
	j := storyJob(MethodLoRA)
	seqs := storySeqs(t, f, j)
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	residual := make([]float32, VectorLen(tr.Params))
	for i := range residual {
		residual[i] = float32(i%7) * 1e-4
	}
	var b bytes.Buffer
	if err := tr.WriteInnerCheckpoint(&b, residual); err != nil {
		t.Fatal(err)
	}
	again, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.RestoreInner(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, residual) || again.Step != tr.Step || again.Opt.Step != tr.Opt.Step || !again.Cursor.Same(tr.Cursor) || Hash(again.Params) != Hash(tr.Params) {
		t.Fatalf("restored step %d/%d, cursor %+v; want %d/%d, %+v (residual equal: %v)", again.Step, again.Opt.Step, again.Cursor, tr.Step, tr.Opt.Step, tr.Cursor, slices.Equal(got, residual))
	}
	for range 2 {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
		if _, err := again.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	if Hash(again.Params) != Hash(tr.Params) {
		t.Error("the steps after the restored inner state differ from the original's")
	}
	b.Reset()
	if err := tr.WriteCheckpoint(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := again.RestoreInner(b.Bytes()); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("inner state from a checkpoint without residual: %v, want ErrBadCheckpoint", err)
	}
	if err := tr.WriteInnerCheckpoint(&b, residual[1:]); err == nil {
		t.Error("a residual of the wrong length was written")
	}
}
