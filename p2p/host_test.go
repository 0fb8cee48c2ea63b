package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// testOpts are the options of a node that stays on loopback and talks only
// to the other nodes of its test. The DHT keeps its default mode.
func testOpts(extra ...Option) []Option {
	return append([]Option{LoopbackOnly(), NoQUIC(), NoNAT(), NoRelay(), NoMDNS()}, extra...)
}

func newTestHost(t testing.TB, extra ...Option) *Host {
	t.Helper()
	h, err := New(testOpts(extra...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestIdentityCreatedOnceWithPrivatePerms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	k1, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Type() != crypto.Ed25519 {
		t.Errorf("key type %v, want Ed25519", k1.Type())
	}
	info, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("identity key mode %o, want 600", perm)
	}
	k2, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equals(k2) {
		t.Error("second load returned a different key")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestIdentityCorruptFileIsAnErrorAndKept(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage":   []byte("not a key at all"),
		"empty":     {},
		"truncated": nil, // filled below from a real key
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, IdentityFile)
			if content == nil {
				k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
				b, _ := crypto.MarshalPrivateKey(k)
				content = b[:len(b)/2]
			}
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateIdentity(dir)
			if !errors.Is(err, ErrCorruptIdentity) {
				t.Fatalf("LoadOrCreateIdentity: %v, want ErrCorruptIdentity", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			_, err = New(testOpts(DataDir(dir))...)
			if !errors.Is(err, ErrCorruptIdentity) {
				t.Fatalf("New: %v, want ErrCorruptIdentity", err)
			}
			after, _ := os.ReadFile(path)
			if string(after) != string(content) {
				t.Error("corrupt key file was changed")
			}
		})
	}
}

func TestOptionConflicts(t *testing.T) {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	mh, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]Option{
		"two identities":         {Identity(k), Identity(k)},
		"listen and loopback":    {ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), LoopbackOnly()},
		"loopback and listen":    {LoopbackOnly(), ListenAddrStrings("/ip4/127.0.0.1/tcp/0")},
		"bad listen addr":        {ListenAddrStrings("/ip4/nope")},
		"no quic with quic addr": {ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), NoQUIC()},
		"host then identity":     {WithHost(mh), Identity(k)},
		"identity then host":     {Identity(k), WithHost(mh)},
		"conn manager inverted":  {ConnManager(10, 5)},
		"high water above cap":   {Limits(100, 0), ConnManager(50, 150)},
		"tiny memory":            {Limits(100, 1<<20)},
		"two dht modes":          {ForceDHTMode(DHTModeServer), ForceDHTMode(DHTModeClient)},
		"bootstrap without peer": {BootstrapStrings("/ip4/127.0.0.1/tcp/1")},
		"data dir twice":         {DataDir("a"), DataDir("b")},
		"limits twice":           {Limits(10, 0), Limits(20, 0)},
		"metrics twice":          {Metrics(prometheus.NewRegistry()), Metrics(prometheus.NewRegistry())},
		"host then metrics":      {WithHost(mh), Metrics(prometheus.NewRegistry())},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			h, err := New(append(opts, NoMDNS())...)
			if err == nil {
				h.Close()
				t.Fatal("New succeeded, want an error")
			}
			t.Log(err)
		})
	}
	// nil options are skipped.
	h, err := New(testOpts(nil)...)
	if err != nil {
		t.Fatalf("nil option: %v", err)
	}
	h.Close()
}

func TestHostListensAndCloses(t *testing.T) {
	// QUIC stays on here: the host listens on TCP and QUIC, loopback only.
	h, err := New(LoopbackOnly(), NoNAT(), NoRelay(), NoMDNS(), ForceDHTMode(DHTModeServer))
	if err != nil {
		t.Fatal(err)
	}
	var tcp, quic bool
	for _, a := range h.Addrs() {
		if v, err := a.ValueForProtocol(ma.P_IP4); err != nil || v != "127.0.0.1" {
			t.Errorf("address %s is not on 127.0.0.1", a)
		}
		_, errT := a.ValueForProtocol(ma.P_TCP)
		tcp = tcp || errT == nil
		quic = quic || isQUIC(a)
	}
	if !tcp || !quic {
		t.Errorf("addresses %v: want TCP and QUIC", h.Addrs())
	}
	for _, id := range []protocol.ID{DHTProtocol, LANDHTProtocol} {
		if !slices.Contains(h.Libp2p().Mux().Protocols(), id) {
			t.Errorf("DHT protocol %s not registered in server mode: %v", id, h.Libp2p().Mux().Protocols())
		}
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestRestartKeepsPeerID(t *testing.T) {
	dir := t.TempDir()
	a := newTestHost(t, DataDir(dir))
	id := a.ID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, DHTDir)); err != nil {
		t.Errorf("no DHT datastore in the data dir: %v", err)
	}
	b := newTestHost(t, DataDir(dir))
	if b.ID() != id {
		t.Fatalf("peer ID changed across restart: %s -> %s", id, b.ID())
	}
}

func TestBootstrapJoinsTheDHT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := newTestHost(t)
	a := newTestHost(t, Bootstrap(b.AddrInfo()))
	c := newTestHost(t, Bootstrap(b.AddrInfo()))
	for _, n := range []*Host{a, c} {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("Bootstrap: %v", err)
		}
		if err := n.WaitRoutable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// C learns A's addresses from B through the DHT (once B has taken A
	// into its routing table: it does so after identifying A).
	var ai peer.AddrInfo
	for {
		var err error
		if ai, err = c.DHT().FindPeer(ctx, a.ID()); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("FindPeer: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := c.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}

	dead := newTestHost(t)
	deadInfo := dead.AddrInfo()
	dead.Close()
	d := newTestHost(t, Bootstrap(deadInfo))
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := d.Bootstrap(sctx); !errors.Is(err, ErrNoBootstrap) {
		t.Fatalf("Bootstrap to a closed peer: %v, want ErrNoBootstrap", err)
	}
}

func TestWithHostDoesNotCloseIt(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	mh, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(WithHost(mh), NoMDNS())
	if err != nil {
		t.Fatal(err)
	}
	if h.ID() != mh.ID() {
		t.Fatal("Host does not use the given host's identity")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if len(mh.Network().ListenAddresses()) == 0 {
		t.Error("given host was closed")
	}
}

func TestDefaultsStartAndStop(t *testing.T) {
	// Everything on (AutoNAT, port mapping, relay client and service, hole
	// punching, mDNS, persistent state), only bound to loopback.
	dir := t.TempDir()
	h, err := New(LoopbackOnly(), DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	protos := h.Libp2p().Mux().Protocols()
	if slices.Contains(protos, DHTProtocol) {
		t.Error("WAN DHT in auto mode answers queries before it knows it is reachable")
	}
	if !slices.Contains(protos, LANDHTProtocol) {
		t.Error("LAN DHT in auto mode does not answer queries")
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// An explicit Connect dials again an address whose dial failed a moment
// ago: a peer that was down and is back is reached at once, not after
// libp2p's dial backoff.
func TestConnectRedialsAfterAFailedDial(t *testing.T) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peerOpts := func(listen ...string) []Option {
		return []Option{ListenAddrStrings(listen...), NoQUIC(), NoNAT(), NoRelay(), NoMDNS(), MemoryDatastore(), Identity(k)}
	}
	b1, err := New(peerOpts("/ip4/127.0.0.1/tcp/0")...)
	if err != nil {
		t.Fatal(err)
	}
	info := b1.AddrInfo()
	b1.Close()
	a := newTestHost(t, MemoryDatastore())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, info); err == nil {
		t.Fatal("connected to a host that is gone")
	}
	// The same peer back on the same address.
	var listen []string
	for _, addr := range info.Addrs {
		listen = append(listen, addr.String())
	}
	b2, err := New(peerOpts(listen...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := a.Connect(ctx, info); err != nil {
		t.Fatalf("the peer back on its address: %v", err)
	}
}

// Two hosts that dial each other at the same moment (as mDNS has both
// sides do) both connect: a dial whose handshake fails on the connection
// the two dials made together is tried again.
func TestConnectBothWaysAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 10 {
		a, b := newTestHost(t, MemoryDatastore()), newTestHost(t, MemoryDatastore())
		errs := make(chan error, 2)
		go func() { errs <- a.Connect(ctx, b.AddrInfo()) }()
		go func() { errs <- b.Connect(ctx, a.AddrInfo()) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("pair %d: %v", i, err)
			}
		}
		a.Close()
		b.Close()
	}
}
