package openai

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/mycel-net/mycel/model/chat"
	"github.com/mycel-net/mycel/node/api"
)

// maxRequestBytes bounds a request body.
const maxRequestBytes = 4 << 20

// defaultMaxTokens is used when a request names none (OpenAI's completions
// default is 16; a chat answer needs more).
const (
	defaultCompletionTokens = 16
	defaultChatTokens       = 256
)

// Backend is what the adapter needs of the daemon.
type Backend interface {
	// Completer returns the model a request names. An error that wraps
	// api.ErrNotFound answers 404 model_not_found; any other, 503
	// model_unavailable.
	Completer(ctx context.Context, model string) (Completer, error)
	// CompletionModels lists the models GET /v1/models answers with, in
	// order of precedence: of two entries with one ID, the first counts.
	CompletionModels(ctx context.Context) []Model
}

// Model is one entry of GET /v1/models.
type Model struct {
	ID      string
	Created time.Time
	// OwnedBy says where it runs: "mycel" (on the node) or
	// "mycel-swarm" (through the swarm).
	OwnedBy string
}

// Register adds the adapter's routes over b to mux: GET /v1/models, POST
// /v1/completions and POST /v1/chat/completions.
func Register(mux *http.ServeMux, b Backend) {
	a := &adapter{b: b}
	mux.HandleFunc("GET /v1/models", a.handleModels)
	mux.HandleFunc("POST /v1/completions", a.handleCompletions)
	mux.HandleFunc("POST /v1/chat/completions", a.handleChat)
}

// adapter answers the OpenAI API's requests over a Backend.
type adapter struct{ b Backend }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

type oaiError struct {
	Error oaiErrorBody `json:"error"`
}

type oaiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// WriteError answers with an error in the OpenAI API's shape: for the
// checks that run before a request reaches the adapter (package server's
// Host, Origin and token checks).
func WriteError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeOAIError(w, status, typ, code, msg)
}

func writeOAIError(w http.ResponseWriter, status int, typ, code, msg string) {
	var c *string
	if code != "" {
		c = &code
	}
	writeJSON(w, status, oaiError{Error: oaiErrorBody{Message: msg, Type: typ, Code: c}})
}

// handleModels lists the models the backend answers for, each ID once,
// sorted; every ID resolves in a request.
func (a *adapter) handleModels(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := []entry{}
	seen := map[string]bool{}
	for _, m := range a.b.CompletionModels(r.Context()) {
		if m.ID != "" && !seen[m.ID] {
			seen[m.ID] = true
			list = append(list, entry{ID: m.ID, Object: "model", Created: m.Created.Unix(), OwnedBy: m.OwnedBy})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": list})
}

// Message is one turn of a conversation.
type Message = chat.Message

// oaiRequest holds the fields of both request kinds that Mycel reads.
type oaiRequest struct {
	Model               string          `json:"model"`
	Prompt              json.RawMessage `json:"prompt"`
	Messages            []Message       `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	Stop                json.RawMessage `json:"stop"`
	Seed                *int64          `json:"seed"`
	// IgnoreEOS (vLLM's extension) generates past the end of text.
	IgnoreEOS bool `json:"ignore_eos"`
}

// parse reads and checks the request, writing the error response itself
// when it fails.
func (a *adapter) parseOAI(w http.ResponseWriter, r *http.Request, chat bool) (*oaiRequest, Completer, CompleteOptions, bool) {
	var req oaiRequest
	var o CompleteOptions
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", "reading the request: "+err.Error())
		return nil, nil, o, false
	}
	if len(body) > maxRequestBytes {
		writeOAIError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "", fmt.Sprintf("request over %d bytes", maxRequestBytes))
		return nil, nil, o, false
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", "the request is not valid JSON: "+err.Error())
		return nil, nil, o, false
	}
	bad := func(msg string) (*oaiRequest, Completer, CompleteOptions, bool) {
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", msg)
		return nil, nil, o, false
	}
	if req.Model == "" {
		return bad("you must provide a model parameter")
	}
	c, err := a.b.Completer(r.Context(), req.Model)
	if errors.Is(err, api.ErrNotFound) {
		writeOAIError(w, http.StatusNotFound, "invalid_request_error", "model_not_found",
			fmt.Sprintf("the model %q does not exist on this node (GET /v1/models lists those it serves)", req.Model))
		return nil, nil, o, false
	}
	if err != nil {
		writeOAIError(w, http.StatusServiceUnavailable, "server_error", "model_unavailable",
			fmt.Sprintf("the model %q cannot run through the swarm: %v", req.Model, err))
		return nil, nil, o, false
	}
	if req.N != nil && *req.N != 1 {
		return bad("only n=1 is supported")
	}
	o.MaxTokens = defaultCompletionTokens
	if chat {
		o.MaxTokens = defaultChatTokens
	}
	if req.MaxTokens != nil {
		o.MaxTokens = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil {
		o.MaxTokens = *req.MaxCompletionTokens
	}
	if o.MaxTokens < 0 {
		return bad("max_tokens must not be negative")
	}
	o.Sampler.Temperature = 1
	if req.Temperature != nil {
		o.Sampler.Temperature = float32(*req.Temperature)
	}
	if req.TopP != nil {
		o.Sampler.TopP = float32(*req.TopP)
	}
	if req.Seed != nil {
		o.Sampler.Seed = uint64(*req.Seed)
	} else {
		o.Sampler.Seed = uint64(time.Now().UnixNano())
	}
	if err := o.Sampler.Validate(); err != nil {
		return bad(err.Error())
	}
	o.IgnoreEOS = req.IgnoreEOS
	if len(req.Stop) > 0 && string(req.Stop) != "null" {
		var one string
		if json.Unmarshal(req.Stop, &one) == nil {
			o.Stop = []string{one}
		} else if err := json.Unmarshal(req.Stop, &o.Stop); err != nil {
			return bad("stop must be a string or an array of strings")
		}
		if len(o.Stop) > 4 {
			return bad("at most 4 stop sequences")
		}
	}
	return &req, c, o, true
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (a *adapter) handleCompletions(w http.ResponseWriter, r *http.Request) {
	req, c, o, ok := a.parseOAI(w, r, false)
	if !ok {
		return
	}
	var prompt string
	if err := json.Unmarshal(req.Prompt, &prompt); err != nil {
		var list []string
		if json.Unmarshal(req.Prompt, &list) != nil || len(list) != 1 {
			writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", "prompt must be a string (or an array of one string)")
			return
		}
		prompt = list[0]
	}
	runCompletion(w, r, c, req, prompt, o, false)
}

func (a *adapter) handleChat(w http.ResponseWriter, r *http.Request) {
	req, c, o, ok := a.parseOAI(w, r, true)
	if !ok {
		return
	}
	if len(req.Messages) == 0 {
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", "messages must not be empty")
		return
	}
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "user", "assistant", "developer":
		default:
			writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "",
				fmt.Sprintf("messages[%d].role %q is not system, user or assistant", i, m.Role))
			return
		}
		if m.Role == "developer" {
			req.Messages[i].Role = "system"
		}
	}
	tmpl := c.ChatTemplate()
	if tmpl == nil {
		tmpl = chat.Builtin(chat.Plain)
	}
	prompt, err := tmpl.Render(req.Messages, true)
	if err != nil {
		// The template refused the conversation (raise_exception, such as
		// a role-alternation check) or failed on it.
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
		return
	}
	o.Chat = tmpl
	runCompletion(w, r, c, req, prompt, o, true)
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func runCompletion(w http.ResponseWriter, r *http.Request, c Completer, req *oaiRequest, prompt string, o CompleteOptions, chat bool) {
	id, created := newID("cmpl-"), time.Now().Unix()
	object := "text_completion"
	if chat {
		id, object = newID("chatcmpl-"), "chat.completion"
	}
	choice := func(text string, finish *string, first bool) map[string]any {
		ch := map[string]any{"index": 0, "finish_reason": finish}
		switch {
		case chat && req.Stream:
			delta := map[string]any{}
			if first {
				delta["role"] = "assistant"
			}
			if text != "" {
				delta["content"] = text
			}
			ch["delta"] = delta
		case chat:
			ch["message"] = map[string]any{"role": "assistant", "content": text}
		default:
			ch["text"] = text
			ch["logprobs"] = nil
		}
		return ch
	}
	if !req.Stream {
		var text []byte
		res, err := c.Complete(r.Context(), prompt, o, func(s string) error {
			text = append(text, s...)
			return nil
		})
		if err != nil {
			writeCompletionError(w, err)
			return
		}
		f := string(res.Finish)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": object, "created": created, "model": c.Name(),
			"choices": []any{choice(string(text), &f, true)},
			"usage":   usage{res.PromptTokens, res.CompletionTokens, res.PromptTokens + res.CompletionTokens},
		})
		return
	}

	flusher, _ := w.(http.Flusher)
	started := false
	chunkObject := object
	if chat {
		chunkObject = "chat.completion.chunk"
	}
	send := func(text string, finish *string, first bool) error {
		if !started {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		b, _ := json.Marshal(map[string]any{
			"id": id, "object": chunkObject, "created": created, "model": c.Name(),
			"choices": []any{choice(text, finish, first)},
		})
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	// The first chunk of a chat stream carries the role alone, as
	// OpenAI's does. It goes out with the first text, so that a request the
	// model refuses (too long, say) still gets a plain error status.
	first := true
	roleFirst := func() error {
		if chat && first {
			first = false
			return send("", nil, true)
		}
		return nil
	}
	res, err := c.Complete(r.Context(), prompt, o, func(s string) error {
		if err := roleFirst(); err != nil {
			return err
		}
		err := send(s, nil, first)
		first = false
		return err
	})
	if err != nil {
		if !started {
			writeCompletionError(w, err)
			return
		}
		// Mid-stream: the status is sent; report the error as an event.
		b, _ := json.Marshal(oaiError{Error: oaiErrorBody{Message: err.Error(), Type: "server_error"}})
		fmt.Fprintf(w, "data: %s\n\n", b)
		return
	}
	f := string(res.Finish)
	if roleFirst() == nil && send("", &f, first) == nil {
		fmt.Fprint(w, "data: [DONE]\n\n")
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func writeCompletionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrContextLength):
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", err.Error())
	case errors.Is(err, api.ErrBadRequest):
		writeOAIError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
	default:
		writeOAIError(w, http.StatusInternalServerError, "server_error", "", err.Error())
	}
}
