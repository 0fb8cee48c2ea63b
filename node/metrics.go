package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
	"github.com/mycel-net/mycel/node/server"
	"github.com/mycel-net/mycel/node/work"
	"github.com/mycel-net/mycel/swarm"
)

// The node's metrics, served at /metrics in Prometheus's text format.
// Each node has a registry of its own, so that the nodes of one process
// (tests) keep their values apart; beside Mycel's metrics it holds those
// of the Go runtime and the process, and those libp2p registers for its
// host (p2p.Metrics), which libp2p keeps process-wide.
//
// metricDocs is the one list of Mycel's metrics: every metric is made
// from its entry, and docs/operations.md's table is checked against it
// (TestMetricsDocumented; go test ./node -run TestMetricsDocumented
// -update rewrites the table).

// metricDoc describes one metric.
type metricDoc struct {
	Name   string
	Type   string // "counter" or "gauge"
	Labels []string
	Help   string
}

var metricDocs = []metricDoc{
	{"mycel_info", "gauge", []string{"version"}, "Always 1; the software version is its label."},
	{"mycel_peers", "gauge", nil, "Peers connected."},
	{"mycel_dht_peers", "gauge", []string{"dht"}, "Peers in the routing table of the LAN or the WAN DHT (dht=lan|wan)."},
	{"mycel_store_bytes", "gauge", nil, "Bytes of blocks in the block store."},
	{"mycel_store_cap_bytes", "gauge", nil, "The block store's cap in bytes (--store-cap; 0: no cap)."},
	{"mycel_threads_cap", "gauge", nil, "The compute threads each span served, completion and training job may use (--threads; 0: every core)."},
	{"mycel_bandwidth_cap_bytes_per_second", "gauge", []string{"direction"}, "The bytes a second the node's streams may send or receive (--max-upload, --max-download; direction=upload|download; 0: no cap)."},
	{"mycel_transfer_today_bytes", "gauge", nil, "Bytes the node's streams sent and received since local midnight, counted against --daily-transfer."},
	{"mycel_daily_transfer_cap_bytes", "gauge", nil, "The bytes a day the node may send and receive (--daily-transfer; 0: no cap); once they are spent the node is over-limit until midnight."},
	{"mycel_models", "gauge", nil, "Models kept: imported or pulled."},
	{"mycel_datasets", "gauge", nil, "Data sets kept."},
	{"mycel_checkpoints", "gauge", nil, "Training checkpoints kept."},
	{"mycel_blocks_total", "counter", []string{"direction"}, "Blocks the block exchange received from peers or sent them, over bitswap and block streams (direction=received|sent)."},
	{"mycel_block_bytes_total", "counter", []string{"direction"}, "Bytes of those blocks."},
	{"mycel_stream_bytes_total", "counter", []string{"protocol", "direction"}, "Bytes the node's libp2p streams carried, by protocol: /mycel/infer/1 for inference sessions, the block streams, bitswap, the DHT, pubsub... (direction=received|sent)."},
	{"mycel_swarm_layers", "gauge", nil, "Layers the node serves to the swarm now (--serve)."},
	{"mycel_swarm_tokens_total", "counter", nil, "Tokens the node's served layers computed for the swarm's sessions: every position of a prompt or a generation that went through them (a batch counts each of its rows)."},
	{"mycel_swarm_passes_total", "counter", nil, "Forward passes the node's served layers ran; a batch of several sessions' steps is one."},
	{"mycel_swarm_sessions_open", "gauge", nil, "Sessions of the swarm the node's servers hold open."},
	{"mycel_swarm_sessions_total", "counter", nil, "Sessions of the swarm the node's servers opened."},
	{"mycel_swarm_sessions_refused_total", "counter", nil, "Sessions the node's servers refused for lack of memory."},
	{"mycel_train_steps_total", "counter", nil, "Optimizer steps this node took in swarm fine-tuning jobs (--train), as a member of their groups."},
	{"mycel_work_state", "gauge", []string{"state"}, "1 for the node's work state now, 0 for the others: working, or the first reason it does not work (state=working|paused|over-limit|off-schedule|busy)."},
	{"mycel_suspensions_total", "counter", []string{"reason"}, "Suspensions of the node's work that began, by reason (reason=paused|over-limit|off-schedule|busy); one that begins while another holds counts too."},
	{"mycel_tokens_total", "counter", []string{"api", "kind"}, "Tokens of the completions the node answered: api=openai (/v1) or generate (/api/v0/generate), kind=prompt or completion."},
}

// metricDocOf is the entry of name; a metric without one is a bug.
func metricDocOf(name string) metricDoc {
	for _, d := range metricDocs {
		if d.Name == name {
			return d
		}
	}
	panic("node: metric " + name + " is not in metricDocs")
}

func metricDesc(name string) *prometheus.Desc {
	d := metricDocOf(name)
	return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)
}

func counterVec(name string) *prometheus.CounterVec {
	d := metricDocOf(name)
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

// metrics are the node's own metrics: counters of events, and a
// collector that reads the rest from the node at each scrape.
type metrics struct {
	n          *Node
	reg        *prometheus.Registry
	handler    http.Handler
	serve      swarm.Counters // every server's of the node (ServeRequest.Server.Counters)
	tokens     *prometheus.CounterVec
	trainSteps prometheus.Counter
	descs      map[string]*prometheus.Desc // those Collect reads from the node
}

// read is the list of metrics metrics.Collect reads from the node.
var read = []string{
	"mycel_info", "mycel_peers", "mycel_dht_peers", "mycel_store_bytes", "mycel_store_cap_bytes",
	"mycel_threads_cap", "mycel_bandwidth_cap_bytes_per_second", "mycel_transfer_today_bytes", "mycel_daily_transfer_cap_bytes",
	"mycel_models", "mycel_datasets", "mycel_checkpoints",
	"mycel_blocks_total", "mycel_block_bytes_total", "mycel_stream_bytes_total",
	"mycel_swarm_layers", "mycel_swarm_tokens_total", "mycel_swarm_passes_total",
	"mycel_swarm_sessions_open", "mycel_swarm_sessions_total", "mycel_swarm_sessions_refused_total",
	"mycel_work_state", "mycel_suspensions_total",
}

func newMetrics(n *Node) *metrics {
	m := &metrics{n: n, reg: prometheus.NewRegistry(), descs: map[string]*prometheus.Desc{},
		tokens: counterVec("mycel_tokens_total")}
	d := metricDocOf("mycel_train_steps_total")
	m.trainSteps = prometheus.NewCounter(prometheus.CounterOpts{Name: d.Name, Help: d.Help})
	for _, name := range read {
		m.descs[name] = metricDesc(name)
	}
	for _, a := range []string{"openai", "generate"} {
		for _, k := range []string{"prompt", "completion"} {
			m.tokens.WithLabelValues(a, k) // at zero from the start
		}
	}
	m.reg.MustRegister(m, m.tokens, m.trainSteps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: promLog{}})
	return m
}

// promLog hands promhttp's errors to the node's log.
type promLog struct{}

func (promLog) Println(v ...any) { log.Warn("metrics", "err", fmt.Sprint(v...)) }

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	n := m.n
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], prometheus.CounterValue, v, labels...)
	}
	gauge("mycel_info", 1, Version)
	if n.host != nil {
		gauge("mycel_peers", float64(len(n.host.Libp2p().Network().Peers())))
		d := n.host.DHTStatus()
		gauge("mycel_dht_peers", float64(d.LAN.Peers), "lan")
		gauge("mycel_dht_peers", float64(d.WAN.Peers), "wan")
		if t := n.host.Traffic(); t != nil {
			for _, pb := range t.ByProtocol() {
				counter("mycel_stream_bytes_total", float64(pb.In), string(pb.Protocol), "received")
				counter("mycel_stream_bytes_total", float64(pb.Out), string(pb.Protocol), "sent")
			}
		}
	}
	if n.store != nil {
		gauge("mycel_store_bytes", float64(n.store.Size()))
		gauge("mycel_store_cap_bytes", float64(n.store.Cap()))
	}
	gauge("mycel_threads_cap", float64(n.cfg.Threads))
	gauge("mycel_bandwidth_cap_bytes_per_second", float64(n.cfg.MaxUpload), "upload")
	gauge("mycel_bandwidth_cap_bytes_per_second", float64(n.cfg.MaxDownload), "download")
	gauge("mycel_daily_transfer_cap_bytes", float64(n.cfg.DailyTransfer))
	if n.transfer != nil {
		today, _ := n.transfer.today()
		gauge("mycel_transfer_today_bytes", float64(today))
	}
	for name, r := range map[string]*registry{"mycel_models": n.models, "mycel_datasets": n.data, "mycel_checkpoints": n.ckpts} {
		if r != nil {
			gauge(name, float64(len(r.entries())))
		}
	}
	if n.ex != nil {
		if st, err := n.ex.Stats(); err == nil {
			counter("mycel_blocks_total", float64(st.BlocksReceived), "received")
			counter("mycel_blocks_total", float64(st.BlocksSent), "sent")
			counter("mycel_block_bytes_total", float64(st.DataReceived), "received")
			counter("mycel_block_bytes_total", float64(st.DataSent), "sent")
		}
	}
	layers := 0
	n.swarmMu.Lock()
	for _, e := range n.servings {
		layers += e.s.Span().Len()
	}
	n.swarmMu.Unlock()
	gauge("mycel_swarm_layers", float64(layers))
	c := &m.serve
	counter("mycel_swarm_tokens_total", float64(c.Positions.Load()))
	counter("mycel_swarm_passes_total", float64(c.Passes.Load()))
	gauge("mycel_swarm_sessions_open", float64(c.Open.Load()))
	if n.work != nil {
		state := n.work.Snapshot().State
		for _, w := range work.Words {
			gauge("mycel_work_state", b2f(w == state), w)
		}
		if !slices.Contains(work.Words, state) {
			gauge("mycel_work_state", 1, state)
		}
		counts := n.work.Counts()
		for _, w := range n.work.CountedWords() {
			counter("mycel_suspensions_total", float64(counts[w]), w)
		}
	}
	counter("mycel_swarm_sessions_total", float64(c.Sessions.Load()))
	counter("mycel_swarm_sessions_refused_total", float64(c.Refused.Load()))
}

// Metrics serves the node's metrics in Prometheus's text format.
func (n *Node) Metrics() http.Handler { return n.metrics.handler }

// MetricsRegistry is the node's registry, for a caller to add metrics of
// its own beside the node's.
func (n *Node) MetricsRegistry() *prometheus.Registry { return n.metrics.reg }

// apiBackend is the node as its HTTP APIs see it: the node, counting the
// tokens of the completions it answers.
type apiBackend struct{ *Node }

var _ server.Backend = apiBackend{}

func (b apiBackend) Completer(ctx context.Context, name string) (openai.Completer, error) {
	c, err := b.Node.Completer(ctx, name)
	if err != nil {
		return nil, err
	}
	return countingCompleter{c, b.metrics.tokens}, nil
}

func (b apiBackend) Generate(ctx context.Context, req api.GenerateRequest) (func(send func(api.GenerateEvent) error) api.GenerateEvent, error) {
	run, err := b.Node.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	return func(send func(api.GenerateEvent) error) api.GenerateEvent {
		ev := run(send)
		if ev.Done {
			b.metrics.tokens.WithLabelValues("generate", "prompt").Add(float64(ev.PromptTokens))
			b.metrics.tokens.WithLabelValues("generate", "completion").Add(float64(ev.CompletionTokens))
		}
		return ev
	}, nil
}

// countingCompleter counts the tokens of the completions c answers.
type countingCompleter struct {
	openai.Completer
	tokens *prometheus.CounterVec
}

func (c countingCompleter) Complete(ctx context.Context, prompt string, o openai.CompleteOptions, emit func(string) error) (openai.CompleteResult, error) {
	res, err := c.Completer.Complete(ctx, prompt, o, emit)
	if err == nil {
		c.tokens.WithLabelValues("openai", "prompt").Add(float64(res.PromptTokens))
		c.tokens.WithLabelValues("openai", "completion").Add(float64(res.CompletionTokens))
	}
	return res, err
}

// b2f is 1 for true, 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
