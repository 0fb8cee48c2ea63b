package p2p

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// defaultPort makes the default listen addresses take port p.
func defaultPort(p int) Option {
	return func(c *config) error { c.defaultPort = p; return nil }
}

// freePort is a TCP port no socket held a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ports are the TCP and UDP ports h listens on.
func ports(h *Host) []int {
	var out []int
	for _, a := range h.Libp2p().Network().ListenAddresses() {
		for _, p := range []int{ma.P_TCP, ma.P_UDP} {
			if v, err := a.ValueForProtocol(p); err == nil {
				n, _ := strconv.Atoi(v)
				out = append(out, n)
			}
		}
	}
	return out
}

// Two nodes started with the default listen addresses on one machine (a
// volunteer trying a swarm at home): the second finds the default port
// held and listens elsewhere, and each reaches the other. Before, both
// shared the port, and each dial went to whichever the kernel chose.
func TestSecondNodeOnTheMachineMovesPort(t *testing.T) {
	port := freePort(t)
	opts := []Option{defaultPort(port), NoNAT(), NoRelay(), NoMDNS(), MemoryDatastore()}
	a, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pa, pb := ports(a), ports(b)
	if len(pa) == 0 || len(pb) == 0 {
		t.Fatalf("listen ports: first node %v, second %v", pa, pb)
	}
	for _, p := range pa {
		if p != port {
			t.Errorf("the first node listens on %d, want the default %d: %v", p, port, pa)
		}
	}
	for _, p := range pb {
		if p == port {
			t.Errorf("the second node shares the default port %d: %v", port, pb)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("second to first: %v", err)
	}
	a.Libp2p().Network().ClosePeer(b.ID())
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatalf("first to second: %v", err)
	}
}

// A listen address given outright on a port another program holds is
// refused, naming the address: the node would share the port unseen.
func TestListenOnHeldPortRefused(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	h, err := New(ListenAddrStrings(addr), NoQUIC(), NoNAT(), NoRelay(), NoMDNS(), MemoryDatastore())
	if err == nil {
		h.Close()
		t.Fatalf("a node listens on %s, which another socket holds", addr)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "held by another program") {
		t.Errorf("error %q does not name the address and why", err)
	}
}

// Nodes started at the same moment on the default port (a script that
// starts a home swarm): each would find the port free before any binds
// it, so each claims it among the machine's nodes: one takes it, the
// others move. Once that one closes, the port is free to claim again.
func TestNodesStartedTogetherDoNotSharePort(t *testing.T) {
	port := freePort(t)
	opts := []Option{defaultPort(port), NoQUIC(), NoNAT(), NoRelay(), NoMDNS(), MemoryDatastore()}
	hosts := make([]*Host, 3)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Go(func() { hosts[i], errs[i] = New(opts...) })
	}
	wg.Wait()
	owner := -1
	seen := map[int]int{}
	for i, h := range hosts {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		defer h.Close()
		for _, p := range ports(h) {
			if j, ok := seen[p]; ok && j != i {
				t.Errorf("nodes %d and %d both listen on port %d", j, i, p)
			}
			seen[p] = i
			if p == port {
				owner = i
			}
		}
	}
	if owner < 0 {
		t.Fatalf("no node took the default port %d", port)
	}
	hosts[owner].Close()
	h, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := ports(h); len(got) == 0 || got[0] != port {
		t.Errorf("after the port's node closed, a new node listens on %v, want %d", got, port)
	}
}
