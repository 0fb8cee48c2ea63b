package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client calls a node's control API.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client for the API at addr: a URL
// ("http://127.0.0.1:5150") or host:port.
func NewClient(addr string) *Client {
	if addr == "" {
		addr = DefaultAPIAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), hc: &http.Client{}}
}

// ErrNoNode means nothing answered at the API address.
var ErrNoNode = errors.New("no Mycel node is running there")

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
	req, err := http.NewRequestWithContext(ctx, method, c.base+APIPrefix+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: start one with `mycel node` (or point --api or %s at a running one)", ErrNoNode, c.base, EnvAPI)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e apiError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("node API %s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", nil, &st)
	return st, err
}
