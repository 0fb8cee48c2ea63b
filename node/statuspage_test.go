package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
)

// statusPageTools finds what the status page's browser test needs: node,
// the playwright-core package of tests/statuspage and Chromium. Where one
// is missing the test skips, saying how to get it; with CI=true it fails.
func statusPageTools(t *testing.T) (nodeBin, script, chromium string) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "tests", "statuspage", "check.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var missing []string
	if nodeBin, err = exec.LookPath("node"); err != nil {
		missing = append(missing, "Node.js (node)")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "playwright-core")); err != nil {
		missing = append(missing, "playwright-core: run `npm ci --prefix tests/statuspage`")
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, "Chromium at "+chromium+": run `apt-get install chromium` (or set $CHROMIUM)")
	}
	if len(missing) > 0 {
		msg := "the status page's browser test needs " + strings.Join(missing, "; ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return nodeBin, script, chromium
}

// statusPageResult is what tests/statuspage/check.mjs prints.
type statusPageResult struct {
	Status           int
	ContentType      string
	LoadSeconds      float64
	ShortID          string
	Spans            []string
	SwarmBars        int
	SwarmTitle       string
	LogLines         int
	State            string
	PauseSeconds     float64
	PausedReason     string
	ResumeVisible    bool
	ResumeSeconds    float64
	NodeStateAfter   string
	PauseVisible     bool
	PartError        string
	OthersAfterError bool
	LossPoints       int
	CreditServed     string
	CreditRows       int
	NarrowOverflow   int
	Shots            []string
	Problems         []string
}

// TestStatusPageInBrowser opens a volunteer's status page in headless
// Chromium while the volunteer serves a span of a model: the page shows
// its peer ID, its span and the swarm's map of the model, follows a pause
// made through the API within seconds (state and reason) and resumes from
// its own button. $MYCEL_STATUSPAGE_SHOTS keeps the screenshots there.
func TestStatusPageInBrowser(t *testing.T) {
	nodeBin, script, chromium := statusPageTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr, res := publish(ctx, t)
	v := startNode(t, testConfig(t, addr))
	if err := v.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:6", Threads: 1}); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("MYCEL_STATUSPAGE_SHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, nodeBin, script, v.APIURL(), v.Host().ID().String(), "0:6", shots)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.Output()
	var r statusPageResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("check.mjs: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("%s", out)
	if err != nil {
		t.Errorf("check.mjs: %v: %v", err, r.Problems)
	}
	if r.Status != 200 || r.ContentType != "text/html; charset=utf-8" {
		t.Errorf("the page: %d %q", r.Status, r.ContentType)
	}
	if len(r.Spans) != 1 || r.Spans[0] != "layers 0:6" || r.SwarmBars != builtinLayers || !strings.Contains(r.SwarmTitle, builtinName) {
		t.Errorf("the span and the map: %v, %d bars under %q; want layers 0:6 and %d bars for %s", r.Spans, r.SwarmBars, r.SwarmTitle, builtinLayers, builtinName)
	}
	if r.State != "working" || r.LogLines == 0 {
		t.Errorf("at start: state %q, %d log lines", r.State, r.LogLines)
	}
	if r.PauseSeconds > 4 || !strings.Contains(strings.ToLower(r.PausedReason), "pause") || !r.ResumeVisible {
		t.Errorf("the pause: shown after %.1f s with the reason %q (resume button shown: %v)", r.PauseSeconds, r.PausedReason, r.ResumeVisible)
	}
	if r.NodeStateAfter != "working" || !r.PauseVisible {
		t.Errorf("after the page's resume: the node is %q (pause button shown: %v)", r.NodeStateAfter, r.PauseVisible)
	}
	if st := v.Status(); st.State != "working" {
		t.Errorf("the node after the page resumed it: %q, %q", st.State, st.Reason)
	}
	if !strings.Contains(r.PartError, "the log is out of reach") || !r.OthersAfterError {
		t.Errorf("a failing part: %q, the rest still shown: %v", r.PartError, r.OthersAfterError)
	}
	if r.LossPoints != 30 {
		t.Errorf("a job's loss curve of 30 steps drawn with %d points", r.LossPoints)
	}
	if r.CreditServed != "1234" || r.CreditRows != 1 {
		t.Errorf("the credit card: %q tokens served in %d rows, want 1234 in 1", r.CreditServed, r.CreditRows)
	}
	if r.NarrowOverflow > 0 {
		t.Errorf("in a narrow window the page is %d px too wide", r.NarrowOverflow)
	}
}

// The status JSON has what the page draws: the node's reach, the span it
// serves and the counters it computes rates from, which grow as a client
// generates through the span.
func TestStatusActivity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr, res := publish(ctx, t)
	v := startNode(t, testConfig(t, addr))
	if err := v.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	before := rawStatus(ctx, t, v)
	if len(before.Serving) != 0 || before.Counters.SwarmTokens != 0 || before.Version == "" || before.Started.IsZero() ||
		before.Reach.Reachability != "unknown" || before.Reach.AutoNAT || before.Reach.RelayAddrs == nil {
		t.Errorf("a node that serves nothing yet, without AutoNAT: %+v", before)
	}
	if _, err := v.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:6", Threads: 1}); err != nil {
		t.Fatal(err)
	}
	st := rawStatus(ctx, t, v)
	if len(st.Serving) != 1 {
		t.Fatalf("serving %+v, want the one span", st.Serving)
	}
	sv := st.Serving[0]
	if sv.Model != res.CID || sv.Name != builtinName || sv.First != 0 || sv.Last != builtinLayers || sv.Layers != builtinLayers ||
		sv.Throughput <= 0 || sv.MemoryBudget <= 0 || sv.Sessions != 0 {
		t.Errorf("the span served: %+v", sv)
	}

	e := startNode(t, testConfig(t, addr))
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	sm, err := e.SwarmModel(ctx, res.CID)
	if err != nil {
		t.Fatal(err)
	}
	const tokens = 8
	if _, err := sm.Complete(ctx, "Once", openai.CompleteOptions{MaxTokens: tokens, IgnoreEOS: true}, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	after := rawStatus(ctx, t, v)
	c := after.Counters
	if c.SwarmTokens < tokens || c.SwarmPasses < tokens || c.Sessions < 1 || c.BytesSent <= before.Counters.BytesSent ||
		c.BytesReceived <= before.Counters.BytesReceived {
		t.Errorf("counters after %d tokens through the span: %+v", tokens, c)
	}
	infer := false
	var sum int64
	for i, p := range c.Protocols {
		sum += p.Received + p.Sent
		infer = infer || (strings.HasPrefix(p.Protocol, "/mycel/infer/") && p.Sent > 0 && p.Received > 0)
		if i > 0 && p.Received+p.Sent > c.Protocols[i-1].Received+c.Protocols[i-1].Sent {
			t.Errorf("protocols not sorted by bytes: %+v", c.Protocols)
		}
	}
	if !infer || sum != c.BytesReceived+c.BytesSent {
		t.Errorf("by protocol %+v: the inference protocol carried both ways: %v; the sum %d, want %d", c.Protocols, infer, sum, c.BytesReceived+c.BytesSent)
	}
	if after.Serving[0].Steps < 1 {
		t.Errorf("the span's steps after a generation: %+v", after.Serving[0])
	}
}

// rawStatus reads GET /api/v0/status as the page does, and checks that
// its JSON names every field the page reads.
func rawStatus(ctx context.Context, t *testing.T, n *Node) api.Status {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", n.APIURL()+api.Prefix+"/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var raw map[string]any
	if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(body, &raw) != nil {
		t.Fatalf("GET status: %v, %s: %s", err, resp.Status, body)
	}
	for _, k := range []string{"id", "addrs", "peers", "dht", "store_bytes", "store_cap", "data_dir", "version", "started",
		"reach", "serving", "counters", "state", "reason"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status JSON without %q: %s", k, body)
		}
	}
	for obj, keys := range map[string][]string{
		"reach":    {"autonat", "reachability", "relay_addrs", "nat_tcp", "nat_udp", "reachable", "unreachable"},
		"counters": {"swarm_tokens", "swarm_passes", "sessions", "sessions_open", "sessions_refused", "prompt_tokens", "completion_tokens", "bytes_received", "bytes_sent", "protocols", "block_bytes_received", "block_bytes_sent"},
	} {
		m, _ := raw[obj].(map[string]any)
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("status JSON: %s without %q: %s", obj, k, body)
			}
		}
	}
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
