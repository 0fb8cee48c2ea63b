package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
)

type runFlags struct {
	model     string
	tokenizer string
	steps     int
	temp      float32
	topK      int
	topP      float32
	seed      int64
	threads   int
	verbose   bool
	swarm     bool
	verify    bool
	kv        string
	lora      string
	ignoreEOS bool
}

func newRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run -m MODEL [flags] [PROMPT]",
		Short: "Generate text with a model",
		Long: `Generate text with a model. MODEL is a llama2.c checkpoint (.bin), a GGUF
file, or the CID (or name) of a model known to the running node. A model
whose blocks the node holds entirely runs here; any other runs through the
swarm, each layer on a volunteer that serves it (--swarm forces that). stdout
carries the prompt followed by the generated text, streamed as it comes; a
summary goes to stderr (with -v, the route: one "route:" line per hop and a
line for each re-route). Without a prompt, generation starts from the
beginning-of-sequence token.`,
		Example: `  mycel run -m stories15M.bin -z tokenizer.bin "Once upon a time"
  mycel run -m model.gguf --temp 0 -n 64 "The capital of France is"
  mycel run -m bagu...model-cid -v "Once upon a time"            # through the swarm`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prompt := ""
			if len(args) == 1 {
				prompt = args[0]
			}
			return runGenerate(cmd, g, &f, prompt, cmd.Flags().Changed("seed"), cmd.Flags().Changed("steps"))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.model, "model", "m", "", "model file: llama2.c .bin or .gguf (required)")
	fl.StringVarP(&f.tokenizer, "tokenizer", "z", "", "tokenizer file (llama2.c tokenizer.bin or a .gguf); default: the model's own")
	fl.IntVarP(&f.steps, "steps", "n", 256, "number of new tokens (stops earlier at end of sequence, unless --ignore-eos)")
	fl.BoolVar(&f.ignoreEOS, "ignore-eos", false, "generate past the model's end of text, up to -n tokens")
	fl.Float32Var(&f.temp, "temp", 1.0, "sampling temperature; 0 is greedy")
	fl.IntVar(&f.topK, "top-k", 0, "sample from the K most likely tokens (0: off)")
	fl.Float32Var(&f.topP, "top-p", 0.9, "nucleus sampling threshold (1: off)")
	fl.Int64Var(&f.seed, "seed", 0, "random seed (default: from the clock, printed in the summary)")
	threadsFlag(cmd, &f.threads, "compute threads")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the model's shape and backend, or the swarm route, to stderr")
	fl.BoolVar(&f.swarm, "swarm", false, "run through the swarm even when the node holds every block")
	fl.StringVar(&f.kv, "kv", "f16", "KV cache element type of a model run here: f16 (half the memory and cache reads) or f32")
	fl.StringVar(&f.lora, "lora", "", "apply this LoRA adapter (a GGUF adapter, as mycel train export --adapter-only or llama.cpp write them) to a model run here")
	fl.BoolVar(&f.verify, "verify", false, "through the swarm: check every step against a second server of the same span, and ban a server caught lying")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

// loaded is a model opened for running, with its tokenizer.
type loaded struct {
	w      *model.Weights
	tok    tokenizer.Tokenizer
	format string
	close  func() error
	// src is the model file (nil for a model from the node's blocks);
	// tokGiven says that tok came from -z rather than from the model.
	src      *checkpoints.Model
	tokGiven bool
}

func (l *loaded) Close() error { return l.close() }

// tokenizerKVs is the tokenizer as GGUF metadata, for writing the model
// out: a GGUF's own entries, or those of a SentencePiece vocabulary.
func (l *loaded) tokenizerKVs() ([]checkpoints.KV, error) {
	if l.src != nil && l.src.GGUF != nil && !l.tokGiven {
		return checkpoints.TokenizerKVs(l.src, nil)
	}
	return checkpoints.TokenizerKVs(nil, l.tok)
}

// openModel loads a model, from a file or (for a CID or a name the node
// knows) from the blocks the running node holds, with its tokenizer (the
// model's own, or the one named by tokPath), checking that their
// vocabularies agree.
func openModel(ctx context.Context, g *globals, path, tokPath string, needTokenizer bool) (*loaded, error) {
	var l *loaded
	if _, statErr := os.Stat(path); statErr != nil {
		c, err := nodeModel(ctx, g, path)
		if err != nil {
			return nil, err
		}
		sl, err := g.client().LoadModel(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", path, err)
		}
		l = &loaded{w: sl.Weights, tok: sl.Tokenizer, format: "blocks", close: func() error { return nil }}
	} else {
		m, err := checkpoints.Load(path)
		if err != nil {
			return nil, err
		}
		l = &loaded{w: m.Weights, tok: m.Tokenizer, format: m.Format, close: m.Close, src: m}
	}
	vocab := l.w.Config.Vocab
	if tokPath != "" {
		t, err := checkpoints.LoadTokenizer(tokPath, vocab)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.tok, l.tokGiven = t, true
	}
	if l.tok == nil && needTokenizer {
		l.Close()
		return nil, fmt.Errorf("%s has no tokenizer inside: name one with -z (for llama2.c models, the tokenizer.bin that came with it)", path)
	}
	if l.tok != nil && l.tok.VocabSize() != vocab {
		l.Close()
		return nil, fmt.Errorf("tokenizer has %d tokens but model %s has a vocabulary of %d: they do not belong together", l.tok.VocabSize(), path, vocab)
	}
	return l, nil
}

func runGenerate(cmd *cobra.Command, g *globals, f *runFlags, prompt string, seedSet, stepsSet bool) error {
	if f.steps < 0 {
		return fmt.Errorf("-n %d: the number of new tokens cannot be negative", f.steps)
	}
	seed := uint64(f.seed)
	if !seedSet {
		seed = uint64(time.Now().UnixNano())
	}
	sc := model.SamplerConfig{Temperature: f.temp, TopK: f.topK, TopP: f.topP, Seed: seed}
	if err := sc.Validate(); err != nil {
		return err
	}
	if f.verify && !f.swarm {
		if _, err := os.Stat(f.model); err == nil {
			return errors.New("--verify checks servers of the swarm; a model file runs here")
		}
	}
	kv, err := model.ParseKVType(f.kv)
	if err != nil {
		return fmt.Errorf("--kv: %w", err)
	}
	if useSwarm, err := wantSwarm(cmd.Context(), g, f); err != nil {
		return err
	} else if useSwarm {
		if cmd.Flags().Changed("kv") {
			return errors.New("--kv sets the cache of a model run here; through the swarm, each server keeps its own")
		}
		if f.lora != "" {
			return errors.New("--lora applies an adapter to a model run here; the swarm's servers run the base model (merge the adapter with mycel train export, then import and serve the result)")
		}
		return runSwarm(cmd, g, f, prompt, sc, stepsSet)
	}
	l, err := openModel(cmd.Context(), g, f.model, f.tokenizer, true)
	if err != nil {
		return err
	}
	defer l.Close()
	cfg := l.w.Config
	ids := l.tok.Encode(prompt, tokenizer.EncodeOptions{BOS: l.tok.AddBOS(), ParseSpecial: true})
	if len(ids) == 0 {
		if l.tok.BOS() < 0 {
			return errors.New("empty prompt and the tokenizer has no beginning-of-sequence token to start from")
		}
		ids = []int{l.tok.BOS()}
	}
	if len(ids) >= cfg.Context {
		return fmt.Errorf("prompt is %d tokens, the model's context is %d: shorten the prompt", len(ids), cfg.Context)
	}
	steps := f.steps
	if len(ids)+steps > cfg.Context {
		if stepsSet {
			return fmt.Errorf("-n %d: %d prompt tokens + %d new tokens exceed the model's context of %d (at most -n %d)",
				steps, len(ids), steps, cfg.Context, cfg.Context-len(ids))
		}
		steps = cfg.Context - len(ids)
	}
	be, err := kernels.Open("cpu", f.threads)
	if err != nil {
		return err
	}
	defer be.Close()
	eng := model.NewEngine(l.w, be, model.KVType(kv))
	if f.lora != "" {
		if err := applyLoRA(be, eng, f.lora); err != nil {
			return err
		}
	}
	stderr := cmd.ErrOrStderr()
	if f.verbose {
		fmt.Fprintf(stderr, "model: %s (%s), %d layers, dim %d, %d heads (%d kv), vocab %d, context %d, %.1f MB of weights\n",
			f.model, l.format, cfg.Layers, cfg.Dim, cfg.Heads, cfg.KVHeads, cfg.Vocab, cfg.Context, float64(l.w.Bytes())/1e6)
		fmt.Fprintf(stderr, "backend: %s, %d threads; kv cache: %s; prompt: %d tokens\n", be.Name(), be.Threads(), kv, len(ids))
	}

	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	io.WriteString(out, prompt)
	out.Flush()
	dec := l.tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id) // prime: the decoder needs to know what came before
	}
	st, err := eng.Generate(cmd.Context(), ids, model.GenerateOptions{
		MaxTokens: steps,
		Sampler:   sc,
		Stop:      tokenizer.StopRule(l.tok, f.ignoreEOS),
	}, func(id int) error {
		if _, err := io.WriteString(out, dec.Next(id)); err != nil {
			return err
		}
		return out.Flush()
	})
	io.WriteString(out, dec.Flush())
	if !strings.HasSuffix(prompt, "\n") || st.Generated > 0 {
		io.WriteString(out, "\n")
	}
	out.Flush()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s%s (seed %d, %s, %d threads)\n",
		st.PromptTokens, st.PromptRate(), st.Generated, st.GenerateRate(), endNote(st.StoppedAtEOS), seed, be.Name(), be.Threads())
	return nil
}

// wantSwarm says whether f.model runs through the swarm: not a file, and
// either --swarm or a model the node does not hold entirely.
func wantSwarm(ctx context.Context, g *globals, f *runFlags) (bool, error) {
	if _, err := os.Stat(f.model); err == nil {
		if f.swarm {
			return false, fmt.Errorf("--swarm runs a model the swarm serves, by CID or name; %s is a file (import it with mycel models import, then serve it with mycel node --serve)", f.model)
		}
		return false, nil
	} else if looksLikePath(f.model) {
		return false, fmt.Errorf("model %w", err)
	}
	if f.swarm {
		return true, nil
	}
	c, err := nodeModel(ctx, g, f.model)
	if err != nil {
		return false, err
	}
	info, err := g.client().Inspect(ctx, c.String())
	if err != nil || info.TotalParts == 0 {
		return true, nil
	}
	if info.LocalParts == info.TotalParts {
		return false, nil
	}
	// A node that serves every layer itself (a volunteer with the whole
	// model) lacks only the embedding and head: fetch those and run here,
	// since a node cannot be a hop of its own route.
	for _, p := range info.Parts {
		if !p.Local && strings.HasPrefix(p.Name, "layer ") {
			return true, nil
		}
	}
	if err := g.client().Pull(ctx, api.PullRequest{CID: c.String()}, func(api.PullProgress) {}); err != nil {
		return true, nil
	}
	return false, nil
}

// nodeModel resolves a model argument that is not a file, a CID or the
// name of a model the running node knows, to the model's CID; the node
// does the resolving. An argument that looks like a path is a missing
// file.
func nodeModel(ctx context.Context, g *globals, ref string) (cid.Cid, error) {
	if looksLikePath(ref) {
		_, err := os.Stat(ref)
		return cid.Undef, fmt.Errorf("model %w", err)
	}
	e, err := g.client().Resolve(ctx, ref)
	if errors.Is(err, api.ErrNoNode) {
		return cid.Undef, fmt.Errorf("model %s is not a file, so it names a model of a node: %w", ref, err)
	}
	if err != nil {
		return cid.Undef, err // the node's own error names ref
	}
	return cid.Decode(e.CID)
}

// looksLikePath says whether a model argument names a file rather than a
// CID or a model name.
func looksLikePath(s string) bool {
	if strings.ContainsRune(s, os.PathSeparator) || strings.ContainsRune(s, '/') {
		return true
	}
	for _, ext := range []string{".gguf", ".bin"} {
		if strings.HasSuffix(strings.ToLower(s), ext) {
			return true
		}
	}
	return false
}

// runSwarm generates through the swarm by the node's control API.
func runSwarm(cmd *cobra.Command, g *globals, f *runFlags, prompt string, sc model.SamplerConfig, stepsSet bool) error {
	if f.tokenizer != "" {
		return errors.New("-z: a model in the swarm carries its own tokenizer")
	}
	stderr := cmd.ErrOrStderr()
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	// The prompt goes out with the first event: an error before any
	// (unknown model, no route) leaves stdout empty.
	started := false
	start := func() {
		if !started {
			started = true
			io.WriteString(out, prompt)
			out.Flush()
		}
	}
	var done api.GenerateEvent
	err := g.client().Generate(cmd.Context(), api.GenerateRequest{
		Model: f.model, Prompt: prompt, MaxTokens: f.steps,
		Temp: sc.Temperature, TopK: sc.TopK, TopP: sc.TopP, Seed: sc.Seed, Verify: f.verify, IgnoreEOS: f.ignoreEOS,
	}, func(ev api.GenerateEvent) error {
		start()
		if r := ev.Route; r != nil && f.verbose {
			out.Flush()
			fmt.Fprintln(stderr, routeLine(*r))
		}
		if ev.Done {
			done = ev
		}
		if ev.Text != "" {
			io.WriteString(out, ev.Text)
			return out.Flush()
		}
		return nil
	})
	if started && (!strings.HasSuffix(prompt, "\n") || done.CompletionTokens > 0) {
		io.WriteString(out, "\n")
	}
	out.Flush()
	if err != nil {
		return err
	}
	rate := 0.0
	if done.Seconds > 0 {
		rate = float64(done.CompletionTokens) / done.Seconds
	}
	fmt.Fprintf(stderr, "prompt: %d tokens; generated: %d tokens through the swarm in %.2f s, %.1f tok/s%s (seed %d)\n",
		done.PromptTokens, done.CompletionTokens, done.Seconds, rate, endNote(done.Finish == api.FinishStop), sc.Seed)
	return nil
}
