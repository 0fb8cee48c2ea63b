package p2p

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mycel-net/mycel/internal/logging"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The host's Info line is written at the default level (the package
// logged through go-libp2p's shim before, which wrote from error up),
// and not at warn.
func TestHostStartedLogged(t *testing.T) {
	old := logging.Current()
	buf := &syncBuffer{}
	prev := logging.SetOutput(buf)
	t.Cleanup(func() {
		logging.SetOutput(prev)
		logging.Setup(old)
	})
	logging.Setup(logging.Config{Levels: logging.Levels{Default: slog.LevelInfo}})
	h := newTestHost(t)
	if out := buf.String(); !strings.Contains(out, `level=INFO msg="host started" sys=p2p peer=`+h.ID().String()) {
		t.Errorf("no host started line at the default level:\n%s", out)
	}
	logging.Setup(logging.Config{Levels: logging.Levels{Default: slog.LevelWarn}})
	h2 := newTestHost(t)
	if out := buf.String(); strings.Contains(out, h2.ID().String()) {
		t.Errorf("host started line at warn:\n%s", out)
	}
}

// Each host counts its streams' bytes by protocol, and registers
// libp2p's metrics with the registry it was given.
func TestTrafficAndMetrics(t *testing.T) {
	ra, rb := prometheus.NewRegistry(), prometheus.NewRegistry()
	a, b := newTestHost(t, Metrics(ra)), newTestHost(t, Metrics(rb))
	const proto = protocol.ID("/mycel/test-traffic/1")
	const size = 100 << 10
	got := make(chan int64, 1)
	b.Libp2p().SetStreamHandler(proto, func(s network.Stream) {
		n, _ := io.Copy(io.Discard, s)
		s.Close()
		got <- n
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	s, err := a.Libp2p().NewStream(ctx, b.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	if n := <-got; n != size {
		t.Fatalf("read %d bytes, want %d", n, size)
	}
	s.Close()
	find := func(tr *Traffic) ProtocolBytes {
		for _, pb := range tr.ByProtocol() {
			if pb.Protocol == proto {
				return pb
			}
		}
		return ProtocolBytes{}
	}
	if pa, pb := find(a.Traffic()), find(b.Traffic()); pa.Out < size || pb.In < size {
		t.Errorf("traffic of %s: sender %+v, receiver %+v; want %d bytes each way it went", proto, pa, pb, size)
	}
	if tot := a.Traffic().GetBandwidthTotals(); tot.TotalOut < size {
		t.Errorf("totals %+v", tot)
	}
	for name, reg := range map[string]*prometheus.Registry{"a": ra, "b": rb} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var libp2p int
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "libp2p_") {
				libp2p++
			}
		}
		if libp2p == 0 {
			t.Errorf("registry of %s holds no libp2p metric", name)
		}
	}
}
