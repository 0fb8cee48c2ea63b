package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Client calls a node's control API.
type Client struct {
	base  string
	token string // sent as a bearer token when not empty
	hc    *http.Client
}

// NewClient returns a client for the API at addr: a URL
// ("http://127.0.0.1:5150") or host:port.
func NewClient(addr string) *Client {
	if addr == "" {
		addr = DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), hc: &http.Client{}}
}

// WithToken returns a copy of c that sends token with every request, as
// "Authorization: Bearer TOKEN" (none when token is empty). A node whose
// API listens on more than loopback refuses requests without its token
// (TokenFile, ReadToken).
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("node API %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns the response if its status is 2xx; the
// caller closes the body. Other statuses become errors carrying the API's
// message.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	return c.sendType(ctx, method, path, "application/json", body)
}

// sendType is send with a body of another content type.
func (c *Client) sendType(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+Prefix+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, syscall.ECONNREFUSED):
			// Nothing listens there.
			return nil, fmt.Errorf("%w at %s: start one with `mycel node` (or point --api or %s at a running one)", ErrNoNode, c.base, EnvAddr)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("node API %s %s: the node at %s closed the connection without answering (its log says why)", method, path, c.base)
		}
		return nil, fmt.Errorf("node API %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, &StatusError{Status: resp.StatusCode, Message: e.Error}
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: fmt.Sprintf("node API %s %s: %s", method, path, resp.Status)}
	}
	return resp, nil
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", nil, &st)
	return st, err
}

// Pause pauses the node's work for d (0: until Resume) and returns its
// work state.
func (c *Client) Pause(ctx context.Context, d time.Duration) (WorkState, error) {
	var req PauseRequest
	if d > 0 {
		req.For = d.String()
	}
	b, err := json.Marshal(req)
	if err != nil {
		return WorkState{}, err
	}
	var st WorkState
	err = c.do(ctx, http.MethodPost, "/pause", bytes.NewReader(b), &st)
	return st, err
}

// Resume ends the volunteer's pause and returns the node's work state,
// which may still be suspended for other reasons.
func (c *Client) Resume(ctx context.Context) (WorkState, error) {
	var st WorkState
	err := c.do(ctx, http.MethodPost, "/resume", nil, &st)
	return st, err
}

// Import asks the node to import a model file on its disk.
func (c *Client) Import(ctx context.Context, req ImportRequest) (ImportResult, error) {
	var res ImportResult
	b, _ := json.Marshal(req)
	err := c.do(ctx, http.MethodPost, "/models/import", strings.NewReader(string(b)), &res)
	return res, err
}

// Pull asks the node to fetch a model, calling progress with each progress
// line; it returns the pull's error, if any.
func (c *Client) Pull(ctx context.Context, req PullRequest, progress func(PullProgress)) error {
	b, _ := json.Marshal(req)
	resp, err := c.send(ctx, http.MethodPost, "/models/pull", strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readLines(resp.Body, "pull", func(p PullProgress) (bool, error) {
		if p.Error != "" {
			return false, errors.New(p.Error)
		}
		progress(p)
		return p.Done, nil
	})
}

// readLines decodes a stream of JSON lines of type T, calling each with
// every line until it reports the stream done or fails; a stream that
// ends before that is an error.
func readLines[T any](r io.Reader, what string, each func(T) (done bool, err error)) error {
	dec := json.NewDecoder(r)
	for {
		var v T
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%s: the node ended the answer without saying done", what)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		if done, err := each(v); err != nil || done {
			return err
		}
	}
}

// List returns the models the node keeps.
func (c *Client) List(ctx context.Context) ([]ModelInfo, error) {
	var out []ModelInfo
	err := c.do(ctx, http.MethodGet, "/models", nil, &out)
	return out, err
}

// Resolve asks the node for the CID of a model reference: a CID, or the
// name of a model the node knows.
func (c *Client) Resolve(ctx context.Context, ref string) (ModelEntry, error) {
	var out ModelEntry
	err := c.do(ctx, http.MethodGet, "/resolve/"+url.PathEscape(ref), nil, &out)
	return out, err
}

// Inspect describes one model (by CID or name) and which of its parts are
// local.
func (c *Client) Inspect(ctx context.Context, ref string) (ModelInfo, error) {
	var out ModelInfo
	err := c.do(ctx, http.MethodGet, "/models/"+url.PathEscape(ref), nil, &out)
	return out, err
}

// Remove deletes a model's blocks (those no other kept model uses).
func (c *Client) Remove(ctx context.Context, ref string) (int, error) {
	var out struct {
		Deleted int `json:"deleted_blocks"`
	}
	err := c.do(ctx, http.MethodDelete, "/models/"+url.PathEscape(ref), nil, &out)
	return out.Deleted, err
}

// Export streams a model (by CID or name) as GGUF into w. An error the
// node meets while streaming (ExportErrorTrailer) is returned; w then
// holds a partial file.
func (c *Client) Export(ctx context.Context, ref string, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/models/"+url.PathEscape(ref)+"/gguf", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	if msg := resp.Trailer.Get(ExportErrorTrailer); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// Block reads a block the node holds (it does not fetch from peers).
func (c *Client) Block(ctx context.Context, cidStr string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/blocks/"+cidStr, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 4<<20))
}

// GC asks the node to remove the blocks no kept model, data set or
// unfinished pull uses (with req.DryRun, only to count them).
func (c *Client) GC(ctx context.Context, req GCRequest) (GCResult, error) {
	var res GCResult
	b, _ := json.Marshal(req)
	err := c.do(ctx, http.MethodPost, "/store/gc", bytes.NewReader(b), &res)
	return res, err
}

// Generate runs a generation through the swarm on the node (POST
// /api/v0/generate), calling on with each event of the stream.
func (c *Client) Generate(ctx context.Context, req GenerateRequest, on func(GenerateEvent) error) error {
	b, _ := json.Marshal(req)
	resp, err := c.send(ctx, http.MethodPost, "/generate", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readLines(resp.Body, "generate", func(ev GenerateEvent) (bool, error) {
		if ev.Error != "" {
			return false, errors.New(ev.Error)
		}
		return ev.Done, on(ev)
	})
}

// SwarmStatus asks the node for the servers of a model.
func (c *Client) SwarmStatus(ctx context.Context, ref string) (SwarmStatus, error) {
	var st SwarmStatus
	err := c.do(ctx, http.MethodGet, "/swarm/"+url.PathEscape(ref), nil, &st)
	return st, err
}
