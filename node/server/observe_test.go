package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/node/api"
)

// obsBackend keeps log records and answers metrics.
type obsBackend struct {
	Backend
	recs []api.LogRecord
}

func (b *obsBackend) Logs(since uint64, level string) ([]api.LogRecord, error) {
	if level != "" && level != "warn" {
		return nil, fmt.Errorf("%w: log level %q", api.ErrBadRequest, level)
	}
	var out []api.LogRecord
	for _, r := range b.recs {
		if r.Seq > since && (level == "" || r.Level == "warn") {
			out = append(out, r)
		}
	}
	return out, nil
}

func (b *obsBackend) Metrics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "mycel_peers 3")
	})
}

func observed(t *testing.T, addr string) *httptest.Server {
	t.Helper()
	g, err := NewGuard(GuardConfig{Addr: addr, Token: testToken, TokenFile: "/data/api-token"})
	if err != nil {
		t.Fatal(err)
	}
	b := &obsBackend{recs: []api.LogRecord{
		{Seq: 1, Level: "info", Sys: "node", Msg: "a"},
		{Seq: 2, Level: "warn", Sys: "swarm", Msg: "b", Attrs: map[string]any{"n": 1}},
		{Seq: 3, Level: "info", Msg: "c"},
	}}
	srv := httptest.NewServer(g.Wrap(Handler(b)))
	t.Cleanup(srv.Close)
	return srv
}

// The logs endpoint answers the records after since, filtered by level,
// through the client; a bad since or level is a 400.
func TestLogsRoute(t *testing.T) {
	srv := observed(t, "127.0.0.1:5150")
	c := api.NewClient(srv.URL)
	for _, tc := range []struct {
		since uint64
		level string
		want  string
	}{{0, "", "abc"}, {1, "", "bc"}, {3, "", ""}, {0, "warn", "b"}} {
		recs, err := c.Logs(t.Context(), tc.since, tc.level)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, r := range recs {
			got += r.Msg
		}
		if got != tc.want {
			t.Errorf("since %d level %q: %q, want %q", tc.since, tc.level, got, tc.want)
		}
	}
	recs, _ := c.Logs(t.Context(), 1, "warn")
	if len(recs) != 1 || recs[0].Sys != "swarm" || recs[0].Attrs["n"] != 1.0 {
		t.Errorf("record %+v", recs)
	}
	if resp, body := call(t, srv, "GET", "/api/v0/logs?since=3", ""); resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("nothing new: %s %q, want []", resp.Status, body)
	}
	if resp, body := call(t, srv, "GET", "/api/v0/logs?since=-1", ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("since=-1: %s %s", resp.Status, body)
	}
	if _, err := c.Logs(t.Context(), 0, "loud"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("level loud: %v", err)
	}
}

// /metrics is at the root, behind the guard: on loopback it answers
// without the token, off loopback only with it, and never a name of
// another site.
func TestMetricsGuarded(t *testing.T) {
	srv := observed(t, "127.0.0.1:5150")
	if resp, body := call(t, srv, "GET", "/metrics", ""); resp.StatusCode != http.StatusOK || body != "mycel_peers 3\n" {
		t.Errorf("loopback: %s %q", resp.Status, body)
	}
	if resp, _ := call(t, srv, "GET", "/metrics", "", "Host", "evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("Host evil.example: %s", resp.Status)
	}
	srv = observed(t, "0.0.0.0:5150")
	if resp, body := call(t, srv, "GET", "/metrics", ""); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "/data/api-token") {
		t.Errorf("off loopback without the token: %s %s", resp.Status, body)
	}
	if resp, body := call(t, srv, "GET", "/metrics", "", "Authorization", "Bearer "+testToken); resp.StatusCode != http.StatusOK || body != "mycel_peers 3\n" {
		t.Errorf("off loopback with the token: %s %q", resp.Status, body)
	}
}
