package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure this machine: model decode speed, kernel GFLOPS, memory bandwidth",
	}
	cmd.AddCommand(newBenchDecodeCmd(g), newBenchKernelsCmd(), newBenchTrainCmd())
	return cmd
}

type benchDecodeFlags struct {
	model   string
	threads int
	prompt  int
	steps   int
	depth   int
	runs    int
	bw      bool
	profile string
	kv      string
}

func newBenchDecodeCmd(g *globals) *cobra.Command {
	var f benchDecodeFlags
	cmd := &cobra.Command{
		Use:   "decode -m MODEL|CID",
		Short: "Prompt and decode tokens per second of a model",
		Long: `Runs a prompt of --prompt tokens through the model, then decodes --steps
tokens greedily, --runs times, and prints the best prompt and decode rates.
The decode continues after the prompt, or starts from a cache of --depth
positions (0: an empty cache, as llama-bench's tg tests).
It also prints the weight and KV-cache bytes read per decoded token and,
with --bandwidth, the ratio of the decode rate to the memory-bandwidth
bound (read bandwidth measured around each run).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return benchDecode(cmd, g, &f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.model, "model", "m", "", "model file (required)")
	threadsFlag(cmd, &f.threads, "compute threads")
	fl.IntVarP(&f.prompt, "prompt", "p", 128, "prompt tokens")
	fl.IntVarP(&f.steps, "steps", "n", 128, "decoded tokens")
	fl.IntVarP(&f.depth, "depth", "d", -1, "positions in the KV cache when the decode starts (default: the prompt's; 0 decodes from an empty cache, as llama-bench's tg tests do)")
	fl.IntVar(&f.runs, "runs", 3, "repetitions (the best is reported)")
	fl.BoolVar(&f.bw, "bandwidth", true, "measure memory read bandwidth and report the ratio to the bound")
	fl.StringVar(&f.kv, "kv", "f16", "KV cache element type: f16 or f32")
	fl.StringVar(&f.profile, "cpuprofile", "", "write a CPU profile of the runs to this file")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func benchDecode(cmd *cobra.Command, g *globals, f *benchDecodeFlags) error {
	l, err := openModel(cmd.Context(), g, f.model, "", false)
	if err != nil {
		return err
	}
	defer l.Close()
	w := l.w
	cfg := w.Config
	if f.prompt < 1 || f.steps < 1 || f.runs < 1 {
		return fmt.Errorf("--prompt, --steps and --runs must be at least 1")
	}
	if f.depth < 0 {
		f.depth = f.prompt
	}
	if f.prompt+f.steps > cfg.Context || f.depth+f.steps > cfg.Context {
		return fmt.Errorf("--prompt %d or --depth %d, + --steps %d, exceed the model's context of %d", f.prompt, f.depth, f.steps, cfg.Context)
	}
	kv, err := model.ParseKVType(f.kv)
	if err != nil {
		return fmt.Errorf("--kv: %w", err)
	}
	be, err := kernels.Open("cpu", f.threads)
	if err != nil {
		return err
	}
	defer be.Close()
	out := cmd.OutOrStdout()
	eng := model.NewEngine(w, be, model.KVType(kv))
	cache, err := eng.NewCache(0, cfg.Layers, max(f.prompt, f.depth)+f.steps)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int, max(f.prompt, f.depth))
	for i := range ids {
		ids[i] = rng.IntN(cfg.Vocab)
	}
	x := make([]float32, len(ids)*cfg.Dim)
	logits := make([]float32, cfg.Vocab)
	var promptRates, decodeRates, bandwidths []float64
	// With --bandwidth, memory read bandwidth is measured before every run
	// and after the last, each time for about as long as a run, so that
	// each run is compared with the bandwidth of the minutes it ran in
	// (on a shared machine it moves by tens of percent between minutes).
	var meter *bandwidthMeter
	if f.bw {
		meter = newBandwidthMeter(be)
		defer meter.close()
	}
	window := 300 * time.Millisecond
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
	for r := 0; r < f.runs; r++ {
		if err := cmd.Context().Err(); err != nil {
			return err
		}
		if meter != nil {
			bandwidths = append(bandwidths, meter.measure(window))
		}
		cache.Reset()
		start := time.Now()
		prompt := ids[:f.prompt]
		if err := eng.Embed(x, prompt); err != nil {
			return err
		}
		if err := eng.Forward(cache, x, len(prompt)); err != nil {
			return err
		}
		if err := eng.Logits(logits, x[(len(prompt)-1)*cfg.Dim:]); err != nil {
			return err
		}
		promptRates = append(promptRates, float64(len(prompt))/time.Since(start).Seconds())
		if f.depth != f.prompt {
			// The decode starts from a cache of depth positions instead
			// (not timed).
			cache.Reset()
			if f.depth > 0 {
				if err := eng.Embed(x, ids[:f.depth]); err != nil {
					return err
				}
				if err := eng.Forward(cache, x, f.depth); err != nil {
					return err
				}
			}
		}
		start = time.Now()
		next := []int{0}
		for s := 0; s < f.steps; s++ {
			next[0] = model.Argmax(logits)
			if err := eng.Embed(x, next); err != nil {
				return err
			}
			if err := eng.Forward(cache, x, 1); err != nil {
				return err
			}
			if err := eng.Logits(logits, x[:cfg.Dim]); err != nil {
				return err
			}
		}
		took := time.Since(start)
		decodeRates = append(decodeRates, float64(f.steps)/took.Seconds())
		window = min(max(took, 300*time.Millisecond), 2*time.Second)
	}
	if meter != nil {
		bandwidths = append(bandwidths, meter.measure(window))
	}
	bytesPerTok := decodeBytes(w)
	bestP, bestD := slices.Max(promptRates), slices.Max(decodeRates)
	fmt.Fprintf(out, "model      %s (%s): %d layers, dim %d, hidden %d, vocab %d, %s\n",
		f.model, l.format, cfg.Layers, cfg.Dim, cfg.Hidden, cfg.Vocab, weightTypes(w))
	fmt.Fprintf(out, "backend    %s, %d threads\n", be.Name(), be.Threads())
	fmt.Fprintf(out, "prompt     %8.1f tok/s  (%d tokens, best of %d)\n", bestP, f.prompt, f.runs)
	fmt.Fprintf(out, "decode     %8.1f tok/s  (%d tokens from %d cached positions, best of %d)\n", bestD, f.steps, f.depth, f.runs)
	fmt.Fprintf(out, "weights    %8.1f MB read per decoded token, %.1f GB/s at the decode rate\n",
		float64(bytesPerTok)/1e6, float64(bytesPerTok)*bestD/1e9)
	// The KV cache is read too: every layer's keys and values of all
	// earlier positions, on average those of the middle of the decode.
	meanPos := float64(f.depth) + float64(f.steps)/2
	kvBytes := int64(meanPos * float64(model.CacheBytes(&cfg, cache.Type(), cfg.Layers, 1)))
	fmt.Fprintf(out, "kv cache   %8.1f MB read per decoded token on average (%s, %.0f positions; %.1f MB held)\n",
		float64(kvBytes)/1e6, cache.Type(), meanPos, float64(cache.Bytes())/1e6)
	if f.bw {
		// Run r is held against the mean of the bandwidths measured just
		// before and just after it; the median of the runs is reported.
		ratios := make([]float64, len(decodeRates))
		ratiosKV := make([]float64, len(decodeRates))
		for r, d := range decodeRates {
			gbs := (bandwidths[r] + bandwidths[r+1]) / 2 * 1e9
			ratios[r] = d * float64(bytesPerTok) / gbs
			ratiosKV[r] = d * float64(bytesPerTok+kvBytes) / gbs
		}
		gbs := median(bandwidths)
		fmt.Fprintf(out, "bandwidth  %8.1f GB/s read (median of %d measurements around the runs, %.1f–%.1f); bound %.1f tok/s from the weights alone, %.1f with the KV cache\n",
			gbs, len(bandwidths), slices.Min(bandwidths), slices.Max(bandwidths),
			gbs*1e9/float64(bytesPerTok), gbs*1e9/float64(bytesPerTok+kvBytes))
		fmt.Fprintf(out, "ratio      decode at %.0f%% of the weights-only bound, %.0f%% of the bound with the KV cache (median of %d runs, each against the bandwidth measured around it; runs: %s)\n",
			100*median(ratios), 100*median(ratiosKV), len(ratios), percents(ratios))
	}
	return nil
}

// median returns the median of v (the mean of the middle two for an even
// count). v must not be empty; it is not modified.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percents formats ratios as "77%, 79%, 81%".
func percents(v []float64) string {
	var s string
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.0f%%", 100*x)
	}
	return s
}

// decodeBytes is the weight bytes one decode step reads: every layer's
// matrices and norms, the final norm, the output head, and one embedding row.
func decodeBytes(w *model.Weights) int64 {
	n := w.Bytes()
	if w.Output != w.Embedding && w.Embedding != nil {
		n -= int64(len(w.Embedding.Data))
		n += int64(w.Embedding.RowBytes())
	} else if w.Embedding != nil {
		n += int64(w.Embedding.RowBytes())
	}
	return n
}

// weightTypes describes the dtypes of the layer matrices.
func weightTypes(w *model.Weights) string {
	seen := map[kernels.DType]int{}
	for _, l := range w.Layers {
		if l == nil {
			continue
		}
		for _, m := range l.Matrices() {
			seen[m.Type]++
		}
	}
	var s string
	for t := kernels.DType(0); t.Valid(); t++ {
		if seen[t] > 0 {
			if s != "" {
				s += "+"
			}
			s += t.String()
		}
	}
	return s
}
