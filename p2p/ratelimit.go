package p2p

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"golang.org/x/time/rate"
)

// Bandwidth caps (MaxUpload, MaxDownload).
//
// libp2p bounds streams and memory but not rates, so the host bounds them
// itself: the host.Host that Libp2p returns wraps every stream it opens
// (NewStream) and every stream its handlers are given (SetStreamHandler,
// SetStreamHandlerMatch) in a pair of token buckets, one per direction,
// shared by all streams of the host. Everything built on Libp2p goes
// through them: Mycel's own protocols (inference, block streams, records,
// all-reduce) and bitswap, whose network opens and accepts its streams
// through the host it is given. What the host runs on the raw libp2p host
// escapes the caps: the DHT, gossipsub, identify, ping, AutoNAT, relay and
// hole punching, all of them small messages.
//
// A write waits for its bytes' tokens before it goes out, in pieces of at
// most one bucket's burst; a read takes at most a burst from the stream
// and then waits for what it took. A reader that waits leaves the bytes in
// the connection's receive window, so the sender slows down too.

// rateLimits are a host's two buckets; a nil bucket is no cap.
type rateLimits struct {
	up, down *rate.Limiter
	ctx      context.Context // the host's: waits end when it closes
}

// burstFor is the bucket size for a rate of bps bytes a second: a
// twentieth of a second's worth, from 4 KiB to 64 KiB. Small enough that a
// transfer keeps to the rate within a few percent over a second, large
// enough that a fast cap costs few waits.
func burstFor(bps int64) int {
	return int(min(max(bps/20, 4<<10), 64<<10))
}

func newBucket(bps int64) *rate.Limiter {
	if bps <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bps), burstFor(bps))
}

// wrap returns s with its reads and writes paced by the buckets.
func (l *rateLimits) wrap(s network.Stream) network.Stream {
	if s == nil {
		return nil
	}
	return &limitedStream{Stream: s, l: l}
}

// limitedHost is a host.Host whose streams are paced (see above).
type limitedHost struct {
	host.Host
	l *rateLimits
}

var _ host.Host = (*limitedHost)(nil)

func (h *limitedHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return h.l.wrap(s), nil
}

func (h *limitedHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.l.wrap(s)) })
}

func (h *limitedHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, match, func(s network.Stream) { handler(h.l.wrap(s)) })
}

// limitedStream paces one stream's reads and writes. It remembers the
// deadlines set on it, so that a write does not wait for tokens past its
// deadline.
type limitedStream struct {
	network.Stream
	l             *rateLimits
	writeDeadline atomic.Int64 // unix nanoseconds; 0: none
}

func (s *limitedStream) Read(p []byte) (int, error) {
	b := s.l.down
	if b == nil {
		return s.Stream.Read(p)
	}
	if len(p) > b.Burst() {
		p = p[:b.Burst()]
	}
	n, err := s.Stream.Read(p)
	if n > 0 {
		// The bytes are taken: they are the caller's whatever happens,
		// so the wait ends only with the host.
		_ = b.WaitN(s.l.ctx, n)
	}
	return n, err
}

func (s *limitedStream) Write(p []byte) (int, error) {
	b := s.l.up
	if b == nil {
		return s.Stream.Write(p)
	}
	done := 0
	for len(p) > 0 {
		k := min(len(p), b.Burst())
		if err := s.waitWrite(b, k); err != nil {
			return done, err
		}
		n, err := s.Stream.Write(p[:k])
		done += n
		if err != nil {
			return done, err
		}
		p = p[k:]
	}
	return done, nil
}

// errRateClosed is what a paced write returns once its host has closed.
var errRateClosed = errors.New("p2p: host closed while a write waited for its bandwidth")

func (s *limitedStream) waitWrite(b *rate.Limiter, n int) error {
	ctx := s.l.ctx
	if d := s.writeDeadline.Load(); d != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, d))
		defer cancel()
	}
	if err := b.WaitN(ctx, n); err != nil {
		if s.l.ctx.Err() != nil {
			return errRateClosed
		}
		// The deadline falls before the tokens come: the write times out,
		// as it would had it waited on the network.
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (s *limitedStream) SetDeadline(t time.Time) error {
	s.writeDeadline.Store(unixNano(t))
	return s.Stream.SetDeadline(t)
}

func (s *limitedStream) SetWriteDeadline(t time.Time) error {
	s.writeDeadline.Store(unixNano(t))
	return s.Stream.SetWriteDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
