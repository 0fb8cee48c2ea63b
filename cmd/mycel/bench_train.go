package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/train"
)

type benchTrainFlags struct {
	shape   string
	method  string
	dtype   string
	threads int
	batch   int
	seq     int
	steps   int
	rank    int
	profile string
}

func newBenchTrainCmd() *cobra.Command {
	var f benchTrainFlags
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Training tokens per second and model-FLOPs utilisation",
		Long: `Trains a seeded random-weight model of a named shape (see models synth) on
random tokens for --steps steps after one warm-up step, and prints tokens/s,
where the time went (forward, backward, optimizer), the model-FLOPs
utilisation and the peak resident memory. The utilisation is
(6·parameters + attention)·tokens/s over the f32 GEMM rate (1024³) measured
before and after the run with the same threads (the better of the two); parameters are those of the matrix
products (the head included, the embedding lookup not), attention
6·layers·dim·seq per token (causal).`,
		Example: `  mycel bench train --shape stories15M --method full -t 2
  mycel bench train --shape stories15M --method lora --dtype q4_0 -t 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return benchTrain(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.shape, "shape", "stories15M", "model shape: "+strings.Join(checkpoints.SynthShapes(), ", "))
	fl.StringVar(&f.method, "method", "full", "full or lora")
	fl.StringVar(&f.dtype, "dtype", "f32", "weight type of the base: f32, f16, bf16, q8_0 or q4_0")
	threadsFlag(cmd, &f.threads, "compute threads")
	fl.IntVar(&f.batch, "batch", 4, "sequences per step")
	fl.IntVar(&f.seq, "seq", 256, "tokens per sequence")
	fl.IntVarP(&f.steps, "steps", "n", 3, "timed steps")
	fl.IntVar(&f.rank, "rank", 8, "LoRA rank")
	fl.StringVar(&f.profile, "cpuprofile", "", "write a CPU profile of the timed steps to this file")
	return cmd
}

func benchTrain(cmd *cobra.Command, f *benchTrainFlags) error {
	dt, err := kernels.ParseDType(f.dtype)
	if err != nil {
		return fmt.Errorf("--dtype: %w", err)
	}
	if f.steps < 1 || f.batch < 1 || f.seq < 2 {
		return fmt.Errorf("--steps, --batch and --seq must be positive (and --seq at least 2)")
	}
	var buf bytes.Buffer
	if err := checkpoints.Synth(&buf, f.shape, dt, 1); err != nil {
		return err
	}
	m, err := checkpoints.LoadBytes(buf.Bytes())
	if err != nil {
		return err
	}
	defer m.Close()
	w := m.Weights
	c := w.Config
	be, err := kernels.Open("cpu", f.threads)
	if err != nil {
		return err
	}
	defer be.Close()

	job := train.DefaultJob(f.shape, "random tokens")
	job.Method, job.Steps, job.SeqLen, job.BatchTokens = f.method, f.steps+1, f.seq, f.batch*f.seq
	job.Warmup, job.CheckpointEvery, job.LoRARank, job.LoRAAlpha = 0, 0, f.rank, float64(2*f.rank)
	if err := job.Validate(); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	seqs := make([]train.Sequence, f.batch*(f.steps+1))
	for i := range seqs {
		s := train.Sequence{Tokens: make([]int, f.seq+1), Weights: make([]float32, f.seq)}
		for j := range s.Tokens {
			s.Tokens[j] = r.IntN(c.Vocab)
		}
		for j := range s.Weights {
			s.Weights[j] = 1
		}
		seqs[i] = s
	}
	tr, err := train.NewTrainer(job, w, be, seqs, nil)
	if err != nil {
		return err
	}
	gemm := gemmRate(be)
	if _, err := tr.RunStep(); err != nil { // warm-up
		return err
	}
	tr.Time = train.Timings{}
	if f.profile != "" {
		pf, err := os.Create(f.profile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	tokens := 0
	for range f.steps {
		res, err := tr.RunStep()
		if err != nil {
			return err
		}
		tokens += res.Tokens
	}
	el := time.Since(start)
	rate := float64(tokens) / el.Seconds()
	params := matmulParams(w)
	flopsPerToken := 6*float64(params) + 6*float64(c.Layers*c.Dim*f.seq)
	// The machine may be busy: take the better of the rates before and
	// after the run, which gives the lower utilisation.
	gemmAfter := gemmRate(be)
	mfu := flopsPerToken * rate / (max(gemm, gemmAfter) * 1e9)
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "train %s %s on %s (%.1fM matmul parameters), batch %d×%d, %s, %d threads\n",
		f.shape, f.method, f.dtype, float64(params)/1e6, f.batch, f.seq, be.Name(), be.Threads())
	tot := tr.Time.Forward + tr.Time.Backward + tr.Time.Optimizer
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / tot.Seconds() }
	fmt.Fprintf(out, "  %.0f tok/s over %d steps (%.2f s/step): forward %.0f%%, backward %.0f%%, optimizer %.0f%%\n",
		rate, f.steps, el.Seconds()/float64(f.steps), pct(tr.Time.Forward), pct(tr.Time.Backward), pct(tr.Time.Optimizer))
	fmt.Fprintf(out, "  model FLOPs utilisation %.1f%% of the f32 GEMM rate (%.1f GFLOP/s before the run, %.1f after; the better taken)\n", 100*mfu, gemm, gemmAfter)
	if rss := peakRSS(); rss > 0 {
		fmt.Fprintf(out, "  peak resident memory %.0f MB\n", float64(rss)/1e6)
	}
	return nil
}

// gemmRate is the best f32 GEMM rate of be, in GFLOP/s, on 1024³.
func gemmRate(be kernels.Backend) float64 {
	const n = 1024
	r := rand.New(rand.NewPCG(3, 4))
	wf := make([]float32, n*n)
	for i := range wf {
		wf[i] = float32(r.NormFloat64())
	}
	wm := &kernels.Matrix{Type: kernels.F32, Rows: n, Cols: n, Data: kernels.F32Bytes(wf)}
	x := make([]float32, n*n)
	copy(x, wf)
	out := make([]float32, n*n)
	be.MatMul(out, wm, x, n)
	best := time.Duration(1 << 62)
	for range 5 {
		t0 := time.Now()
		be.MatMul(out, wm, x, n)
		best = min(best, time.Since(t0))
	}
	return 2 * n * n * n / best.Seconds() / 1e9
}

// matmulParams counts the weights of the matrix products a token goes
// through: every layer's seven and the head.
func matmulParams(w *model.Weights) int64 {
	c := w.Config
	per := int64(2*c.Dim*c.Dim + 2*c.KVDim()*c.Dim + 3*c.Hidden*c.Dim)
	return int64(c.Layers)*per + int64(c.Vocab*c.Dim)
}

// peakRSS is the process's peak resident set in bytes (0 where unknown).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
