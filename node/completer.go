package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// Completer generates text for the OpenAI-compatible API. A local model is
// one; the swarm's pipeline client is another.
type Completer interface {
	// Name is the model's name in the API ("model" in requests).
	Name() string
	// ChatTemplate is the family's chat format (see chat.go).
	ChatTemplate() ChatTemplate
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
	// ParseSpecial matches control tokens written in the prompt (chat
	// templates need it).
	ParseSpecial bool
	// Verify, through the swarm, checks every step against a second
	// server of the same span (a local model ignores it).
	Verify bool
	// IgnoreEOS generates past the model's end of text
	// (tokenizer.StopRule) up to MaxTokens.
	IgnoreEOS bool
}

// FinishReason says why a completion ended, in OpenAI's words.
type FinishReason string

const (
	FinishStop   FinishReason = "stop"   // end of sequence or a stop string
	FinishLength FinishReason = "length" // MaxTokens reached
)

// CompleteResult reports a finished completion.
type CompleteResult struct {
	PromptTokens, CompletionTokens int
	Finish                         FinishReason
}

// ErrContextLength is returned when the prompt and the requested tokens do
// not fit the model's context.
var ErrContextLength = errors.New("context length exceeded")

// LocalModel is a Completer over a whole model on this node: a model file
// (OpenLocalModel) or a model rebuilt from the node's blocks. It runs one
// completion at a time.
type LocalModel struct {
	name    string
	w       *model.Weights
	release func() error // frees what backs w
	tok     tokenizer.Tokenizer
	be      kernels.Backend
	eng     *model.Engine
	tmpl    ChatTemplate

	mu     sync.Mutex // one completion at a time: the engine is single-goroutine
	closed bool
}

// LocalModelConfig names a model file to serve and its tokenizer.
type LocalModelConfig struct {
	Path string
	// Name is the model's name in the API (default: the file name
	// without extension).
	Name string
	// Tokenizer, when set, is used instead of the model's own.
	Tokenizer string
	// DefaultTokenizer is the tokenizer of a model with none inside
	// (llama2.c checkpoints keep theirs in a separate file); a model with
	// its own vocabulary (a GGUF) ignores it.
	DefaultTokenizer string
	// Threads of the model's backend (0: all cores).
	Threads int
}

// ErrNoTokenizer is returned for a model file with no tokenizer inside
// when none was given (llama2.c checkpoints keep theirs in a separate
// tokenizer.bin).
var ErrNoTokenizer = errors.New("no tokenizer inside")

// OpenLocalModel loads a model file with its tokenizer (see
// LocalModelConfig) to serve through the OpenAI API.
func OpenLocalModel(cfg LocalModelConfig) (*LocalModel, error) {
	path, name, threads := cfg.Path, cfg.Name, cfg.Threads
	m, err := checkpoints.Load(path)
	if err != nil {
		return nil, err
	}
	tok, tokPath := m.Tokenizer, cfg.Tokenizer
	if tokPath == "" && tok == nil {
		tokPath = cfg.DefaultTokenizer
	}
	if tokPath != "" {
		if tok, err = checkpoints.LoadTokenizer(tokPath, m.Weights.Config.Vocab); err != nil {
			m.Close()
			return nil, err
		}
	}
	if tok == nil {
		m.Close()
		return nil, fmt.Errorf("%s has %w", path, ErrNoTokenizer)
	}
	be, err := kernels.Open("cpu", threads)
	if err != nil {
		m.Close()
		return nil, err
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	tmpl := DetectChatTemplate("", tok)
	if m.GGUF != nil {
		if s, err := m.GGUF.String("tokenizer.chat_template"); err == nil {
			tmpl = DetectChatTemplate(s, tok)
		}
	}
	return &LocalModel{name: name, w: m.Weights, release: m.Close, tok: tok, be: be, eng: model.NewEngine(m.Weights, be), tmpl: tmpl}, nil
}

// Name is the model's name in the API.
func (l *LocalModel) Name() string { return l.name }

// ChatTemplate is the model's chat format.
func (l *LocalModel) ChatTemplate() ChatTemplate { return l.tmpl }

// Close releases the model and its backend, once the completion running
// (if any) is over.
func (l *LocalModel) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(l.be.Close(), l.release())
}

// Complete runs one completion.
func (l *LocalModel) Complete(ctx context.Context, prompt string, o CompleteOptions, emit func(string) error) (CompleteResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return CompleteResult{}, ErrClosed
	}
	return complete(l.tok, l.w.Config.Context, prompt, o, emit, func(ids []int, g model.GenerateOptions, tok func(int) error) (model.Stats, error) {
		return l.eng.Generate(ctx, ids, g, tok)
	})
}

// generateFunc runs a generation from prompt ids, calling tok with each
// new id: a local engine's or a swarm session's.
type generateFunc func(ids []int, g model.GenerateOptions, tok func(int) error) (model.Stats, error)

// complete is one completion with tok over gen: encoding, the context
// check, decoding to text, stop strings and the finish reason.
func complete(tok tokenizer.Tokenizer, ctxLen int, prompt string, o CompleteOptions, emit func(string) error, gen generateFunc) (CompleteResult, error) {
	var res CompleteResult
	ids := tok.Encode(prompt, tokenizer.EncodeOptions{BOS: tok.AddBOS(), ParseSpecial: o.ParseSpecial})
	if len(ids) == 0 {
		if tok.BOS() < 0 {
			return res, fmt.Errorf("%w: empty prompt", errBadRequest)
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
	stop := newStopFilter(o.Stop, emit)
	st, err := gen(ids, model.GenerateOptions{
		MaxTokens: o.MaxTokens, Sampler: o.Sampler, Stop: tokenizer.StopRule(tok, o.IgnoreEOS),
	}, func(id int) error {
		return stop.write(dec.Next(id))
	})
	res.CompletionTokens = st.Generated
	res.Finish = FinishLength
	if st.StoppedAtEOS {
		res.Finish = FinishStop
	}
	if errors.Is(err, errStopString) {
		res.Finish = FinishStop
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if err := stop.write(dec.Flush()); err != nil && !errors.Is(err, errStopString) {
		return res, err
	} else if err != nil {
		res.Finish = FinishStop
		return res, nil
	}
	return res, stop.flush()
}

// errStopString ends a generation when a stop string appears.
var errStopString = errors.New("stop string reached")

// stopFilter passes text through, holding back any tail that could be the
// start of a stop string, and ends the generation (errStopString) when one
// appears; the stop string and what follows are never emitted.
type stopFilter struct {
	stops []string
	emit  func(string) error
	held  string
}

func newStopFilter(stops []string, emit func(string) error) *stopFilter {
	var s []string
	for _, x := range stops {
		if x != "" {
			s = append(s, x)
		}
	}
	return &stopFilter{stops: s, emit: emit}
}

func (f *stopFilter) write(text string) error {
	if text == "" {
		return nil
	}
	if len(f.stops) == 0 {
		return f.emit(text)
	}
	buf := f.held + text
	cut := -1
	for _, s := range f.stops {
		if i := strings.Index(buf, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		f.held = ""
		if cut > 0 {
			if err := f.emit(buf[:cut]); err != nil {
				return err
			}
		}
		return errStopString
	}
	// Hold back the longest suffix that is a prefix of some stop string.
	keep := 0
	for _, s := range f.stops {
		for n := min(len(s)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				keep = n
				break
			}
		}
	}
	f.held = buf[len(buf)-keep:]
	if out := buf[:len(buf)-keep]; out != "" {
		return f.emit(out)
	}
	return nil
}

// flush emits what was held back at the end of a generation.
func (f *stopFilter) flush() error {
	h := f.held
	f.held = ""
	if h == "" {
		return nil
	}
	return f.emit(h)
}
