package netem_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/internal/netem"
	"github.com/mycel-net/mycel/p2p"
)

const proto = "/mycel/test/netem/1"

// newHost is a real libp2p host on TCP loopback behind a port of nw.
func newHost(t *testing.T, nw *netem.Net) *p2p.Host {
	t.Helper()
	port := nw.NewPort()
	h, err := p2p.New(p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(),
		p2p.MemoryDatastore(), p2p.TCPDialer(nw.Dialer(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	nw.Attach(port, h.Libp2p().Addrs()...)
	return h
}

func connect(t *testing.T, a, b *p2p.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Libp2p().Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Libp2p().Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// sink takes every stream of proto and sends back what it read once the
// writer closes, so the sender can check the bytes arrived unchanged.
func sink(h *p2p.Host) {
	h.Libp2p().SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		b, err := io.ReadAll(s)
		if err != nil {
			s.Reset()
			return
		}
		s.Write(b[:min(len(b), 64)])
	})
}

// send writes data to h on a new stream and returns how long until the
// sink answered, checking what it echoed.
func send(t *testing.T, from, to *p2p.Host, data []byte) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	s, err := from.Libp2p().NewStream(ctx, to.ID(), proto)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer s.Close()
	if _, err := s.Write(data); err != nil {
		t.Error(err)
		return 0
	}
	s.CloseWrite()
	back, err := io.ReadAll(s)
	if err != nil {
		t.Error(err)
		return 0
	}
	if !bytes.Equal(back, data[:min(len(data), 64)]) {
		t.Errorf("echo %x, want %x", back, data[:min(len(data), 64)])
	}
	return time.Since(start)
}

// TestDelay: a request and its answer cross the link twice each way at
// least (the stream's protocol negotiation, then the data): never faster
// than twice the round trip. The upper side is not asserted: a busy
// machine only adds.
func TestDelay(t *testing.T) {
	const delay = 40 * time.Millisecond
	nw := netem.New(delay, 0)
	a, b := newHost(t, nw), newHost(t, nw)
	sink(b)
	connect(t, a, b)
	d := send(t, a, b, []byte("ping"))
	if d < 2*delay {
		t.Fatalf("a request and its answer took %v over a link of %v one way; want at least %v", d, delay, 2*delay)
	}
	t.Logf("request and answer: %v (one way %v)", d, delay)
}

// TestRate: 1.5 MB through a 1 MB/s upload takes 1.5 s less the burst at
// least; two transfers from one host to two others share its upload, so
// they take twice as long as one between them; and the bytes arrive
// unchanged.
func TestRate(t *testing.T) {
	const bps = 1 << 20
	nw := netem.New(0, bps)
	a, b, c := newHost(t, nw), newHost(t, nw), newHost(t, nw)
	sink(b)
	sink(c)
	connect(t, a, b)
	connect(t, a, c)
	data := make([]byte, 3<<19)
	rand.Read(data)
	floor := func(n int) time.Duration {
		return time.Duration(float64(n-4*16<<10) / bps * float64(time.Second))
	}
	if d := send(t, a, b, data); d < floor(len(data)) {
		t.Errorf("%d bytes at %d B/s took %v; want at least %v", len(data), bps, d, floor(len(data)))
	}
	var wg sync.WaitGroup
	start := time.Now()
	for _, to := range []*p2p.Host{b, c} {
		wg.Go(func() { send(t, a, to, data) })
	}
	wg.Wait()
	if d := time.Since(start); d < floor(2*len(data)) {
		t.Errorf("two transfers of %d bytes sharing an upload of %d B/s took %v; want at least %v", len(data), bps, d, floor(2*len(data)))
	}
}

// TestDownloadShared: two hosts sending to one share its download.
func TestDownloadShared(t *testing.T) {
	const bps = 1 << 20
	nw := netem.New(0, bps)
	a, b, c := newHost(t, nw), newHost(t, nw), newHost(t, nw)
	sink(c)
	// c dials: the dialer's side of the link charges both ends.
	connect(t, c, a)
	connect(t, c, b)
	data := make([]byte, 3<<19)
	rand.Read(data)
	var wg sync.WaitGroup
	start := time.Now()
	for _, from := range []*p2p.Host{a, b} {
		wg.Go(func() { send(t, from, c, data) })
	}
	wg.Wait()
	floor := time.Duration(float64(2*len(data)-4*16<<10) / bps * float64(time.Second))
	if d := time.Since(start); d < floor {
		t.Errorf("two transfers of %d bytes into a download of %d B/s took %v; want at least %v", len(data), bps, d, floor)
	}
}
