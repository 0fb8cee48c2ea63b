package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p"
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

func TestConfigRejectsBadValues(t *testing.T) {
	cfg := testConfig(t)
	cfg.DHTMode = "sometimes"
	if _, err := New(cfg); err == nil {
		t.Error("an unknown DHT mode was accepted")
	}
	cfg = testConfig(t)
	cfg.CORSOrigins = []string{"app.example"}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "app.example") {
		t.Errorf("a CORS origin without a scheme: %v", err)
	}
	cfg = testConfig(t)
	cfg.APIAddr = "5150"
	if _, err := New(cfg); err == nil {
		t.Error("an API address without a port was accepted")
	}
}

// The node writes its API token at its first start, for the user alone,
// and keeps it. On a non-loopback address its API refuses requests
// without it; on loopback it needs none.
func TestAPIToken(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.APIAddr = "0.0.0.0:0"
	n := startNode(t, cfg)
	fi, err := os.Stat(filepath.Join(cfg.DataDir, api.TokenFile))
	if err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Fatalf("token file: %v, %v", fi, err)
	}
	tok, err := api.ReadToken(cfg.DataDir)
	if err != nil || len(tok) != 64 || !n.APITokenRequired() || n.APITokenFile() != filepath.Join(cfg.DataDir, api.TokenFile) {
		t.Fatalf("token %q (%v), required %v, file %s", tok, err, n.APITokenRequired(), n.APITokenFile())
	}
	cl := api.NewClient(n.APIURL())
	_, err = cl.Status(ctx)
	if !errors.Is(err, api.ErrUnauthorized) || !strings.Contains(err.Error(), n.APITokenFile()) {
		t.Errorf("status without the token: %v", err)
	}
	if _, err := cl.WithToken(strings.Repeat("0", 64)).Import(ctx, api.ImportRequest{Path: "/nonexistent"}); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("import with a wrong token: %v", err)
	}
	if st, err := cl.WithToken(tok).Status(ctx); err != nil || st.DataDir != cfg.DataDir {
		t.Errorf("status with the token: %+v, %v", st, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// The same token after a restart, on loopback now, where a client
	// without it is answered.
	cfg.APIAddr = "127.0.0.1:0"
	n = startNode(t, cfg)
	if tok2, err := api.ReadToken(cfg.DataDir); err != nil || tok2 != tok || n.APITokenRequired() {
		t.Errorf("after a restart: token %q (%v), was %q; required %v", tok2, err, tok, n.APITokenRequired())
	}
	if _, err := api.NewClient(n.APIURL()).Status(ctx); err != nil {
		t.Errorf("status on loopback without the token: %v", err)
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

// A web page of another site, or one that rebinds its own name to the
// node's address, is refused before its request does anything: the same
// import from a program goes through.
func TestAPIRefusesOtherSites(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, testConfig(t))
	body, _ := json.Marshal(api.ImportRequest{Path: testmodels.Builtin(t)})
	post := func(headers ...string) *http.Response {
		req, _ := http.NewRequest("POST", n.APIURL()+api.Prefix+"/models/import", bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/plain") // a "simple" request: no preflight
		for i := 0; i+1 < len(headers); i += 2 {
			if headers[i] == "Host" {
				req.Host = headers[i+1]
			} else {
				req.Header.Set(headers[i], headers[i+1])
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, h := range [][]string{
		{"Origin", "https://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Host", "evil.example:5150", "Origin", "http://evil.example:5150"},
	} {
		if resp := post(h...); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%v: %s", h, resp.Status)
		}
	}
	if list, err := api.NewClient(n.APIURL()).List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after refused imports: %v, %v", list, err)
	}
	if resp := post(); resp.StatusCode != http.StatusOK {
		t.Fatalf("the import from a program: %s", resp.Status)
	}
	if list, err := api.NewClient(n.APIURL()).List(ctx); err != nil || len(list) != 1 {
		t.Errorf("after the import from a program: %v, %v", list, err)
	}
}

// A node whose data directory holds swarm.key joins that private swarm
// without being told: a node given the same key file reaches it, one
// without the key does not.
func TestSwarmKeyInDataDir(t *testing.T) {
	key, err := p2p.NewSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	if err := os.WriteFile(filepath.Join(cfg.DataDir, SwarmKeyFile), p2p.EncodeSwarmKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, cfg)
	if got, want := a.Status().PrivateSwarm, p2p.SwarmKeyID(key); got != want {
		t.Fatalf("private swarm %q, want %q", got, want)
	}
	keyFile := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(keyFile, p2p.EncodeSwarmKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := testConfig(t, a.Status().Addrs[0])
	withKey.SwarmKey = keyFile
	b := startNode(t, withKey)
	without := startNode(t, testConfig(t, a.Status().Addrs[0]))
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(b.Status().Peers, a.Status().ID); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node with the key file did not reach the one with swarm.key")
		}
	}
	if slices.Contains(without.Status().Peers, a.Status().ID) {
		t.Error("a node without the key reached the private one")
	}
}
