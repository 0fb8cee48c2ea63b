package openai

import (
	"context"
	"errors"
	"fmt"

	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
)

// Completer generates text for the OpenAI-compatible API. A local model is
// one; the swarm's pipeline client is another.
type Completer interface {
	// Name is the model's name in the API ("model" in requests).
	Name() string
	// ChatTemplate is the model's chat format: its own Jinja template
	// (GGUF tokenizer.chat_template), or the built-in format model/chat
	// picks for it (chat.ForModel). Nil: plain "Role: text" lines.
	ChatTemplate() *chat.Template
	// Complete generates from prompt, calling emit with text as it comes.
	Complete(ctx context.Context, prompt string, o CompleteOptions, emit func(string) error) (CompleteResult, error)
}

// CompleteOptions control one completion.
type CompleteOptions struct {
	MaxTokens int
	Sampler   model.SamplerConfig
	// Stop ends the completion at the first of these strings, which is not
	// emitted.
	Stop []string
	// Chat is the template a chat prompt was rendered with (nil for a
	// plain completion). With it the prompt is encoded as chat.Encode does
	// (control tokens written in it, such as "<|im_start|>", become their
	// tokens; BOS unless the prompt begins with it), and the generation
	// also ends at the template's end-of-turn tokens (StopRule) and stop
	// strings (Stops).
	Chat *chat.Template
	// Verify, through the swarm, checks every step against a second
	// server of the same span (a local model ignores it).
	Verify bool
	// IgnoreEOS generates past the model's end of text
	// (tokenizer.StopRule) up to MaxTokens.
	IgnoreEOS bool
}

// CompleteResult reports a finished completion.
type CompleteResult struct {
	PromptTokens, CompletionTokens int
	Finish                         api.FinishReason
}

// ErrContextLength is returned when the prompt and the requested tokens do
// not fit the model's context.
var ErrContextLength = errors.New("context length exceeded")

// GenerateFunc runs a generation from prompt ids, calling tok with each
// new id: a local engine's or a swarm session's.
type GenerateFunc func(ids []int, g model.GenerateOptions, tok func(int) error) (model.Stats, error)

// Generate is one completion with tok over gen, as every Completer runs
// it: encoding the prompt, the context check (ErrContextLength), decoding
// to text, stop strings and the finish reason. ctxLen is the model's
// context.
func Generate(tok tokenizer.Tokenizer, ctxLen int, prompt string, o CompleteOptions, emit func(string) error, gen GenerateFunc) (CompleteResult, error) {
	var res CompleteResult
	var ids []int
	stopRule, stops := tokenizer.StopRule(tok, o.IgnoreEOS), o.Stop
	if o.Chat != nil {
		ids = chat.Encode(tok, prompt)
		stopRule = o.Chat.StopRule(tok, o.IgnoreEOS)
		stops = append(append([]string(nil), o.Stop...), o.Chat.Stops()...)
	} else {
		ids = tok.Encode(prompt, tokenizer.EncodeOptions{BOS: tok.AddBOS()})
	}
	if len(ids) == 0 {
		if tok.BOS() < 0 {
			return res, fmt.Errorf("%w: empty prompt", api.ErrBadRequest)
		}
		ids = []int{tok.BOS()}
	}
	res.PromptTokens = len(ids)
	if len(ids)+o.MaxTokens > ctxLen {
		return res, fmt.Errorf("%w: %d prompt tokens + %d max tokens > the model's context of %d",
			ErrContextLength, len(ids), o.MaxTokens, ctxLen)
	}
	dec := tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id)
	}
	stop := newStopFilter(stops, emit)
	st, err := gen(ids, model.GenerateOptions{
		MaxTokens: o.MaxTokens, Sampler: o.Sampler, Stop: stopRule,
	}, func(id int) error {
		return stop.write(dec.Next(id))
	})
	res.CompletionTokens = st.Generated
	res.Finish = api.FinishLength
	if st.StoppedAtEOS {
		res.Finish = api.FinishStop
	}
	if errors.Is(err, errStopString) {
		res.Finish = api.FinishStop
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if err := stop.write(dec.Flush()); err != nil && !errors.Is(err, errStopString) {
		return res, err
	} else if err != nil {
		res.Finish = api.FinishStop
		return res, nil
	}
	return res, stop.flush()
}
