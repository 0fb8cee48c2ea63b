package node

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node/api"
)

// A running node serves the process's last log records over its API:
// those after since, oldest first, with their subsystem and attributes,
// at a level or above; a level it does not know is a 400 that says which
// it knows.
func TestLogs(t *testing.T) {
	n := startNode(t, testConfig(t))
	c := api.NewClient(n.APIURL())
	ctx := t.Context()
	all, err := c.Logs(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	// The node's own start wrote at least its host's line.
	var started bool
	for _, r := range all {
		started = started || r.Sys == "p2p" && r.Msg == "host started" && r.Attrs["peer"] == n.Host().ID().String()
	}
	if !started {
		t.Errorf("no host started record among %d", len(all))
	}
	last := all[len(all)-1].Seq

	tlog := logging.Logger("node")
	tlog.Info("logs test info", "n", 1)
	tlog.Warn("logs test warn", "err", errors.New("boom"))
	tlog.Debug("logs test debug") // below the default level: not kept
	got, err := c.Logs(ctx, last, "")
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, r := range got {
		if strings.HasPrefix(r.Msg, "logs test") {
			msgs = append(msgs, r.Level+" "+r.Msg)
		}
		if r.Seq <= last {
			t.Errorf("record %d answered for since=%d", r.Seq, last)
		}
	}
	if strings.Join(msgs, "; ") != "info logs test info; warn logs test warn" {
		t.Errorf("since %d: %q", last, msgs)
	}
	if len(got) < 2 || got[0].Msg != "logs test info" || got[0].Sys != "node" || got[0].Attrs["n"] != 1.0 || got[0].Time.IsZero() {
		t.Errorf("first record after %d: %+v", last, got)
	}

	warns, err := c.Logs(ctx, last, "warn")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].Msg != "logs test warn" || warns[0].Attrs["err"] != "boom" {
		t.Errorf("at warn since %d: %+v", last, warns)
	}
	if rest, err := c.Logs(ctx, warns[0].Seq, ""); err != nil || len(rest) != 0 {
		t.Errorf("since the last record: %+v, %v", rest, err)
	}

	_, err = c.Logs(ctx, 0, "loud")
	if !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), `log level "loud": want debug, info, warn or error`) {
		t.Errorf("level loud: %v", err)
	}
	resp, err := http.Get(n.APIURL() + api.Prefix + "/logs?level=loud")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, `log level "loud"`) {
		t.Errorf("GET /logs?level=loud: %s %s", resp.Status, body)
	}
}
