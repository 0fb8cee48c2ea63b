package swarm

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mycel-net/mycel/p2p/wire"
)

// conn is one end of an infer stream: a wire.Conn (frames in, writes out,
// a watchdog that resets the stream when an operation outlives its
// deadline) that sends and receives messages.
type conn struct {
	*wire.Conn
	s   network.Stream
	out []byte // frame being written, reused
}

func newConn(s network.Stream) *conn {
	return &conn{Conn: wire.NewConn(s, 32<<10), s: s}
}

// send writes m as one frame within d.
func (c *conn) send(m Message, d time.Duration) error {
	c.out = AppendMessage(c.out[:0], m)
	err := c.Write(c.out, d)
	if cap(c.out) > 1<<20 {
		c.out = nil // do not keep a prefill's buffer for decode steps
	}
	return err
}

// recv reads one frame of at most max bytes: the first byte must come
// within wait, the rest within d of it. The message refers to the conn's
// buffer until the next recv.
func (c *conn) recv(max int, wait, d time.Duration) (Message, error) {
	b, err := c.ReadFrame(max, wait, d)
	if err != nil {
		return nil, err
	}
	return DecodeMessage(b)
}

// reset stops the watchdog and aborts the stream both ways.
func (c *conn) reset() { c.Reset() }

// finish stops the watchdog and closes the stream gracefully: what was
// written (an ERROR, say) still reaches the peer before the end of stream.
func (c *conn) finish() { c.Finish() }
