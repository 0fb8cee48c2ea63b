// Command tales builds Mycel's built-in model, models/tales.gguf: a small
// Llama-family model trained from scratch, with Mycel's own trainer, on
// stories from the generator in internal/tales, with a SentencePiece-style
// vocabulary learned from the same stories and stored in the GGUF.
//
//	go run ./tools/tales -o models/tales.gguf    # or: make tales
//
// Every step is drawn from -seed: the stories, the vocabulary, the initial
// weights, the order of the training sequences. On one machine with one
// thread count the same seed gives the same file, byte for byte. The
// training state is checkpointed into -ckpt, so an interrupted build
// resumes where it stopped; -log gets one line per step, and the end of
// the build prints the loss curve (docs/ourmodel.md).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/tales"
	"github.com/mycel-net/mycel/kernels"
	_ "github.com/mycel-net/mycel/kernels/cpu"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/train"
)

// Recipe is everything a build depends on.
type Recipe struct {
	Seed        uint64
	Stories     int // stories generated for training
	VocabFrom   int // of which the vocabulary is learned from the first
	Vocab       int
	Config      model.Config // Vocab is set from the vocabulary
	Steps       int
	BatchTokens int
	SeqLen      int
	LR          float64
	Warmup      int
	WeightDecay float64
	EvalEvery   int
	Threads     int
	DType       kernels.DType
}

// Default is the recipe of models/tales.gguf.
var Default = Recipe{
	Seed: 1, Stories: 36000, VocabFrom: 4000, Vocab: 1536,
	Config: model.Config{Arch: "llama", Dim: 192, Hidden: 512, Layers: 6, Heads: 6, KVHeads: 6, Context: 512,
		RopeTheta: 10000, RopeStyle: kernels.RopeAdjacent, NormEps: 1e-5, SharedClassifier: true},
	Steps: 1400, BatchTokens: 8 * 512, SeqLen: 512, LR: 2e-3, Warmup: 80, WeightDecay: 0.1,
	EvalEvery: 100, Threads: 2, DType: kernels.F16,
}

// Prompt is the prompt the build samples from.
const Prompt = "Once upon a time"

func main() {
	r := Default
	out := flag.String("o", "models/tales.gguf", "the GGUF file to write")
	ckpt := flag.String("ckpt", "build/tales-ckpt", "folder of training checkpoints, to resume an interrupted build (empty: none)")
	logPath := flag.String("log", "build/tales-train.log", "file that gets one line per training step")
	flag.Uint64Var(&r.Seed, "seed", r.Seed, "seed of the stories, the vocabulary, the weights and the data order")
	flag.IntVar(&r.Steps, "steps", r.Steps, "optimizer steps")
	flag.IntVar(&r.Threads, "t", r.Threads, "threads (the result is reproducible for one thread count)")
	dt := flag.String("dtype", r.DType.String(), "weight type of the matrices: f32, f16 or q8_0")
	flag.Parse()
	var err error
	if r.DType, err = kernels.ParseDType(*dt); err != nil {
		fatal(err)
	}
	if err := Build(context.Background(), r, *out, *ckpt, *logPath, os.Stdout); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "tales:", err)
	os.Exit(1)
}

// Data is the training data of a recipe: its vocabulary, tokenizer and
// packed sequences.
type Data struct {
	Vocab   tokenizer.SPVocab
	Tok     *tokenizer.SentencePiece
	Stories []string
	Seqs    []train.Sequence
	Tokens  int
}

// MakeData generates the stories, learns the vocabulary and packs the
// tokenized stories (BOS, the story, EOS) into sequences.
func MakeData(r Recipe) (*Data, error) {
	d := &Data{Stories: tales.Corpus(r.Seed, r.Stories)}
	var err error
	if d.Vocab, err = train.LearnVocab(d.Stories[:min(r.VocabFrom, len(d.Stories))], r.Vocab, 2); err != nil {
		return nil, err
	}
	if d.Tok, err = tokenizer.NewSentencePiece(d.Vocab); err != nil {
		return nil, err
	}
	examples := make([]train.Example, len(d.Stories))
	for i, s := range d.Stories {
		ids := append(d.Tok.Encode(s, tokenizer.EncodeOptions{BOS: true}), d.Tok.EOS())
		loss := make([]bool, len(ids))
		for j := 1; j < len(ids); j++ {
			loss[j] = true
		}
		examples[i] = train.Example{Tokens: ids, Loss: loss}
		d.Tokens += len(ids)
	}
	if d.Seqs, err = train.Pack(examples, r.SeqLen, train.VocabUNK); err != nil {
		return nil, err
	}
	return d, nil
}

// Job is the training job of a recipe: full training of every weight.
func (r Recipe) Job() *train.Job {
	j := train.DefaultJob("tales", "tales")
	j.Method = train.MethodFull
	j.Steps, j.LR, j.Warmup, j.WeightDecay = r.Steps, r.LR, r.Warmup, r.WeightDecay
	j.BatchTokens, j.SeqLen, j.Seed = r.BatchTokens, r.SeqLen, r.Seed
	j.EvalFraction = 0.01
	j.CheckpointEvery = min(100, r.Steps)
	return j
}

// Build runs a recipe: data, initial weights, training (resumed from the
// latest checkpoint in ckptDir, if any), and the GGUF at out. Progress
// goes to w, one line per step to logPath.
func Build(ctx context.Context, r Recipe, out, ckptDir, logPath string, w io.Writer) error {
	start := time.Now()
	d, err := MakeData(r)
	if err != nil {
		return err
	}
	cfg := r.Config
	cfg.Vocab = len(d.Vocab.Tokens)
	job := r.Job()
	trainSet, evalSet := train.Split(d.Seqs, r.Seed, job.EvalFraction)
	fmt.Fprintf(w, "data: %d stories, %d tokens in %d sequences of %d (%d for evaluation); vocabulary of %d pieces\n",
		len(d.Stories), d.Tokens, len(d.Seqs), r.SeqLen, len(evalSet), cfg.Vocab)
	init, err := train.InitWeights(cfg, r.Seed)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "model: dim %d, hidden %d, %d layers, %d heads, context %d: %d parameters\n",
		cfg.Dim, cfg.Hidden, cfg.Layers, cfg.Heads, cfg.Context, cfg.Params())
	be, err := kernels.Open("cpu", r.Threads)
	if err != nil {
		return err
	}
	defer be.Close()
	tr, err := train.NewTrainer(job, init, be, trainSet, evalSet)
	if err != nil {
		return err
	}
	if ckptDir != "" {
		if err := claimCheckpoints(ckptDir, r, d); err != nil {
			return err
		}
		if p, err := train.LatestCheckpoint(ckptDir); err != nil {
			return err
		} else if p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := tr.Restore(b); err != nil {
				return fmt.Errorf("resume from %s: %w", p, err)
			}
			fmt.Fprintf(w, "resumed from %s at step %d\n", p, tr.Step)
		}
	}
	var logf *os.File
	if logPath != "" {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return err
		}
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if tr.Step > 0 {
			flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		if logf, err = os.OpenFile(logPath, flags, 0o644); err != nil {
			return err
		}
		defer logf.Close()
	}
	logLine := func(format string, args ...any) {
		if logf != nil {
			fmt.Fprintf(logf, format+"\n", args...)
		}
	}
	trainStart := time.Now()
	for tr.Step < job.Steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := tr.RunStep()
		if err != nil {
			return err
		}
		el := time.Since(trainStart).Seconds()
		logLine("step %d loss %.4f lr %.6f gnorm %.3f tokens %d elapsed %.1f", res.Step, res.Loss, res.LR, res.GradNorm, res.Tokens, el)
		if res.Step%10 == 0 || res.Step == 1 {
			fmt.Fprintf(w, "step %4d  loss %.4f  lr %.5f  grad norm %.2f  %.0f s\n", res.Step, res.Loss, res.LR, res.GradNorm, el)
		}
		if r.EvalEvery > 0 && (res.Step%r.EvalEvery == 0 || res.Step == job.Steps) {
			l, err := tr.EvalLoss()
			if err != nil {
				return err
			}
			logLine("eval %d loss %.4f", res.Step, l)
			sample, _ := greedy(ctx, tr.Engine(), d.Tok, Prompt, 60)
			fmt.Fprintf(w, "eval  %4d  loss %.4f  %q\n", res.Step, l, sample)
		}
		if ckptDir != "" && job.CheckpointEvery > 0 && res.Step%job.CheckpointEvery == 0 {
			if _, err := tr.SaveCheckpoint(ckptDir); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(w, "trained %d steps in %s (this run), %s in all\n", job.Steps, time.Since(trainStart).Round(time.Second), time.Since(start).Round(time.Second))
	name := fmt.Sprintf("Mycel tales %.1fM (seed %d)", float64(cfg.Params())/1e6, r.Seed)
	if err := WriteModelFile(out, tr.W, d.Vocab, r.DType, name); err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: %d bytes\n", out, st.Size())
	m, err := checkpoints.Load(out)
	if err != nil {
		return err
	}
	defer m.Close()
	text, err := greedy(ctx, model.NewEngine(m.Weights, be), m.Tokenizer, Prompt, 256)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "greedy from %q:\n%s%s\n", Prompt, Prompt, text)
	if logPath != "" {
		if err := logf.Sync(); err != nil {
			return err
		}
		curve, err := LossCurve(logPath, 50)
		if err != nil {
			return err
		}
		fmt.Fprint(w, curve)
	}
	return nil
}

// claimCheckpoints makes sure the checkpoints in dir belong to this build:
// a checkpoint only knows its job, not the stories and the vocabulary
// behind the sequences, so dir keeps a fingerprint of the recipe and the
// data, written by the first build there and checked by the next.
func claimCheckpoints(dir string, r Recipe, d *Data) error {
	h := sha256.New()
	fmt.Fprintf(h, "%+v\n", r)
	for _, p := range d.Vocab.Tokens {
		fmt.Fprintf(h, "%q\n", p)
	}
	for _, s := range d.Seqs {
		fmt.Fprintln(h, s.Tokens)
	}
	want := fmt.Sprintf("%x\n", h.Sum(nil))
	path := filepath.Join(dir, "build.sha256")
	got, err := os.ReadFile(path)
	switch {
	case err == nil && string(got) == want:
		return nil
	case err == nil:
		return fmt.Errorf("the checkpoints in %s belong to another recipe or other data: remove the folder to start over", dir)
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if last, err := train.LatestCheckpoint(dir); err != nil {
		return err
	} else if last != "" {
		return fmt.Errorf("%s holds checkpoints without a fingerprint of their build: remove the folder to start over", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(want), 0o644)
}

// greedy continues prompt greedily for at most n tokens, stopping at the
// end of the story.
func greedy(ctx context.Context, e *model.Engine, tok tokenizer.Tokenizer, prompt string, n int) (string, error) {
	ids := tok.Encode(prompt, tokenizer.EncodeOptions{BOS: true})
	var out []int
	_, err := e.Generate(ctx, ids, model.GenerateOptions{MaxTokens: min(n, e.Weights().Config.Context-len(ids)),
		Stop: tokenizer.StopRule(tok, false)}, func(id int) error { out = append(out, id); return nil })
	dec := tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id)
	}
	var b strings.Builder
	for _, id := range out {
		b.WriteString(dec.Next(id))
	}
	b.WriteString(dec.Flush())
	return b.String(), err
}

// WriteModelFile writes w (float32) as a llama GGUF with its matrices in
// dt, norms in f32, the head shared with the embedding, and the
// vocabulary v. The file appears under its name only once complete.
func WriteModelFile(path string, w *model.Weights, v tokenizer.SPVocab, dt kernels.DType, name string) error {
	c := &w.Config
	if !c.SharedClassifier || w.Output != w.Embedding {
		return errors.New("write model: the head must be the embedding")
	}
	mt, err := checkpoints.GGMLTypeOf(dt)
	if err != nil {
		return err
	}
	fileType := map[kernels.DType]uint32{kernels.F32: 0, kernels.F16: 1, kernels.Q8_0: 7}
	ft, ok := fileType[dt]
	if !ok {
		return fmt.Errorf("write model: weight type %s: want f32, f16 or q8_0", dt)
	}
	kvs := []checkpoints.KV{
		{Key: "general.architecture", Value: checkpoints.Str("llama")},
		{Key: "general.name", Value: checkpoints.Str(name)},
		{Key: "general.description", Value: checkpoints.Str("Simple stories, trained from scratch by Mycel (go run ./tools/tales; docs/ourmodel.md)")},
		{Key: "general.file_type", Value: checkpoints.U32(ft)},
		{Key: "llama.vocab_size", Value: checkpoints.U32(uint32(c.Vocab))},
		{Key: "llama.context_length", Value: checkpoints.U32(uint32(c.Context))},
		{Key: "llama.embedding_length", Value: checkpoints.U32(uint32(c.Dim))},
		{Key: "llama.block_count", Value: checkpoints.U32(uint32(c.Layers))},
		{Key: "llama.feed_forward_length", Value: checkpoints.U32(uint32(c.Hidden))},
		{Key: "llama.attention.head_count", Value: checkpoints.U32(uint32(c.Heads))},
		{Key: "llama.attention.head_count_kv", Value: checkpoints.U32(uint32(c.KVHeads))},
		{Key: "llama.rope.dimension_count", Value: checkpoints.U32(uint32(c.HeadDim()))},
		{Key: "llama.rope.freq_base", Value: checkpoints.F32(c.RopeTheta)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: checkpoints.F32(c.NormEps)},
		{Key: "tokenizer.ggml.model", Value: checkpoints.Str("llama")},
		{Key: "tokenizer.ggml.tokens", Value: checkpoints.Strs(v.Tokens)},
		{Key: "tokenizer.ggml.scores", Value: checkpoints.F32s(v.Scores)},
		{Key: "tokenizer.ggml.token_type", Value: checkpoints.I32s(v.Types)},
		{Key: "tokenizer.ggml.bos_token_id", Value: checkpoints.U32(uint32(v.BOS))},
		{Key: "tokenizer.ggml.eos_token_id", Value: checkpoints.U32(uint32(v.EOS))},
		{Key: "tokenizer.ggml.unknown_token_id", Value: checkpoints.U32(uint32(v.UNK))},
		{Key: "tokenizer.ggml.add_bos_token", Value: checkpoints.Bool(v.AddBOS)},
		{Key: "tokenizer.ggml.add_eos_token", Value: checkpoints.Bool(false)},
	}
	var tensors []checkpoints.TensorSpec
	matrix := func(name string, m *kernels.Matrix) {
		f := kernels.BytesF32(m.Data)
		tensors = append(tensors, checkpoints.TensorSpec{Name: name, Type: mt,
			Dims: []uint64{uint64(m.Cols), uint64(m.Rows)}, Data: kernels.Encode(nil, dt, f)})
	}
	norm := func(name string, v []float32) {
		tensors = append(tensors, checkpoints.TensorSpec{Name: name, Type: checkpoints.GGMLF32,
			Dims: []uint64{uint64(len(v))}, Data: kernels.Encode(nil, kernels.F32, v)})
	}
	matrix("token_embd.weight", w.Embedding)
	for i, l := range w.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		norm(p+"attn_norm.weight", l.AttnNorm)
		matrix(p+"attn_q.weight", l.Wq)
		matrix(p+"attn_k.weight", l.Wk)
		matrix(p+"attn_v.weight", l.Wv)
		matrix(p+"attn_output.weight", l.Wo)
		norm(p+"ffn_norm.weight", l.FFNNorm)
		matrix(p+"ffn_gate.weight", l.W1)
		matrix(p+"ffn_down.weight", l.W2)
		matrix(p+"ffn_up.weight", l.W3)
	}
	norm("output_norm.weight", w.FinalNorm)

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tales-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	if err := checkpoints.WriteGGUF(bw, kvs, tensors); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// LossCurve reads a training log (the last line for each step wins, so a
// resumed build's log reads whole) and returns a table of the training
// loss, averaged over every window of steps, with the evaluation losses,
// and an ASCII plot of the same.
func LossCurve(logPath string, every int) (string, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	loss, eval := map[int]float64{}, map[int]float64{}
	elapsed := map[int]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var step int
		var l, lr, gn, el float64
		var tokens int
		if n, _ := fmt.Sscanf(sc.Text(), "step %d loss %f lr %f gnorm %f tokens %d elapsed %f", &step, &l, &lr, &gn, &tokens, &el); n == 6 {
			loss[step], elapsed[step] = l, el
		} else if n, _ := fmt.Sscanf(sc.Text(), "eval %d loss %f", &step, &l); n == 2 {
			eval[step] = l
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	last := 0
	for s := range loss {
		last = max(last, s)
	}
	if last == 0 {
		return "", fmt.Errorf("%s: no training steps", logPath)
	}
	type row struct {
		to         int
		mean, eval float64
	}
	var rows []row
	for from := 1; from <= last; from += every {
		to := min(from+every-1, last)
		var s float64
		n := 0
		for k := from; k <= to; k++ {
			if v, ok := loss[k]; ok {
				s += v
				n++
			}
		}
		e := math.NaN()
		var evalSteps []int
		for k := range eval {
			if k >= from && k <= to {
				evalSteps = append(evalSteps, k)
			}
		}
		if len(evalSteps) > 0 {
			sort.Ints(evalSteps)
			e = eval[evalSteps[len(evalSteps)-1]]
		}
		if n > 0 {
			rows = append(rows, row{to, s / float64(n), e})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| steps | mean training loss | evaluation loss |\n| ---: | ---: | ---: |\n")
	for i, r := range rows {
		from := 1
		if i > 0 {
			from = rows[i-1].to + 1
		}
		ev := ""
		if !math.IsNaN(r.eval) {
			ev = fmt.Sprintf("%.3f", r.eval)
		}
		fmt.Fprintf(&b, "| %d–%d | %.3f | %s |\n", from, r.to, r.mean, ev)
	}
	// The plot: one column per row of the table, loss on a log scale.
	const height = 12
	hi, lo := rows[0].mean, rows[0].mean
	for _, r := range rows {
		hi, lo = max(hi, r.mean), min(lo, r.mean)
	}
	lhi, llo := math.Log(hi), math.Log(lo)
	level := func(v float64) int {
		if lhi == llo {
			return 0
		}
		return int(math.Round((lhi - math.Log(v)) / (lhi - llo) * (height - 1)))
	}
	fmt.Fprintf(&b, "\nmean training loss per %d steps (log scale)\n", every)
	for y := range height {
		v := math.Exp(lhi - float64(y)/(height-1)*(lhi-llo))
		fmt.Fprintf(&b, "%6.2f |", v)
		for _, r := range rows {
			if level(r.mean) == y {
				b.WriteString("*")
			} else {
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "       +%s\n        step 1%s%d\n", strings.Repeat("-", len(rows)), strings.Repeat(" ", max(1, len(rows)-len(fmt.Sprint(last))-6)), last)
	if el, ok := elapsed[last]; ok {
		fmt.Fprintf(&b, "(%d steps; the last logged at %.0f s of its run)\n", last, el)
	}
	return b.String(), nil
}
