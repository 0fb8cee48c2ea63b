package p2p

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

func testCID(t testing.TB, s string) cid.Cid {
	t.Helper()
	h, err := multihash.Sum([]byte(s), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// provide announces c from n, retrying while n's routing tables are still
// empty or filling.
func provide(ctx context.Context, n *Host, c cid.Cid) error {
	for {
		err := n.Routing().Provide(ctx, c, true)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: provide %s: %w", n.ID(), c, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findProvider asks n once for a provider of c and says whether want was
// among the answers.
func findProvider(ctx context.Context, n *Host, c cid.Cid, want peer.ID) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for ai := range n.Routing().FindProvidersAsync(ctx, c, 0) {
		if ai.ID == want {
			return true
		}
	}
	return false
}

// TestDHTModes: with the defaults a node on loopback serves the LAN DHT
// and only asks the WAN one; --dht server serves both; --dht client serves
// neither, stays out of others' routing tables, and still provides and
// finds through the servers.
func TestDHTModes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boot := newTestHost(t)
	auto := newTestHost(t, Bootstrap(boot.AddrInfo()))
	srv := newTestHost(t, Bootstrap(boot.AddrInfo()), ForceDHTMode(DHTModeServer))
	cli := newTestHost(t, Bootstrap(boot.AddrInfo()), ForceDHTMode(DHTModeClient))
	for _, n := range []*Host{auto, srv, cli} {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitRoutable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		n    *Host
		want DHTStatus
	}{
		{"auto", auto, DHTStatus{Setting: "auto", LAN: DHTTable{Mode: "server"}, WAN: DHTTable{Mode: "client"}}},
		{"server", srv, DHTStatus{Setting: "server", LAN: DHTTable{Mode: "server"}, WAN: DHTTable{Mode: "server"}}},
		{"client", cli, DHTStatus{Setting: "client", LAN: DHTTable{Mode: "client"}, WAN: DHTTable{Mode: "client"}}},
	} {
		got := c.n.DHTStatus()
		if got.Setting != c.want.Setting || got.LAN.Mode != c.want.LAN.Mode || got.WAN.Mode != c.want.WAN.Mode {
			t.Errorf("%s: status %+v, want modes %+v", c.name, got, c.want)
		}
		if got.LAN.Peers == 0 {
			t.Errorf("%s: no peer in the LAN routing table", c.name)
		}
		if got.WAN.Peers != 0 {
			t.Errorf("%s: %d loopback peers in the WAN routing table, which takes public peers only", c.name, got.WAN.Peers)
		}
	}
	// The bootstrap node takes the two servers into its LAN table, never
	// the client.
	for boot.DHT().LAN.RoutingTable().Find(srv.ID()) == "" || boot.DHT().LAN.RoutingTable().Find(auto.ID()) == "" {
		select {
		case <-ctx.Done():
			t.Fatalf("servers missing from the bootstrap node's LAN table: %v", boot.DHT().LAN.RoutingTable().ListPeers())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if slices.Contains(boot.DHT().LAN.RoutingTable().ListPeers(), cli.ID()) {
		t.Error("a client-mode node is in a routing table")
	}
	if slices.Contains(boot.Libp2p().Mux().Protocols(), DHTProtocol) {
		t.Error("a default node on loopback answers WAN DHT queries")
	}

	fromSrv, fromCli := testCID(t, "from server"), testCID(t, "from client")
	for _, p := range []struct {
		n *Host
		c cid.Cid
	}{{srv, fromSrv}, {cli, fromCli}} {
		if err := provide(ctx, p.n, p.c); err != nil {
			t.Fatal(err)
		}
	}
	if !findProvider(ctx, cli, fromSrv, srv.ID()) {
		t.Error("the client does not find what the server provides")
	}
	if !findProvider(ctx, auto, fromCli, cli.ID()) {
		t.Error("a default node does not find what the client provides")
	}
}

// TestManyNodesOneDHT: nodes with the default settings, started together
// on loopback, each bootstrapped to one of the first three, end up in one
// DHT: every node finds, on the first try, what any other provides.
// MYCEL_DHT_RUNS sets the number of runs (default 2; the guides quote 100).
func TestManyNodesOneDHT(t *testing.T) {
	runs := 2
	if s := os.Getenv("MYCEL_DHT_RUNS"); s != "" {
		var err error
		if runs, err = strconv.Atoi(s); err != nil || runs < 1 {
			t.Fatalf("MYCEL_DHT_RUNS=%q: want a positive count", s)
		}
	}
	const nodes = 20
	for r := range runs {
		t.Run(fmt.Sprintf("run%d", r), func(t *testing.T) { testManyNodesOneDHT(t, nodes) })
	}
}

func testManyNodesOneDHT(t *testing.T, nodes int) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Real defaults but for the network: loopback only, no mDNS (so the
	// DHT alone must bring the nodes together).
	opts := func(extra ...Option) []Option { return append([]Option{LoopbackOnly(), NoMDNS()}, extra...) }
	hosts := make([]*Host, nodes)
	start := func(i int, extra ...Option) error {
		h, err := New(opts(extra...)...)
		if err != nil {
			return err
		}
		hosts[i] = h
		return nil
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, h := range hosts {
			if h != nil {
				wg.Go(func() { h.Close() })
			}
		}
		wg.Wait()
	})
	// The first three listen first so that the others have somewhere to
	// bootstrap to; they bootstrap to one another.
	ts := time.Now()
	for i := range 3 {
		if err := start(i); err != nil {
			t.Fatal(err)
		}
	}
	firsts := []peer.AddrInfo{hosts[0].AddrInfo(), hosts[1].AddrInfo(), hosts[2].AddrInfo()}
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			if i >= 3 {
				if errs[i] = start(i, Bootstrap(firsts[i%3])); errs[i] != nil {
					return
				}
			} else {
				hosts[i].bootstrap = []peer.AddrInfo{firsts[(i+1)%3]}
			}
			if errs[i] = hosts[i].Bootstrap(ctx); errs[i] != nil {
				return
			}
			errs[i] = hosts[i].WaitRoutable(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	t0 := time.Now()
	t.Logf("start+bootstrap %v", t0.Sub(ts))
	keys := make([]cid.Cid, nodes)
	for i := range nodes {
		keys[i] = testCID(t, fmt.Sprintf("%s provided by node %d", t.Name(), i))
		wg.Go(func() { errs[i] = provide(ctx, hosts[i], keys[i]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t1 := time.Now()
	var mu sync.Mutex
	var missing []string
	for i := range nodes {
		wg.Go(func() {
			for j := range nodes {
				if i != j && !findProvider(ctx, hosts[i], keys[j], hosts[j].ID()) {
					mu.Lock()
					missing = append(missing, fmt.Sprintf("%d->%d", i, j))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("provide %v, find %v", t1.Sub(t0), time.Since(t1))
	if len(missing) > 0 {
		t.Fatalf("%d of %d lookups did not find the provider (finder->provider): %v", len(missing), nodes*(nodes-1), missing)
	}
}
