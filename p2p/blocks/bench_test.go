package blocks

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// rawCopyProtocol is a test-only protocol: the server writes a byte slice on
// the stream and closes it. It gives the ceiling a bitswap fetch is compared
// against: same hosts, same connection, same transport and security.
const rawCopyProtocol protocol.ID = "/mycel/test/rawcopy/1"

// BenchmarkTransfer moves the same bytes (256 MiB; MYCEL_BENCH_MB changes
// it) between two loopback hosts (TCP + TLS) twice per iteration: as a raw
// libp2p stream copy into memory, and as a bitswap fetch of 1 MiB blocks into
// a fresh flatfs store. It reports both rates and their ratio.
// MYCEL_BENCH_OUTSTANDING sets the server's per-peer queue in bytes.
//
//	go test -run '^$' -bench Transfer -benchtime 1x ./p2p/blocks/
func BenchmarkTransfer(b *testing.B) {
	size := 256 << 20
	if v, err := strconv.Atoi(os.Getenv("MYCEL_BENCH_MB")); err == nil && v > 0 {
		size = v << 20
	}
	var outstanding int
	if v, err := strconv.Atoi(os.Getenv("MYCEL_BENCH_OUTSTANDING")); err == nil && v > 0 {
		outstanding = v
	}
	ctx := context.Background()
	server := newNode(b, nodeConfig{})
	if outstanding > 0 {
		server.ex.Close()
		ex, err := NewExchange(server.host.Libp2p(), server.host.Routing(), server.store,
			func(c *exchangeConfig) error { c.maxOutstanding = outstanding; return nil })
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ex.Close() })
	}
	data := randBytes(60, size)
	cids := importData(b, server, data)
	server.host.Libp2p().SetStreamHandler(rawCopyProtocol, func(s network.Stream) {
		defer s.Close()
		for off := 0; off < len(data); off += ChunkSize {
			if _, err := s.Write(data[off:min(off+ChunkSize, len(data))]); err != nil {
				s.Reset()
				return
			}
		}
	})

	var rawTime, bsTime time.Duration
	buf := make([]byte, 256<<10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		client := newNode(b, nodeConfig{})
		connect(b, ctx, client, server)
		if i == 0 {
			for _, c := range client.host.Libp2p().Network().ConnsToPeer(server.host.ID()) {
				b.Logf("connection %s, security %s, muxer %s", c.RemoteMultiaddr(), c.ConnState().Security, c.ConnState().StreamMultiplexer)
			}
		}
		b.StartTimer()

		start := time.Now()
		s, err := client.host.Libp2p().NewStream(ctx, server.host.ID(), rawCopyProtocol)
		if err != nil {
			b.Fatal(err)
		}
		var n int
		for {
			k, err := s.Read(buf)
			n += k
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		s.Close()
		rawTime += time.Since(start)
		if n != size {
			b.Fatalf("raw copy moved %d bytes, want %d", n, size)
		}

		start = time.Now()
		got := 0
		for r := range client.ex.Fetch(ctx, cids) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			got += len(r.Data)
		}
		bsTime += time.Since(start)
		if got != size {
			b.Fatalf("bitswap moved %d bytes, want %d", got, size)
		}

		b.StopTimer()
		client.close(b)
		b.StartTimer()
	}
	mb := float64(size) * float64(b.N) / 1e6
	raw, bs := mb/rawTime.Seconds(), mb/bsTime.Seconds()
	b.ReportMetric(raw, "raw-MB/s")
	b.ReportMetric(bs, "bitswap-MB/s")
	b.ReportMetric(bs/raw, "bitswap/raw")
	b.SetBytes(int64(size) * 2)
}
