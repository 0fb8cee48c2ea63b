package model

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GenerateOptions control Generate.
type GenerateOptions struct {
	// MaxTokens is the most new tokens to generate.
	MaxTokens int
	Sampler   SamplerConfig
	// Stop reports whether a generated id ends the generation: the
	// tokenizer's end of text, tokenizer.StopRule. The stopping id is not
	// passed to Emit. Nil: never stop early.
	Stop func(id int) bool
	// PrefillChunk is the most prompt positions run in one forward pass
	// (0: 256). Larger chunks use more scratch memory.
	PrefillChunk int
}

// Stats report what a generation did and how fast.
type Stats struct {
	PromptTokens     int
	PromptDuration   time.Duration
	Generated        int
	GenerateDuration time.Duration
	// StoppedAtEOS is true when Stop ended the generation.
	StoppedAtEOS bool
}

// PromptRate and GenerateRate are tokens per second.
func (s Stats) PromptRate() float64   { return rate(s.PromptTokens, s.PromptDuration) }
func (s Stats) GenerateRate() float64 { return rate(s.Generated, s.GenerateDuration) }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Stepper runs token ids through a whole model, appending them to its
// state (a KV cache, or a session with servers that hold one), and writes
// the logits of the last id. An Engine with a Cache is one; a swarm
// session is another.
type Stepper interface {
	Step(ctx context.Context, ids []int, logits []float32) error
}

// Generate runs the prompt through the whole model, then samples up to
// opts.MaxTokens new tokens, calling emit with each as it comes. The engine
// must hold every layer, the embedding and the head. The prompt must not be
// empty (start from BOS for an unconditioned sample), and the prompt plus
// the new tokens must fit the model's context.
func (e *Engine) Generate(ctx context.Context, prompt []int, opts GenerateOptions, emit func(id int) error) (Stats, error) {
	cfg := &e.w.Config
	if len(prompt) > cfg.Context {
		return Stats{}, fmt.Errorf("generate: the prompt is %d tokens, longer than the model's context of %d", len(prompt), cfg.Context)
	}
	if opts.MaxTokens >= 0 && len(prompt)+opts.MaxTokens > cfg.Context {
		return Stats{}, fmt.Errorf("generate: %d prompt tokens + %d new tokens exceed the model's context of %d", len(prompt), opts.MaxTokens, cfg.Context)
	}
	cache, err := e.NewCache(0, cfg.Layers, max(1, len(prompt)+max(opts.MaxTokens, 0)))
	if err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	return GenerateWith(ctx, &localStepper{e: e, c: cache}, cfg.Vocab, prompt, opts, emit)
}

// localStepper steps an engine over one cache.
type localStepper struct {
	e *Engine
	c *Cache
	x []float32
}

func (s *localStepper) Step(ctx context.Context, ids []int, logits []float32) error {
	d := s.e.w.Config.Dim
	if cap(s.x) < len(ids)*d {
		s.x = make([]float32, len(ids)*d)
	}
	x := s.x[:len(ids)*d]
	if err := s.e.Embed(x, ids); err != nil {
		return err
	}
	if err := s.e.Forward(s.c, x, len(ids)); err != nil {
		return err
	}
	return s.e.Logits(logits, x[(len(ids)-1)*d:])
}

// GenerateWith runs the prompt through s in chunks of opts.PrefillChunk
// positions, then samples up to opts.MaxTokens new tokens one step at a
// time, calling emit with each. It stops early when opts.Stop says so (the
// stopping id is not emitted) or ctx ends.
func GenerateWith(ctx context.Context, s Stepper, vocab int, prompt []int, opts GenerateOptions, emit func(id int) error) (st Stats, err error) {
	if len(prompt) == 0 {
		return st, errors.New("generate: empty prompt (start from the BOS token)")
	}
	if opts.MaxTokens < 0 {
		return st, fmt.Errorf("generate: negative number of tokens %d", opts.MaxTokens)
	}
	sampler, err := NewSampler(opts.Sampler)
	if err != nil {
		return st, fmt.Errorf("generate: %w", err)
	}
	chunk := opts.PrefillChunk
	if chunk <= 0 {
		chunk = 256
	}
	logits := make([]float32, vocab)

	start := time.Now()
	for i := 0; i < len(prompt); i += chunk {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := s.Step(ctx, prompt[i:min(i+chunk, len(prompt))], logits); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
	}
	st.PromptTokens = len(prompt)
	st.PromptDuration = time.Since(start)

	start = time.Now()
	defer func() { st.GenerateDuration = time.Since(start) }()
	ids := []int{0}
	for st.Generated < opts.MaxTokens {
		next := sampler.Sample(logits)
		if opts.Stop != nil && opts.Stop(next) {
			st.StoppedAtEOS = true
			break
		}
		st.Generated++
		if err := emit(next); err != nil {
			return st, err
		}
		if st.Generated == opts.MaxTokens {
			break
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		ids[0] = next
		if err := s.Step(ctx, ids, logits); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
	}
	return st, nil
}
