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
	// Stop reports whether a generated id ends the generation (EOS). The
	// stopping id is not passed to Emit. Nil: never stop early.
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

// Generate runs the prompt through the whole model, then samples up to
// opts.MaxTokens new tokens, calling emit with each as it comes. The engine
// must hold every layer, the embedding and the head. The prompt must not be
// empty (start from BOS for an unconditioned sample), and the prompt plus
// the new tokens must fit the model's context.
func (e *Engine) Generate(ctx context.Context, prompt []int, opts GenerateOptions, emit func(id int) error) (st Stats, err error) {
	cfg := &e.w.Config
	if len(prompt) == 0 {
		return st, errors.New("generate: empty prompt (start from the BOS token)")
	}
	if opts.MaxTokens < 0 {
		return st, fmt.Errorf("generate: negative number of tokens %d", opts.MaxTokens)
	}
	if len(prompt) > cfg.Context {
		return st, fmt.Errorf("generate: the prompt is %d tokens, longer than the model's context of %d", len(prompt), cfg.Context)
	}
	if len(prompt)+opts.MaxTokens > cfg.Context {
		return st, fmt.Errorf("generate: %d prompt tokens + %d new tokens exceed the model's context of %d", len(prompt), opts.MaxTokens, cfg.Context)
	}
	sampler, err := NewSampler(opts.Sampler)
	if err != nil {
		return st, fmt.Errorf("generate: %w", err)
	}
	chunk := opts.PrefillChunk
	if chunk <= 0 {
		chunk = 256
	}
	cache, err := e.NewCache(0, cfg.Layers, max(1, len(prompt)+opts.MaxTokens))
	if err != nil {
		return st, fmt.Errorf("generate: %w", err)
	}
	d := cfg.Dim
	x := make([]float32, min(chunk, len(prompt))*d)
	logits := make([]float32, cfg.Vocab)

	start := time.Now()
	for i := 0; i < len(prompt); i += chunk {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		ids := prompt[i:min(i+chunk, len(prompt))]
		if err := e.Embed(x, ids); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
		if err := e.Forward(cache, x, len(ids)); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
		if i+len(ids) == len(prompt) {
			if err := e.Logits(logits, x[(len(ids)-1)*d:]); err != nil {
				return st, fmt.Errorf("generate: %w", err)
			}
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
		if err := e.Embed(x, ids); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
		if err := e.Forward(cache, x, 1); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
		if err := e.Logits(logits, x[:d]); err != nil {
			return st, fmt.Errorf("generate: %w", err)
		}
	}
	return st, nil
}
