package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/node/api"
)

// testConfig is a node on loopback only, with a free API port, in the
// default DHT mode: the nodes of a test meet in the LAN DHT, as those of a
// home network do.
func testConfig(t testing.TB, bootstrap ...string) Config {
	return Config{
		DataDir:      t.TempDir(),
		APIAddr:      "127.0.0.1:0",
		Bootstrap:    bootstrap,
		LoopbackOnly: true, NoMDNS: true, NoNAT: true, NoQUIC: true, NoRelay: true,
	}
}

func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStatusAndBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startNode(t, testConfig(t))
	sa, err := api.NewClient(a.APIURL()).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sa.ID == "" || len(sa.Addrs) == 0 || !strings.HasSuffix(sa.Addrs[0], "/p2p/"+sa.ID) {
		t.Fatalf("status of A: %+v", sa)
	}
	b := startNode(t, testConfig(t, sa.Addrs[0]))
	cb := api.NewClient(strings.TrimPrefix(b.APIURL(), "http://")) // host:port works too
	for {
		sb, err := cb.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(sb.Peers) == 1 && sb.Peers[0] == sa.ID && sb.DHT.LAN.Peers >= 1 {
			// On loopback with the defaults: the LAN DHT serves, the WAN
			// DHT (public peers only) stays an empty client.
			want := api.DHTStatus{Setting: "auto", LAN: api.DHTTable{Mode: "server", Peers: 1}, WAN: api.DHTTable{Mode: "client"}}
			if sb.DHT != want {
				t.Errorf("DHT status %+v, want %+v", sb.DHT, want)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("B never joined A: %+v", sb)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestRestartKeepsIdentity(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := n.Status().ID
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	n2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if got := n2.Status().ID; got != id {
		t.Errorf("identity changed across a restart: %s then %s", id, got)
	}
}

func TestClientWithoutNode(t *testing.T) {
	_, err := api.NewClient("127.0.0.1:1").Status(context.Background())
	if !errors.Is(err, api.ErrNoNode) || !strings.Contains(err.Error(), "mycel node") {
		t.Errorf("got %v; want ErrNoNode saying how to start a node", err)
	}
}

func TestConfigRejectsPublicAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.APIAddr = "0.0.0.0:5150"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("a public API address was accepted: %v", err)
	}
	cfg.APIAddr = "127.0.0.1:0"
	cfg.DHTMode = "sometimes"
	if _, err := New(cfg); err == nil {
		t.Error("an unknown DHT mode was accepted")
	}
}

func TestAPIPortTaken(t *testing.T) {
	a := startNode(t, testConfig(t))
	cfg := testConfig(t)
	cfg.APIAddr = strings.TrimPrefix(a.APIURL(), "http://")
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "another node") {
		t.Errorf("a second node on a taken API port: %v", err)
	}
}
