package swarm

import (
	"bufio"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// conn is one end of an infer stream: buffered frames in and out, and a
// watchdog that resets the stream when an operation outlives its deadline.
// The watchdog works on every stream implementation (the in-memory mock
// network ignores SetDeadline), and a reset unblocks both a reader and a
// writer.
type conn struct {
	s   network.Stream
	r   *bufio.Reader
	fr  frameReader
	out []byte // frame being written, reused

	mu    sync.Mutex
	timer *time.Timer
	fired atomic.Bool
}

func newConn(s network.Stream) *conn {
	c := &conn{s: s, r: bufio.NewReaderSize(s, 32<<10)}
	c.fr.r = c.r
	c.timer = time.AfterFunc(time.Hour, func() {
		c.fired.Store(true)
		s.Reset()
	})
	c.timer.Stop()
	return c
}

// arm starts (or restarts) the watchdog: the stream is reset after d
// unless disarm comes first.
func (c *conn) arm(d time.Duration) {
	c.mu.Lock()
	c.timer.Reset(d)
	c.mu.Unlock()
}

func (c *conn) disarm() {
	c.mu.Lock()
	c.timer.Stop()
	c.mu.Unlock()
}

// deadlineErr replaces err by ErrDeadline when the watchdog fired.
func (c *conn) deadlineErr(err error) error {
	if err != nil && c.fired.Load() {
		return fmt.Errorf("%w (%w)", ErrDeadline, err)
	}
	return err
}

// send writes m as one frame within d.
func (c *conn) send(m Message, d time.Duration) error {
	c.out = AppendMessage(c.out[:0], m)
	c.arm(d)
	_, err := c.s.Write(c.out)
	c.disarm()
	if cap(c.out) > 1<<20 {
		c.out = nil // do not keep a prefill's buffer for decode steps
	}
	return c.deadlineErr(err)
}

// recv reads one frame of at most max bytes: the first byte must come
// within wait, the rest within d of it. The message refers to the conn's
// buffer until the next recv.
func (c *conn) recv(max int, wait, d time.Duration) (Message, error) {
	c.arm(wait)
	if _, err := c.r.Peek(1); err != nil {
		c.disarm()
		return nil, c.deadlineErr(err)
	}
	c.arm(d)
	b, err := c.fr.readBody(max)
	c.disarm()
	if err != nil {
		return nil, c.deadlineErr(err)
	}
	return DecodeMessage(b)
}

// reset stops the watchdog and aborts the stream both ways.
func (c *conn) reset() {
	c.disarm()
	c.s.Reset()
}

// finish stops the watchdog and closes the stream gracefully: what was
// written (an ERROR, say) still reaches the peer before the end of stream.
func (c *conn) finish() {
	c.disarm()
	if err := c.s.Close(); err != nil {
		c.s.Reset()
	}
}
