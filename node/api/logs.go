package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// LogRecord is a record of the node's log, as GET /api/v0/logs answers
// it: the node keeps its last records (those its level lets through) in
// memory.
type LogRecord struct {
	// Seq numbers the node's records from 1, in the order written; a gap
	// between the since asked for and the first Seq answered means
	// records fell out of the memory first.
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Level string    `json:"level"` // debug, info, warn or error
	// Sys is the subsystem that wrote it: node, swarm, p2p, blocks,
	// records, or one of libp2p's (dht, bitswap, basichost...).
	Sys   string         `json:"sys,omitempty"`
	Msg   string         `json:"msg"`
	Attrs map[string]any `json:"attrs,omitempty"`
}

// Logs fetches the node's log records after since (0: all it keeps), at
// level or above ("" for all), oldest first.
func (c *Client) Logs(ctx context.Context, since uint64, level string) ([]LogRecord, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	if level != "" {
		q.Set("level", level)
	}
	path := "/logs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var recs []LogRecord
	err := c.do(ctx, http.MethodGet, path, nil, &recs)
	return recs, err
}
