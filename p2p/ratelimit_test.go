package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const rateTestProtocol = protocol.ID("/mycel/test/rate/1")

// rateTransfer sends size bytes from a stream that from opens to to (its
// handler reads them all and answers one byte) and returns how long the
// transfer took, from the first write to the answer.
func rateTransfer(t *testing.T, from, to *Host, size int) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan int64, 1)
	to.Libp2p().SetStreamHandler(rateTestProtocol, func(s network.Stream) {
		defer s.Close()
		n, _ := io.Copy(io.Discard, s)
		got <- n
		s.Write([]byte{1})
	})
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := from.Libp2p().NewStream(ctx, to.ID(), rateTestProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, size)
	rand.Read(data)
	start := time.Now()
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		t.Fatalf("answer: %v", err)
	}
	took := time.Since(start)
	if n := <-got; n != int64(size) {
		t.Fatalf("received %d bytes of %d", n, size)
	}
	return took
}

// A host with an upload cap sends, and one with a download cap receives,
// several MB at the cap (within 20% over the transfer), through the
// streams its own NewStream opens and its handlers are given; the same
// transfer between uncapped hosts runs well above the cap.
func TestBandwidthCaps(t *testing.T) {
	const (
		rateCap = 2 << 20 // bytes a second
		size    = 6 << 20
	)
	check := func(what string, took time.Duration) {
		t.Helper()
		got := float64(size) / took.Seconds()
		t.Logf("%s: %d bytes in %v: %.2f MB/s against a cap of %.2f MB/s", what, size, took.Round(time.Millisecond), got/1e6, rateCap/1e6)
		if got > 1.2*rateCap || got < 0.8*rateCap {
			t.Errorf("%s at %.0f bytes/s: want within 20%% of %d", what, got, rateCap)
		}
	}
	t.Run("upload", func(t *testing.T) {
		a := newTestHost(t, NoPubSub(), MaxUpload(rateCap))
		b := newTestHost(t, NoPubSub())
		check("upload", rateTransfer(t, a, b, size))
	})
	t.Run("download", func(t *testing.T) {
		a := newTestHost(t, NoPubSub())
		b := newTestHost(t, NoPubSub(), MaxDownload(rateCap))
		check("download", rateTransfer(t, a, b, size))
	})
	t.Run("uncapped", func(t *testing.T) {
		a := newTestHost(t, NoPubSub())
		b := newTestHost(t, NoPubSub())
		took := rateTransfer(t, a, b, size)
		if got := float64(size) / took.Seconds(); got < 1.5*rateCap {
			t.Errorf("uncapped transfer at %.0f bytes/s: the capped tests above measure nothing", got)
		} else {
			t.Logf("uncapped: %.1f MB/s", got/1e6)
		}
	})
}

// A paced write that cannot get its bandwidth before the stream's write
// deadline times out as a network write would, rather than waiting on.
func TestBandwidthCapKeepsWriteDeadline(t *testing.T) {
	a := newTestHost(t, NoPubSub(), MaxUpload(8<<10))
	b := newTestHost(t, NoPubSub())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.Libp2p().SetStreamHandler(rateTestProtocol, func(s network.Stream) {
		io.Copy(io.Discard, s)
		s.Close()
	})
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := a.Libp2p().NewStream(ctx, b.ID(), rateTestProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	n, err := s.Write(make([]byte, 64<<10)) // 8 s at 8 KiB/s
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write of 64 KiB at 8 KiB/s with a 200 ms deadline: %d bytes, %v", n, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the write gave up after %v, long past its deadline", took)
	}
}

func TestBandwidthCapOptions(t *testing.T) {
	if _, err := New(testOpts(MaxUpload(-1))...); err == nil {
		t.Error("a negative upload cap was taken")
	}
	if _, err := New(testOpts(MaxDownload(-5))...); err == nil {
		t.Error("a negative download cap was taken")
	}
}
