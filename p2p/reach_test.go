package p2p

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
)

// Reach reports what the host's event bus last said: AutoNAT's verdict,
// the NAT type of each transport and the relay addresses announced. The
// events are emitted here as AutoNAT, identify and AutoRelay emit them.
func TestReach(t *testing.T) {
	h := newTestHost(t)
	r := h.Reach()
	if r.AutoNAT || r.Reachability != "unknown" || r.NATTCP != "unknown" || r.NATUDP != "unknown" || len(r.RelayAddrs) != 0 {
		t.Fatalf("a new host without AutoNAT: %+v", r)
	}
	bus := h.Libp2p().EventBus()
	emit := func(ev any) {
		t.Helper()
		em, err := bus.Emitter(ev)
		if err != nil {
			t.Fatal(err)
		}
		defer em.Close()
		var v any
		switch e := ev.(type) {
		case *event.EvtLocalReachabilityChanged:
			v = *e
		case *event.EvtNATDeviceTypeChanged:
			v = *e
		case *event.EvtAutoRelayAddrsUpdated:
			v = *e
		}
		if err := em.Emit(v); err != nil {
			t.Fatal(err)
		}
	}
	relay := ma.StringCast("/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit")
	emit(&event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityPrivate})
	emit(&event.EvtAutoRelayAddrsUpdated{RelayAddrs: []ma.Multiaddr{relay}})
	emit(&event.EvtNATDeviceTypeChanged{TransportProtocol: network.NATTransportTCP, NatDeviceType: network.NATDeviceTypeEndpointDependent})
	emit(&event.EvtNATDeviceTypeChanged{TransportProtocol: network.NATTransportUDP, NatDeviceType: network.NATDeviceTypeEndpointIndependent})
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = h.Reach()
		if r.Reachability == "private" && r.NATTCP == "endpoint-dependent" && r.NATUDP == "endpoint-independent" &&
			slices.Contains(r.RelayAddrs, relay.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the events: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, a := range r.RelayAddrs {
		if !isRelayed(ma.StringCast(a)) {
			t.Errorf("relay address %s has no /p2p-circuit", a)
		}
	}
	emit(&event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityPublic})
	for h.Reach().Reachability != "public" {
		if time.Now().After(deadline) {
			t.Fatalf("after public: %+v", h.Reach())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A host with AutoNAT on says so.
func TestReachAutoNAT(t *testing.T) {
	h, err := New(LoopbackOnly(), NoQUIC(), NoRelay(), NoMDNS(), MemoryDatastore())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if r := h.Reach(); !r.AutoNAT || r.Reachability != "unknown" {
		t.Errorf("a new host with AutoNAT: %+v", r)
	}
}
