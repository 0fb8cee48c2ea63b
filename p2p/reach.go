package p2p

import (
	"fmt"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"
)

// Reach is how other peers reach the node, as libp2p's AutoNAT and
// identify see it.
type Reach struct {
	// AutoNAT says whether the node asks its peers to dial it back (off
	// with NoNAT): without it, Reachability stays "unknown".
	AutoNAT bool
	// Reachability is AutoNAT's verdict: "public" (peers dial the node
	// directly), "private" (behind a NAT or a firewall: peers reach it
	// through a relay, or a hole punched through the NAT) or "unknown"
	// (not decided yet).
	Reachability string
	// RelayAddrs are the addresses the node announces through relays
	// (/p2p-circuit); a private node without them is reached by nobody
	// who does not dial out to it first.
	RelayAddrs []string
	// NATTCP and NATUDP are the kind of NAT in front of the node for each
	// transport, as the addresses peers observe tell it: "unknown",
	// "endpoint-independent" (a cone NAT: hole punching can reach the
	// node) or "endpoint-dependent" (a symmetric NAT: only relays can).
	// They mean something only where Reachability is "private".
	NATTCP string
	NATUDP string
	// Reachable and Unreachable are the public addresses AutoNAT v2 has
	// confirmed that peers can and cannot dial.
	Reachable   []string
	Unreachable []string
}

// natWatch keeps the NAT types identify's observed addresses last gave,
// one per transport (the event bus keeps only the last event of a type).
type natWatch struct {
	mu       sync.Mutex
	tcp, udp network.NATDeviceType
}

// watchNAT subscribes to the host's NAT type events and records them
// until the host closes.
func (n *Host) watchNAT() error {
	sub, err := n.h.EventBus().Subscribe(new(event.EvtNATDeviceTypeChanged), eventbus.Name("mycel nat type"))
	if err != nil {
		return fmt.Errorf("p2p: watch the NAT type: %w", err)
	}
	n.nat = &natWatch{}
	n.wg.Go(func() {
		defer sub.Close()
		for {
			select {
			case <-n.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				if ev, ok := e.(event.EvtNATDeviceTypeChanged); ok {
					n.nat.set(ev)
				}
			}
		}
	})
	return nil
}

func (w *natWatch) set(ev event.EvtNATDeviceTypeChanged) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch ev.TransportProtocol {
	case network.NATTransportTCP:
		w.tcp = ev.NatDeviceType
	case network.NATTransportUDP:
		w.udp = ev.NatDeviceType
	}
}

// Reach reports how other peers reach the node now.
func (n *Host) Reach() Reach {
	r := Reach{AutoNAT: n.autoNAT, Reachability: reachabilityName(network.ReachabilityUnknown),
		NATTCP: natName(network.NATDeviceTypeUnknown), NATUDP: natName(network.NATDeviceTypeUnknown),
		RelayAddrs: []string{}, Reachable: []string{}, Unreachable: []string{}}
	if h, ok := n.h.(interface{ Reachability() network.Reachability }); ok {
		r.Reachability = reachabilityName(h.Reachability())
	}
	if n.nat != nil {
		n.nat.mu.Lock()
		r.NATTCP, r.NATUDP = natName(n.nat.tcp), natName(n.nat.udp)
		n.nat.mu.Unlock()
	}
	for _, a := range n.h.Addrs() {
		if isRelayed(a) {
			r.RelayAddrs = append(r.RelayAddrs, a.String())
		}
	}
	if h, ok := n.h.(interface {
		ConfirmedAddrs() (reachable, unreachable, unknown []ma.Multiaddr)
	}); ok && n.autoNAT {
		yes, no, _ := h.ConfirmedAddrs()
		for _, a := range yes {
			r.Reachable = append(r.Reachable, a.String())
		}
		for _, a := range no {
			r.Unreachable = append(r.Unreachable, a.String())
		}
	}
	return r
}

// isRelayed says whether a is an address through a relay.
func isRelayed(a ma.Multiaddr) bool {
	return slices.ContainsFunc(a, func(c ma.Component) bool { return c.Code() == ma.P_CIRCUIT })
}

func reachabilityName(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	}
	return "unknown"
}

func natName(t network.NATDeviceType) string {
	switch t {
	case network.NATDeviceTypeEndpointIndependent:
		return "endpoint-independent"
	case network.NATDeviceTypeEndpointDependent:
		return "endpoint-dependent"
	}
	return "unknown"
}
