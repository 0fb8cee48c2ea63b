package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/train"
)

func newTrainCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Fine-tune a model: on this machine, or with the swarm's volunteers",
		Long: `Fine-tune a model with LoRA, QLoRA (LoRA on a quantized base) or full
fine-tuning. A job file (TOML; docs/training.md lists its keys) names the
base model, the data set and the method. train run trains it here; train
submit publishes it for the volunteers of the swarm (mycel node --train),
train status follows it and train pull fetches the tuned model.`,
	}
	cmd.AddCommand(newTrainRunCmd(g), newTrainExportCmd(g), newTrainCheckpointsCmd(g), newTrainRmCmd(g),
		newTrainSubmitCmd(g), newTrainLsCmd(g), newTrainStatusCmd(g), newTrainPullCmd(g), newTrainStopCmd(g))
	return cmd
}

type trainRunFlags struct {
	tokenizer string
	dir       string
	resume    bool
	threads   int
}

func newTrainRunCmd(g *globals) *cobra.Command {
	var f trainRunFlags
	cmd := &cobra.Command{
		Use:   "run JOB.toml",
		Short: "Train a job on this machine",
		Long: `Train a job on this machine. Progress (step, loss, tokens/s, time left) goes
to stderr; checkpoints go to --checkpoints (default: JOB-checkpoints next to
the job file) every checkpoint_every steps and at the end. Ctrl-C stops at
the end of the step under way and saves a checkpoint; --resume goes on from
the latest one, bitwise as if the run had not stopped.

When a node runs, the final checkpoint is also stored in it as blocks under
a manifest (kept under the job file's name, announced to the swarm), and
the last line of stdout is its CID; with no node, it is the path of the
final checkpoint file. Either is what train export takes.

The model and the data set may be files (paths relative to the job file's
folder or the current one), or CIDs and names of a running node's models.`,
		Example: `  mycel train run story.toml
  mycel train run story.toml --resume
  mycel train export story-checkpoints/step-00000200.ckpt -o story.gguf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrain(cmd, g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.tokenizer, "tokenizer", "z", "", "tokenizer for a model file without one inside (llama2.c tokenizer.bin)")
	fl.StringVar(&f.dir, "checkpoints", "", "checkpoint folder (default: JOB-checkpoints beside the job file)")
	fl.BoolVar(&f.resume, "resume", false, "go on from the latest checkpoint in the checkpoint folder")
	threadsFlag(cmd, &f.threads, "compute threads; the same job and thread count give bitwise the same result")
	return cmd
}

// resolveJobPath makes a job's file reference absolute: relative to the
// job file's folder when the file is there, else to the current folder.
// References that are not files (CIDs, names) are left as they are.
func resolveJobPath(jobDir, ref string) string {
	if filepath.IsAbs(ref) {
		return ref
	}
	for _, p := range []string{filepath.Join(jobDir, ref), ref} {
		if _, err := os.Stat(p); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
			return p
		}
	}
	return ref
}

// openTrainModel loads a job's base model with its tokenizer.
func openTrainModel(ctx context.Context, g *globals, job *train.Job, tokPath string) (*loaded, error) {
	l, err := openModel(ctx, g, job.Model, tokPath, true)
	if err != nil {
		return nil, fmt.Errorf("job file: model: %w", err)
	}
	return l, nil
}

func runTrain(cmd *cobra.Command, g *globals, f *trainRunFlags, jobPath string) error {
	ctx := cmd.Context()
	job, err := train.LoadJob(jobPath)
	if err != nil {
		return err
	}
	jobDir := filepath.Dir(jobPath)
	job.Model, job.Data = resolveJobPath(jobDir, job.Model), resolveJobPath(jobDir, job.Data)
	dir := f.dir
	if dir == "" {
		dir = strings.TrimSuffix(jobPath, filepath.Ext(jobPath)) + "-checkpoints"
	}
	l, err := openTrainModel(ctx, g, job, f.tokenizer)
	if err != nil {
		return err
	}
	defer l.Close()
	data, err := readJobData(ctx, g, job.Data)
	if err != nil {
		return err
	}
	sets, err := train.JobSets(job, data, l.tok)
	if err != nil {
		return fmt.Errorf("data %s: %w", job.Data, err)
	}
	format, recs, trainSet, evalSet := sets.Format, sets.Records, sets.Train, sets.Eval
	be, err := kernels.Open("cpu", f.threads)
	if err != nil {
		return err
	}
	defer be.Close()
	tr, err := train.NewTrainer(job, l.w, be, trainSet, evalSet)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	if f.resume {
		path, err := train.LatestCheckpoint(dir)
		if err != nil {
			return err
		}
		if path == "" {
			return fmt.Errorf("--resume: no checkpoint in %s", dir)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if err := tr.Restore(b); err != nil {
			return fmt.Errorf("--resume from %s: %w", path, err)
		}
		fmt.Fprintf(stderr, "resumed from %s at step %d\n", path, tr.Step)
	}
	fmt.Fprintf(stderr, "train: %s on %s (%s), %s; %d training and %d evaluation sequences of %d tokens; %d steps of %d sequences; %s, %d threads\n",
		job.Method, job.Model, l.format, train.Describe(format, recs), len(trainSet), len(evalSet), job.SeqLen, job.Steps, job.Sequences(), be.Name(), be.Threads())

	p := newProgress(stderr, job.Steps, tr.Step)
	saved := ""
	save := func() error {
		if saved != "" && strings.HasSuffix(saved, train.CheckpointName(tr.Step)) {
			return nil
		}
		path, err := tr.SaveCheckpoint(dir)
		if err != nil {
			return err
		}
		saved = path
		return nil
	}
	for tr.Step < job.Steps {
		if ctx.Err() != nil {
			break
		}
		res, err := tr.RunStep()
		if err != nil {
			if errors.Is(err, train.ErrNotFinite) {
				return fmt.Errorf("%w (lower lr, or set grad_clip)", err)
			}
			return err
		}
		evalLoss := math.NaN()
		if job.CheckpointEvery > 0 && tr.Step%job.CheckpointEvery == 0 && tr.Step < job.Steps {
			if evalLoss, err = tr.EvalLoss(); err != nil {
				return err
			}
			if err := save(); err != nil {
				return err
			}
		}
		p.step(res, evalLoss)
	}
	interrupted := tr.Step < job.Steps
	if err := save(); err != nil {
		return err
	}
	p.done()
	if interrupted {
		fmt.Fprintf(stderr, "stopped at step %d of %d; go on with: mycel train run %s --resume\n", tr.Step, job.Steps, jobPath)
	} else if evalLoss, err := tr.EvalLoss(); err == nil && !math.IsNaN(evalLoss) {
		fmt.Fprintf(stderr, "evaluation loss %.4f\n", evalLoss)
	}
	final, err := storeCheckpoint(ctx, g, saved, strings.TrimSuffix(filepath.Base(jobPath), filepath.Ext(jobPath)), stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), final)
	if interrupted {
		return context.Canceled
	}
	return nil
}

// storeCheckpoint stores the checkpoint file at path in the running node
// under name and returns its CID; with no node running it returns path.
func storeCheckpoint(ctx context.Context, g *globals, path, name string, stderr io.Writer) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// A run stopped by Ctrl-C still stores its last checkpoint.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	info, err := g.client().PutCheckpoint(ctx, name, f)
	if errors.Is(err, api.ErrNoNode) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("storing the checkpoint in the node: %w (it is saved at %s)", err, path)
	}
	fmt.Fprintf(stderr, "checkpoint %s (step %d of %d, %s) stored in the node as %s\n", path, info.Step, info.Steps, units.FormatBytes(info.Bytes), info.CID)
	return info.CID, nil
}

// readCheckpoint reads a checkpoint: a file, or else a checkpoint (CID or
// name) of the running node, fetched from peers if the node lacks it.
func readCheckpoint(ctx context.Context, g *globals, ref string) ([]byte, error) {
	data, err := os.ReadFile(ref)
	if err == nil {
		return data, nil
	}
	if looksLikePath(ref) || !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	data, nerr := g.client().CheckpointState(ctx, ref)
	if nerr != nil {
		return nil, fmt.Errorf("checkpoint %q is neither a file nor a checkpoint of the node: %w", ref, nerr)
	}
	return data, nil
}

func newTrainCheckpointsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "checkpoints",
		Short: "List the training checkpoints stored in the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().ListCheckpoints(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CID\tNAME\tMETHOD\tSTEP\tSIZE\tBASE")
			for _, c := range list {
				base := c.Base
				if base == "" {
					base = "(a file)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", c.CID, c.Name, c.Method, c.Step, c.Steps, units.FormatBytes(c.Bytes), base)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTrainRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm CHECKPOINT",
		Short: "Remove a checkpoint from the node (by CID, or a name for its latest)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := g.client().RemoveCheckpoint(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %s (%d blocks deleted)\n", args[0], n)
			return nil
		},
	}
}

// progress draws a training run's progress on one line of a terminal
// (rewritten in place), or a line every few seconds elsewhere.
type progress struct {
	w           io.Writer
	tty         bool
	steps       int
	start       time.Time
	startStep   int
	tokens      int
	lastPrinted time.Time
	last        string
}

func newProgress(w io.Writer, steps, from int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, steps: steps, start: time.Now(), startStep: from}
}

func (p *progress) step(r train.StepResult, evalLoss float64) {
	p.tokens += r.Tokens
	el := time.Since(p.start)
	done := r.Step - p.startStep
	rate := float64(p.tokens) / el.Seconds()
	left := time.Duration(float64(el) / float64(done) * float64(p.steps-r.Step)).Round(time.Second)
	width := 24
	fill := width * r.Step / p.steps
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	line := fmt.Sprintf("[%s] step %d/%d  loss %.4f  lr %.2g  %.0f tok/s  %s left", bar, r.Step, p.steps, r.Loss, r.LR, rate, left)
	if !math.IsNaN(evalLoss) {
		line += fmt.Sprintf("  eval %.4f", evalLoss)
	}
	p.last = line
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	case !math.IsNaN(evalLoss) || time.Since(p.lastPrinted) > 5*time.Second || r.Step == p.steps:
		fmt.Fprintln(p.w, line)
		p.lastPrinted = time.Now()
	}
}

func (p *progress) done() {
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

type trainExportFlags struct {
	out         string
	adapterOnly bool
	dtype       string
	tokenizer   string
	model       string
}

func newTrainExportCmd(g *globals) *cobra.Command {
	var f trainExportFlags
	cmd := &cobra.Command{
		Use:   "export CHECKPOINT -o FILE.gguf",
		Short: "Write a checkpoint's model (merged) or its LoRA adapter as GGUF",
		Long: `Write the model a checkpoint holds as a GGUF file that mycel run, models
import and the swarm take like any other: the adapters merged into the base
weights (full fine-tuning: the trained weights). With --adapter-only, write
the LoRA adapter alone in the GGUF adapter layout llama.cpp reads; mycel run
-m BASE --lora ADAPTER applies it without merging.

CHECKPOINT is a checkpoint file, or the CID of a checkpoint a node stored
(train run prints it), or the name it was kept under (the job file's name:
its latest checkpoint); the node fetches it from its peers if needed.`,
		Example: `  mycel train export story-checkpoints/step-00000200.ckpt -o story.gguf
  mycel train export story-checkpoints/step-00000200.ckpt --adapter-only -o story-lora.gguf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrainExport(cmd, g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output", "o", "", "GGUF file to write (required)")
	fl.BoolVar(&f.adapterOnly, "adapter-only", false, "write the LoRA adapter only")
	fl.StringVar(&f.dtype, "dtype", "", "weight type of the merged model: f32, f16, bf16, q8_0 or q4_0 (default: the base model's)")
	fl.StringVarP(&f.tokenizer, "tokenizer", "z", "", "tokenizer for a base model file without one inside (llama2.c tokenizer.bin)")
	fl.StringVar(&f.model, "model", "", "base model, when it is no longer where the job found it")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func runTrainExport(cmd *cobra.Command, g *globals, f *trainExportFlags, ckpt string) error {
	data, err := readCheckpoint(cmd.Context(), g, ckpt)
	if err != nil {
		return err
	}
	h, _, err := train.ReadCheckpoint(data)
	if err != nil {
		return fmt.Errorf("%s: %w", ckpt, err)
	}
	job, err := train.ParseJob([]byte(h.Job))
	if err != nil {
		return fmt.Errorf("%s: %w", ckpt, err)
	}
	base := *job
	if f.model != "" {
		base.Model = f.model
	}
	l, err := openTrainModel(cmd.Context(), g, &base, f.tokenizer)
	if err != nil {
		return err
	}
	defer l.Close()
	be, err := kernels.Open("cpu", 0)
	if err != nil {
		return err
	}
	defer be.Close()
	tr, err := train.NewTrainer(job, l.w, be, nil, nil)
	if err != nil {
		return err
	}
	if err := tr.Restore(data); err != nil {
		return fmt.Errorf("%s: %w", ckpt, err)
	}
	dt := l.w.Layers[0].Wq.Type
	if f.dtype != "" {
		if dt, err = kernels.ParseDType(f.dtype); err != nil {
			return fmt.Errorf("--dtype: %w", err)
		}
	}
	name := strings.TrimSuffix(filepath.Base(f.out), filepath.Ext(f.out))
	return writeFileAtomic(f.out, func(w io.Writer) error {
		if f.adapterOnly {
			return tr.WriteAdapter(w, name)
		}
		tokKVs, err := l.tokenizerKVs()
		if err != nil {
			return err
		}
		return tr.WriteMerged(w, name, tokKVs, dt)
	})
}

// writeFileAtomic writes path through a temporary file in its folder,
// renamed into place only when write succeeded: no half-written file ever
// carries the name.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// applyLoRA reads the GGUF adapter at path and applies it to e.
func applyLoRA(be kernels.Backend, e *model.Engine, path string) error {
	g, err := checkpoints.OpenGGUF(path)
	if err != nil {
		return fmt.Errorf("--lora: %w", err)
	}
	defer g.Close()
	ad, err := train.ParseAdapter(g)
	if err != nil {
		return fmt.Errorf("--lora %s: %w", path, err)
	}
	if err := ad.Apply(be, e); err != nil {
		return fmt.Errorf("--lora %s: %w", path, err)
	}
	return nil
}

// readJobData reads a job's data set: a file, or else a data set (CID or
// name) of the running node, pulled from peers if the node lacks it.
func readJobData(ctx context.Context, g *globals, ref string) ([]byte, error) {
	data, err := os.ReadFile(ref)
	if err == nil {
		return data, nil
	}
	if looksLikePath(ref) || !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("job file: data: %w", err)
	}
	data, nerr := g.client().DataBytes(ctx, ref)
	if nerr != nil {
		return nil, fmt.Errorf("job file: data %q is neither a file nor a data set of the node: %w", ref, nerr)
	}
	return data, nil
}
