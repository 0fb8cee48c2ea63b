package node

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p"
)

var update = flag.Bool("update", false, "rewrite docs/operations.md's table of metrics from metricDocs")

// scrape fetches n's /metrics as Prometheus does and returns each
// series's value by its name and labels as the text format writes them:
// `mycel_peers`, `mycel_blocks_total{direction="received"}`.
func scrape(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	resp, err := http.Get(n.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// family is the name of the metric of a series.
func family(series string) string {
	name, _, _ := strings.Cut(series, "{")
	return name
}

// A volunteer serves the whole built-in model and a client node generates
// through it: the /metrics of each tell what went on: the peers, the
// blocks the volunteer pulled, the bytes of the inference session's
// streams both ways, the tokens the volunteer computed and those the
// client answered; libp2p's own metrics are there beside them, and every
// mycel_ metric is one of metricDocs.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	cfg := func() Config {
		c := testConfig(t, addr)
		c.LookupInterval = 200 * time.Millisecond
		return c
	}
	v := startNode(t, cfg())
	if _, err := v.Serve(ctx, ServeRequest{Model: res.CID, Threads: 1}); err != nil {
		t.Fatal(err)
	}
	e := startNode(t, cfg())
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := e.SwarmStatus(ctx, res.CID)
		if err == nil && len(st.Missing) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the client never saw the volunteer: %+v, %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var done api.GenerateEvent
	err := api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: res.CID, Prompt: testmodels.BuiltinPrompt, MaxTokens: 20},
		func(ev api.GenerateEvent) error {
			if ev.Done {
				done = ev
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if done.CompletionTokens != 20 || done.PromptTokens == 0 {
		t.Fatalf("generation ended with %+v", done)
	}

	infer := func(dir string) string {
		return fmt.Sprintf(`mycel_stream_bytes_total{direction=%q,protocol=%q}`, dir, p2p.InferProtocol)
	}
	mv, me := scrape(t, v), scrape(t, e)
	for _, c := range []struct {
		node   string
		series string
		ok     func(float64) bool
		want   string
	}{
		{"volunteer", `mycel_info{version="` + Version + `"}`, eq(1), "1"},
		{"volunteer", "mycel_peers", atLeast(2), "≥ 2 (the bootstrap node, the client)"},
		{"volunteer", "mycel_swarm_layers", eq(builtinLayers), fmt.Sprint(builtinLayers)},
		{"volunteer", `mycel_blocks_total{direction="received"}`, atLeast(builtinLayers + 2), "a block per part at least"},
		{"volunteer", `mycel_block_bytes_total{direction="received"}`, atLeast(float64(v.Store().Size())), "the bytes its store holds at least"},
		{"volunteer", "mycel_store_bytes", atLeast(1), "> 0"},
		{"volunteer", infer("received"), atLeast(1), "> 0"},
		{"volunteer", infer("sent"), atLeast(1), "> 0"},
		// The prompt goes through in one pass (or a few), then one pass a
		// token; the last token is not fed back.
		{"volunteer", "mycel_swarm_tokens_total", atLeast(float64(done.PromptTokens + 19)), "≥ prompt + 19"},
		{"volunteer", "mycel_swarm_passes_total", atLeast(20), "≥ 20"},
		{"volunteer", "mycel_swarm_sessions_total", atLeast(1), "≥ 1"},
		{"volunteer", "mycel_swarm_sessions_refused_total", eq(0), "0"},
		{"volunteer", `mycel_tokens_total{api="generate",kind="completion"}`, eq(0), "0: it answered nobody"},
		{"client", "mycel_swarm_layers", eq(0), "0"},
		{"client", infer("sent"), atLeast(1), "> 0"},
		{"client", infer("received"), atLeast(1), "> 0"},
		{"client", `mycel_tokens_total{api="generate",kind="completion"}`, eq(20), "20"},
		{"client", `mycel_tokens_total{api="generate",kind="prompt"}`, eq(float64(done.PromptTokens)), fmt.Sprint(done.PromptTokens)},
		{"client", `mycel_tokens_total{api="openai",kind="completion"}`, eq(0), "0"},
	} {
		m := mv
		if c.node == "client" {
			m = me
		}
		got, ok := m[c.series]
		if !ok || !c.ok(got) {
			t.Errorf("%s: %s = %v (present %v), want %s", c.node, c.series, got, ok, c.want)
		}
	}
	documented := map[string]bool{}
	for _, d := range metricDocs {
		documented[d.Name] = true
	}
	served, libp2p := map[string]bool{}, 0
	for series := range mv {
		name := family(series)
		switch {
		case strings.HasPrefix(name, "mycel_"):
			if !documented[name] {
				t.Errorf("%s is served but not in metricDocs", name)
			}
			served[name] = true
		case strings.HasPrefix(name, "libp2p_"):
			libp2p++
		}
	}
	for name := range documented {
		if !served[name] {
			t.Errorf("%s is in metricDocs but the volunteer does not serve it", name)
		}
	}
	if libp2p == 0 {
		t.Error("no libp2p_ metric among the volunteer's")
	}
}

func eq(want float64) func(float64) bool      { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

// The table of metrics in docs/operations.md is metricDocs; with -update
// the test writes it there.
func TestMetricsDocumented(t *testing.T) {
	const path = "../docs/operations.md"
	const begin, end = "<!-- metrics: go test ./node -run TestMetricsDocumented -update -->\n", "<!-- end of metrics -->\n"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q around its table of metrics", path, strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	var b strings.Builder
	b.WriteString("| metric | type | labels | what it counts |\n|---|---|---|---|\n")
	for _, d := range metricDocs {
		labels := make([]string, len(d.Labels))
		for k, l := range d.Labels {
			labels[k] = "`" + l + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, d.Type, strings.Join(labels, ", "), strings.ReplaceAll(d.Help, "|", `\|`))
	}
	want := s[:i+len(begin)] + b.String() + s[j:]
	if want == s {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's table of metrics is not metricDocs'; go test ./node -run TestMetricsDocumented -update rewrites it:\n%s", path, b.String())
}

// Each metric of metricDocs has a name, a type Prometheus knows and a
// help text, once.
func TestMetricDocs(t *testing.T) {
	var names []string
	for _, d := range metricDocs {
		if !strings.HasPrefix(d.Name, "mycel_") || d.Help == "" || !slices.Contains([]string{"counter", "gauge"}, d.Type) ||
			(d.Type == "counter") != strings.HasSuffix(d.Name, "_total") {
			t.Errorf("metric %+v", d)
		}
		if slices.Contains(names, d.Name) {
			t.Errorf("%s twice", d.Name)
		}
		names = append(names, d.Name)
	}
}
