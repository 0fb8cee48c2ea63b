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

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/chat"
)

type chatFlags struct {
	model     string
	tokenizer string
	template  string
	system    string
	steps     int
	ctx       int
	temp      float32
	topK      int
	topP      float32
	seed      int64
	threads   int
	kv        string
	verbose   bool
}

func newChatCmd(g *globals) *cobra.Command {
	var f chatFlags
	cmd := &cobra.Command{
		Use:   "chat -m MODEL [flags]",
		Short: "Chat with a model run here",
		Long: `Chat with a model run on this machine. Each line read from stdin is a user
message: the whole conversation is formatted with the model's chat template
(the Jinja template a GGUF stores as tokenizer.chat_template, or a built-in
format chosen from the vocabulary: ChatML, Llama 3, Llama 2, Gemma, Phi-3 or
plain "User:" lines), and the reply streams to stdout until the model ends
its turn (its end-of-turn or end-of-text token, or the template's stop
strings) or -n tokens. Only the new part of the conversation goes through
the model: the keys and values of the earlier turns stay cached.

/reset forgets the conversation (the --system message stays); /exit or the
end of stdin quits.`,
		Example: `  mycel chat -m qwen2.5-0.5b-instruct-q8_0.gguf --system "Answer in one sentence."
  mycel chat -m stories15M.bin -z tokenizer.bin --template plain
  echo "What is 2+2?" | mycel chat -m model.gguf --temp 0 -v`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runChat(cmd, g, &f, cmd.Flags().Changed("seed"))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.model, "model", "m", "", "model file: .gguf, or llama2.c .bin with -z (required)")
	fl.StringVarP(&f.tokenizer, "tokenizer", "z", "", "tokenizer file (llama2.c tokenizer.bin or a .gguf); default: the model's own")
	fl.StringVar(&f.template, "template", "", "chat format instead of the model's: a Jinja template file, or chatml, llama3, llama2, gemma, phi3 or plain")
	fl.StringVar(&f.system, "system", "", "system message that opens the conversation")
	fl.IntVarP(&f.steps, "steps", "n", 512, "most new tokens per reply")
	fl.IntVar(&f.ctx, "ctx", 4096, "most tokens of conversation kept (at most the model's context)")
	fl.Float32Var(&f.temp, "temp", 0.8, "sampling temperature; 0 is greedy")
	fl.IntVar(&f.topK, "top-k", 0, "sample from the K most likely tokens (0: off)")
	fl.Float32Var(&f.topP, "top-p", 0.9, "nucleus sampling threshold (1: off)")
	fl.Int64Var(&f.seed, "seed", 0, "random seed of the first reply, the next ones counting up (default: from the clock)")
	threadsFlag(cmd, &f.threads, "compute threads")
	fl.StringVar(&f.kv, "kv", "f16", "KV cache element type: f16 or f32")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the model, the chat format and, for every turn, the prompt the model sees and its token counts to stderr")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func runChat(cmd *cobra.Command, g *globals, f *chatFlags, seedSet bool) error {
	if f.steps < 1 {
		return fmt.Errorf("-n %d: a reply needs at least one token", f.steps)
	}
	if f.ctx < 2 {
		return fmt.Errorf("--ctx %d: too small to hold a conversation", f.ctx)
	}
	seed := uint64(f.seed)
	if !seedSet {
		seed = uint64(time.Now().UnixNano())
	}
	sc := model.SamplerConfig{Temperature: f.temp, TopK: f.topK, TopP: f.topP, Seed: seed}
	if err := sc.Validate(); err != nil {
		return err
	}
	kv, err := model.ParseKVType(f.kv)
	if err != nil {
		return fmt.Errorf("--kv: %w", err)
	}
	l, err := openModel(cmd.Context(), g, f.model, f.tokenizer, true)
	if err != nil {
		return err
	}
	defer l.Close()
	stderr := cmd.ErrOrStderr()
	tmpl, err := chatTemplate(l, f.template)
	if err != nil {
		if tmpl == nil {
			return err
		}
		fmt.Fprintf(stderr, "mycel: the model's %v; using the built-in %s format\n", err, tmpl.Family())
	}

	cfg := l.w.Config
	be, err := kernels.Open("cpu", f.threads)
	if err != nil {
		return err
	}
	defer be.Close()
	eng := model.NewEngine(l.w, be, model.KVType(kv))
	cache, err := eng.NewCache(0, cfg.Layers, min(f.ctx, cfg.Context))
	if err != nil {
		return err
	}
	if f.verbose {
		src := "the model's template"
		if tmpl.Source() == "" {
			src = "built-in"
		}
		fmt.Fprintf(stderr, "model: %s (%s), %d layers, dim %d, vocab %d; backend: %s, %d threads; kv cache: %s, %d positions\n",
			f.model, l.format, cfg.Layers, cfg.Dim, cfg.Vocab, be.Name(), be.Threads(), kv, cache.Cap)
		fmt.Fprintf(stderr, "chat format: %s (%s); stop strings %q\n", tmpl.Family(), src, tmpl.Stops())
	}

	c := &chatSession{
		tmpl:    tmpl,
		l:       l,
		st:      &cacheStepper{e: eng, c: cache},
		sc:      sc,
		steps:   f.steps,
		verbose: f.verbose,
		stop:    tmpl.StopRule(l.tok, false),
		out:     bufio.NewWriter(cmd.OutOrStdout()),
		stderr:  stderr,
	}
	c.reset(f.system)
	return c.loop(cmd.Context(), cmd.InOrStdin())
}

// chatTemplate picks the chat format: the --template flag's, else the
// model's own Jinja template, else the built-in format its vocabulary
// calls for. With a template that does not compile, it returns the
// built-in format and the error.
func chatTemplate(l *loaded, flag string) (*chat.Template, error) {
	sp := chat.SpecialOf(l.tok)
	switch chat.Family(flag) {
	case chat.ChatML, chat.Llama3, chat.Llama2, chat.Gemma, chat.Phi3, chat.Plain:
		return chat.Builtin(chat.Family(flag)), nil
	}
	if flag != "" {
		src, err := os.ReadFile(flag)
		if err != nil {
			return nil, fmt.Errorf("--template: %w (give a Jinja template file, or chatml, llama3, llama2, gemma, phi3 or plain)", err)
		}
		t, err := chat.Compile(string(src), sp)
		if err != nil {
			return nil, fmt.Errorf("--template %s: %w", flag, err)
		}
		return t, nil
	}
	src := ""
	if l.src != nil && l.src.GGUF != nil && !l.tokGiven {
		if _, ok := l.src.GGUF.Get(chat.MetadataKey); ok {
			s, err := l.src.GGUF.String(chat.MetadataKey)
			if err != nil {
				return nil, err
			}
			src = s
		}
	}
	return chat.ForModel(src, l.tok)
}

// chatSession is one conversation with a model run here.
type chatSession struct {
	tmpl    *chat.Template
	l       *loaded
	st      *cacheStepper
	sc      model.SamplerConfig
	steps   int
	verbose bool
	stop    func(id int) bool
	out     *bufio.Writer
	stderr  io.Writer

	history []chat.Message
	turn    int
}

// reset starts the conversation over, with the system message if any.
func (c *chatSession) reset(system string) {
	c.history = c.history[:0]
	if system != "" {
		c.history = append(c.history, chat.Message{Role: "system", Content: system})
	}
}

func (c *chatSession) loop(ctx context.Context, in io.Reader) error {
	system := ""
	if len(c.history) > 0 {
		system = c.history[0].Content
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for {
		fmt.Fprint(c.stderr, "> ")
		if !sc.Scan() {
			fmt.Fprintln(c.stderr)
			return sc.Err()
		}
		line := strings.TrimRight(sc.Text(), "\r")
		switch strings.TrimSpace(line) {
		case "":
			continue
		case "/exit", "/quit":
			return nil
		case "/reset":
			c.reset(system)
			fmt.Fprintln(c.stderr, "(conversation cleared)")
			continue
		}
		if err := c.reply(ctx, line); err != nil {
			if ctx.Err() != nil {
				return err
			}
			fmt.Fprintln(c.stderr, "mycel:", err)
		}
	}
}

// errStopText ends a generation at a stop string.
var errStopText = errors.New("stop string")

// reply answers one user message, streaming the answer to stdout, and
// adds both to the history. An error leaves the history as it was.
func (c *chatSession) reply(ctx context.Context, text string) error {
	msgs := append(c.history[:len(c.history):len(c.history)], chat.Message{Role: "user", Content: text})
	prompt, err := c.tmpl.Render(msgs, true)
	if err != nil {
		return err
	}
	ids := chat.Encode(c.l.tok, prompt)
	capacity := c.st.c.Cap
	if len(ids) >= capacity {
		return fmt.Errorf("the conversation is %d tokens, and %d fit (--ctx): /reset starts over", len(ids), capacity)
	}
	keep := c.st.reuse(ids)
	steps := min(c.steps, capacity-len(ids))
	if c.verbose {
		fmt.Fprintf(c.stderr, "prompt: %d tokens, %d from the cache: %q\n", len(ids), keep, prompt)
	}

	dec := c.l.tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id)
	}
	w := &stopWriter{w: c.out, stops: c.tmpl.Stops()}
	sc := c.sc
	sc.Seed += uint64(c.turn)
	c.turn++
	st, err := model.GenerateWith(ctx, c.st, c.l.w.Config.Vocab, ids[keep:], model.GenerateOptions{
		MaxTokens: steps,
		Sampler:   sc,
		Stop:      c.stop,
	}, func(id int) error {
		if w.write(dec.Next(id)) {
			return errStopText
		}
		return c.out.Flush()
	})
	stoppedAtText := errors.Is(err, errStopText)
	if stoppedAtText {
		err = nil
	} else if err == nil {
		w.write(dec.Flush())
	}
	w.flush()
	io.WriteString(c.out, "\n")
	c.out.Flush()
	if err != nil {
		return err
	}
	c.history = append(msgs, chat.Message{Role: "assistant", Content: strings.TrimSpace(w.text)})
	if c.verbose {
		end := ""
		switch {
		case st.StoppedAtEOS:
			end = ", stopped at end of turn"
		case stoppedAtText:
			end = ", stopped at a stop string"
		}
		fmt.Fprintf(c.stderr, "reply: %d tokens, %.1f tok/s%s; prompt: %d tokens run, %.1f tok/s\n",
			st.Generated, st.GenerateRate(), end, st.PromptTokens, st.PromptRate())
	}
	return nil
}

// stopWriter writes a reply, holding back text that may begin a stop
// string, and reports when a stop string appears; the reply (text) then
// ends before it.
type stopWriter struct {
	w       io.Writer
	stops   []string
	text    string // the reply so far
	done    int    // bytes of text written to w
	stopped bool
}

// write adds str to the reply and says whether a stop string has appeared.
func (s *stopWriter) write(str string) bool {
	if s.stopped || str == "" {
		return s.stopped
	}
	// No stop string was in the text before: one now ends in str.
	from := len(s.text)
	for _, stop := range s.stops {
		from = min(from, max(0, len(s.text)-len(stop)+1))
	}
	s.text += str
	cut := -1
	for _, stop := range s.stops {
		if i := strings.Index(s.text[from:], stop); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		s.text, s.stopped = s.text[:cut], true
		s.flush()
		return true
	}
	hold := 0
	for _, stop := range s.stops {
		for n := min(len(stop)-1, len(s.text)); n > hold; n-- {
			if strings.HasSuffix(s.text, stop[:n]) {
				hold = n
				break
			}
		}
	}
	if end := len(s.text) - hold; end > s.done {
		io.WriteString(s.w, s.text[s.done:end])
		s.done = end
	}
	return false
}

// flush writes what was held back.
func (s *stopWriter) flush() {
	if s.done < len(s.text) {
		io.WriteString(s.w, s.text[s.done:])
		s.done = len(s.text)
	}
}

// cacheStepper runs a whole model over one KV cache that lives across the
// turns of a conversation, and remembers which tokens the cache holds.
type cacheStepper struct {
	e   *model.Engine
	c   *model.Cache
	x   []float32
	ids []int
}

// reuse keeps the cached positions that ids begins with (all but the
// last id at most, whose logits the next step needs) and returns their
// count.
func (s *cacheStepper) reuse(ids []int) int {
	n := 0
	for n < len(s.ids) && n < len(ids)-1 && s.ids[n] == ids[n] {
		n++
	}
	s.c.Truncate(n)
	s.ids = s.ids[:n]
	return n
}

func (s *cacheStepper) Step(ctx context.Context, ids []int, logits []float32) error {
	d := s.e.Weights().Config.Dim
	if cap(s.x) < len(ids)*d {
		s.x = make([]float32, len(ids)*d)
	}
	x := s.x[:len(ids)*d]
	if err := s.e.Embed(x, ids); err != nil {
		return err
	}
	if err := s.e.Forward(s.c, x, len(ids)); err != nil {
		s.c.Truncate(len(s.ids))
		return err
	}
	s.ids = append(s.ids, ids...)
	return s.e.Logits(logits, x[(len(ids)-1)*d:])
}

var _ model.Stepper = (*cacheStepper)(nil)
