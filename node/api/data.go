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
	"strconv"

	"github.com/mycel-net/mycel/train"
)

// ImportData sends a data set file to the node, which parses it
// (train.ParseData: a file that does not parse is refused with the
// parser's error and nothing is stored), stores it as blocks under name
// (may be empty), records it and announces it.
func (c *Client) ImportData(ctx context.Context, name string, file io.Reader) (DataImportResult, error) {
	var res DataImportResult
	path := "/data/import"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	resp, err := c.sendType(ctx, http.MethodPost, path, "application/octet-stream", file)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return res, fmt.Errorf("node API POST %s: bad answer: %w", path, err)
	}
	return res, nil
}

// PullData asks the node to fetch a data set from the peers that have it,
// calling progress with each progress line; it returns the pull's error,
// if any.
func (c *Client) PullData(ctx context.Context, req DataPullRequest, progress func(PullProgress)) error {
	b, _ := json.Marshal(req)
	resp, err := c.send(ctx, http.MethodPost, "/data/pull", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readLines(resp.Body, "data pull", func(p PullProgress) (bool, error) {
		if p.Error != "" {
			return false, errors.New(p.Error)
		}
		progress(p)
		return p.Done, nil
	})
}

// ListData returns the data sets the node keeps.
func (c *Client) ListData(ctx context.Context) ([]DataInfo, error) {
	var out []DataInfo
	err := c.do(ctx, http.MethodGet, "/data", nil, &out)
	return out, err
}

// DataInspectOptions say what inspecting a data set adds to its entry.
type DataInspectOptions struct {
	// Sample is how many of the first examples to show.
	Sample int
	// Model, a CID or a name the node knows, counts the tokens with
	// that model's tokenizer.
	Model string
}

// InspectData describes one data set (by CID or name).
func (c *Client) InspectData(ctx context.Context, ref string, o DataInspectOptions) (DataInfo, error) {
	q := url.Values{"sample": {strconv.Itoa(o.Sample)}}
	if o.Model != "" {
		q.Set("model", o.Model)
	}
	var out DataInfo
	err := c.do(ctx, http.MethodGet, "/data/"+url.PathEscape(ref)+"?"+q.Encode(), nil, &out)
	return out, err
}

// DataFile streams a data set's file (by CID or name) into w. The node
// fetches what it lacks from its peers first, and keeps the data set.
func (c *Client) DataFile(ctx context.Context, ref string, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/data/"+url.PathEscape(ref)+"/file", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return fmt.Errorf("data %s: %w", ref, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("data %s: %d of %d bytes", ref, n, resp.ContentLength)
	}
	return nil
}

// DataBytes returns a data set's file (by CID or name), from the node's
// store or, through the node, from its peers: what a trainer reads.
func (c *Client) DataBytes(ctx context.Context, ref string) ([]byte, error) {
	var b bytes.Buffer
	if err := c.DataFile(ctx, ref, &limitedWriter{w: &b, left: train.MaxDataBytes}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// RemoveData deletes a data set's blocks (those nothing else kept uses).
func (c *Client) RemoveData(ctx context.Context, ref string) (int, error) {
	var out struct {
		Deleted int `json:"deleted_blocks"`
	}
	err := c.do(ctx, http.MethodDelete, "/data/"+url.PathEscape(ref), nil, &out)
	return out.Deleted, err
}

// limitedWriter refuses to write past a bound.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("more than the %d bytes a data set may hold", train.MaxDataBytes)
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}
