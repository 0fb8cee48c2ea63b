package node

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mycel-net/mycel/node/api"
)

// activity fills in what st says of the node beyond its identity and
// stores: its version, how peers reach it, the spans it serves and the
// running totals of its work.
func (n *Node) activity(st *api.Status) {
	st.Version, st.Started = Version, n.started
	r := n.host.Reach()
	st.Reach = api.Reach{AutoNAT: r.AutoNAT, Reachability: r.Reachability, RelayAddrs: r.RelayAddrs,
		NATTCP: r.NATTCP, NATUDP: r.NATUDP, Reachable: r.Reachable, Unreachable: r.Unreachable}
	st.Serving = n.servingStatus()
	st.Counters = n.counters()
}

// servingStatus describes every span the node serves, in the order
// served.
func (n *Node) servingStatus() []api.Serving {
	n.swarmMu.Lock()
	servings := make([]servingEntry, len(n.servings))
	copy(servings, n.servings)
	n.swarmMu.Unlock()
	out := []api.Serving{}
	for _, e := range servings {
		cfg, span := e.s.Config(), e.s.Span()
		s := api.Serving{Model: cfg.Model, First: span.First, Last: span.Last, Layers: cfg.Layers,
			Throughput: e.s.Throughput()}
		if m, err := n.Resolve(cfg.Model); err == nil {
			s.Name = m.Name
		}
		if srv := e.s.Server(); srv != nil {
			st := srv.Stats()
			s.Sessions, s.ReservedBytes, s.Steps = st.Sessions, st.ReservedBytes, st.Steps
			s.MemoryBudget = srv.Config().MemoryBudget
		}
		out = append(out, s)
	}
	return out
}

// counters reads the running totals /metrics reports.
func (n *Node) counters() api.Counters {
	c := &n.metrics.serve
	out := api.Counters{SwarmTokens: c.Positions.Load(), SwarmPasses: c.Passes.Load(),
		Sessions: c.Sessions.Load(), SessionsOpen: c.Open.Load(), SessionsRefused: c.Refused.Load(),
		Protocols: []api.ProtocolBytes{}}
	// The token counters are Prometheus's own: read through a registry
	// of their own.
	reg := prometheus.NewRegistry()
	if err := reg.Register(n.metrics.tokens); err == nil {
		if mfs, err := reg.Gather(); err == nil {
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() != "kind" {
							continue
						}
						v := int64(m.GetCounter().GetValue())
						switch l.GetValue() {
						case "prompt":
							out.PromptTokens += v
						case "completion":
							out.CompletionTokens += v
						}
					}
				}
			}
		}
	}
	if t := n.host.Traffic(); t != nil {
		for _, pb := range t.ByProtocol() {
			p := api.ProtocolBytes{Protocol: string(pb.Protocol), Received: int64(pb.In), Sent: int64(pb.Out)}
			if p.Protocol == "" {
				p.Protocol = "(negotiating)"
			}
			out.BytesReceived += p.Received
			out.BytesSent += p.Sent
			out.Protocols = append(out.Protocols, p)
		}
	}
	slices.SortFunc(out.Protocols, func(a, b api.ProtocolBytes) int {
		return cmp.Or(cmp.Compare(b.Received+b.Sent, a.Received+a.Sent), cmp.Compare(a.Protocol, b.Protocol))
	})
	if n.ex != nil {
		if st, err := n.ex.Stats(); err == nil {
			out.BlockBytesReceived, out.BlockBytesSent = int64(st.DataReceived), int64(st.DataSent)
		}
	}
	return out
}
