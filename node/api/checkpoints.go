package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/mycel-net/mycel/checkpoints/trainstate"
)

// CheckpointInfo describes a training checkpoint the node keeps
// (checkpoints/trainstate): the manifest's summary, and how much of its
// state is here.
type CheckpointInfo struct {
	ModelEntry
	Method string `json:"method"`
	Step   int    `json:"step"`
	Steps  int    `json:"steps"`
	// Base and Data are the CIDs of the base model and the data set, when
	// the trainer read them as CIDs.
	Base string `json:"base,omitempty"`
	Data string `json:"data,omitempty"`
	// Bytes is the state's size.
	Bytes int64 `json:"bytes"`
	// LocalBlocks of TotalBlocks blocks of the state are here; Whole: all
	// of them, and the manifest.
	LocalBlocks int  `json:"local_blocks"`
	TotalBlocks int  `json:"total_blocks"`
	Whole       bool `json:"whole"`
}

// PutCheckpoint sends a trainer's checkpoint file (train.WriteCheckpoint)
// to the node, which checks it, stores it as blocks under a manifest
// (kept under name, may be empty), and announces it. The answer's CID
// names the checkpoint.
func (c *Client) PutCheckpoint(ctx context.Context, name string, state io.Reader) (CheckpointInfo, error) {
	var res CheckpointInfo
	path := "/checkpoints"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	resp, err := c.sendType(ctx, http.MethodPost, path, "application/octet-stream", state)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return res, fmt.Errorf("node API POST %s: bad answer: %w", path, err)
	}
	return res, nil
}

// ListCheckpoints returns the checkpoints the node keeps, oldest first.
func (c *Client) ListCheckpoints(ctx context.Context) ([]CheckpointInfo, error) {
	var out []CheckpointInfo
	err := c.do(ctx, http.MethodGet, "/checkpoints", nil, &out)
	return out, err
}

// InspectCheckpoint describes one checkpoint: by CID, or by a name, which
// stands for the latest checkpoint kept under it.
func (c *Client) InspectCheckpoint(ctx context.Context, ref string) (CheckpointInfo, error) {
	var out CheckpointInfo
	err := c.do(ctx, http.MethodGet, "/checkpoints/"+url.PathEscape(ref), nil, &out)
	return out, err
}

// CheckpointState returns a checkpoint's state file (by CID or name),
// from the node's store or, through the node, from its peers (and then
// kept).
func (c *Client) CheckpointState(ctx context.Context, ref string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, "/checkpoints/"+url.PathEscape(ref)+"/state", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > trainstate.MaxStateBytes {
		return nil, fmt.Errorf("checkpoint %s: %d bytes, more than a checkpoint may hold (%d)", ref, resp.ContentLength, int64(trainstate.MaxStateBytes))
	}
	var b bytes.Buffer
	if resp.ContentLength > 0 {
		b.Grow(int(resp.ContentLength))
	}
	n, err := io.Copy(&b, io.LimitReader(resp.Body, trainstate.MaxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", ref, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, fmt.Errorf("checkpoint %s: %d of %d bytes", ref, n, resp.ContentLength)
	}
	return b.Bytes(), nil
}

// RemoveCheckpoint forgets a checkpoint and deletes its blocks (those
// nothing else kept uses).
func (c *Client) RemoveCheckpoint(ctx context.Context, ref string) (int, error) {
	var out struct {
		Deleted int `json:"deleted_blocks"`
	}
	err := c.do(ctx, http.MethodDelete, "/checkpoints/"+url.PathEscape(ref), nil, &out)
	return out.Deleted, err
}
