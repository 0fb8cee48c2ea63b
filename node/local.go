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
	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/openai"
)

// LocalModel is an openai.Completer over a whole model on this node: a model file
// (OpenLocalModel) or a model rebuilt from the node's blocks. It runs one
// completion at a time.
type LocalModel struct {
	name    string
	w       *model.Weights
	release func() error // frees what backs w
	tok     tokenizer.Tokenizer
	be      kernels.Backend
	eng     *model.Engine
	tmpl    *chat.Template

	mu     sync.Mutex // one completion at a time: the engine is single-goroutine
	closed bool
}

// LocalModelConfig names a model file to serve and its tokenizer.
type LocalModelConfig struct {
	Path string
	// Name is the model's name in the API (default: the file name
	// without extension).
	Name string
	// Tokenizer, when set, is used instead of the model's own (and the
	// model's chat template with it: the chat format is then the built-in
	// one its vocabulary calls for).
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
// LocalModelConfig) to serve through the OpenAI API. Chats are formatted
// with the chat template the file carries (GGUF tokenizer.chat_template),
// or without one with the built-in format model/chat picks; a template
// that does not compile is logged and the built-in format used.
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
	src := ""
	if m.GGUF != nil && tokPath == "" {
		if _, ok := m.GGUF.Get(chat.MetadataKey); ok {
			if src, err = m.GGUF.String(chat.MetadataKey); err != nil {
				be.Close()
				m.Close()
				return nil, err
			}
		}
	}
	tmpl := chatTemplate(name, src, tok)
	return &LocalModel{name: name, w: m.Weights, release: m.Close, tok: tok, be: be, eng: model.NewEngine(m.Weights, be), tmpl: tmpl}, nil
}

// Name is the model's name in the API.
func (l *LocalModel) Name() string { return l.name }

// ChatTemplate is the model's chat format.
func (l *LocalModel) ChatTemplate() *chat.Template { return l.tmpl }

// chatTemplate is the chat format of model name, whose Jinja template is
// src ("" where it has none) and whose vocabulary is tok (chat.ForModel).
// A template that does not compile is logged, and the built-in format
// used.
func chatTemplate(name, src string, tok tokenizer.Tokenizer) *chat.Template {
	t, err := chat.ForModel(src, tok)
	if err != nil {
		log.Warn("the model's chat template does not compile; chats use a built-in format", "model", name, "format", t.Family(), "err", err)
	}
	return t
}

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
func (l *LocalModel) Complete(ctx context.Context, prompt string, o openai.CompleteOptions, emit func(string) error) (openai.CompleteResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return openai.CompleteResult{}, ErrClosed
	}
	return openai.Generate(l.tok, l.w.Config.Context, prompt, o, emit, func(ids []int, g model.GenerateOptions, tok func(int) error) (model.Stats, error) {
		return l.eng.Generate(ctx, ids, g, tok)
	})
}
