package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDeadline is wrapped when a read or write on a Conn did not finish in
// time and the stream was reset.
var ErrDeadline = errors.New("deadline exceeded")

// Stream is what a Conn needs of a stream; a libp2p network.Stream is
// one.
type Stream interface {
	io.Reader
	io.Writer
	// Close closes the stream gracefully: what was written still arrives.
	Close() error
	// Reset aborts the stream both ways, unblocking a reader and a writer.
	Reset() error
}

// Conn is one end of a framed stream: buffered frames in, writes out, and
// a watchdog that resets the stream when an operation outlives its
// deadline. The watchdog works on every stream implementation (libp2p's
// in-memory mock network ignores SetDeadline), and a reset unblocks both a
// reader and a writer. One goroutine reads and one writes at a time, each
// under a watchdog of its own.
type Conn struct {
	s  Stream
	r  *bufio.Reader
	fr FrameReader

	mu             sync.Mutex
	rtimer, wtimer *time.Timer
	fired          atomic.Bool
}

// NewConn wraps s, reading through a buffer of bufSize bytes (the default
// size when 0).
func NewConn(s Stream, bufSize int) *Conn {
	if bufSize <= 0 {
		bufSize = 4096
	}
	c := &Conn{s: s, r: bufio.NewReaderSize(s, bufSize)}
	c.fr.r = c.r
	fire := func() {
		c.fired.Store(true)
		s.Reset()
	}
	c.rtimer, c.wtimer = time.AfterFunc(time.Hour, fire), time.AfterFunc(time.Hour, fire)
	c.rtimer.Stop()
	c.wtimer.Stop()
	return c
}

// arm starts (or restarts) the reader's watchdog: the stream is reset
// after d unless disarm comes first. armWrite and disarmWrite are the
// writer's.
func (c *Conn) arm(d time.Duration) {
	c.mu.Lock()
	c.rtimer.Reset(d)
	c.mu.Unlock()
}

func (c *Conn) disarm() {
	c.mu.Lock()
	c.rtimer.Stop()
	c.mu.Unlock()
}

func (c *Conn) armWrite(d time.Duration) {
	c.mu.Lock()
	c.wtimer.Reset(d)
	c.mu.Unlock()
}

func (c *Conn) disarmWrite() {
	c.mu.Lock()
	c.wtimer.Stop()
	c.mu.Unlock()
}

// deadlineErr wraps err with ErrDeadline when the watchdog fired.
func (c *Conn) deadlineErr(err error) error {
	if err != nil && c.fired.Load() {
		return fmt.Errorf("%w (%w)", ErrDeadline, err)
	}
	return err
}

// Write writes b (one or more whole frames) within d.
func (c *Conn) Write(b []byte, d time.Duration) error {
	c.armWrite(d)
	_, err := c.s.Write(b)
	c.disarmWrite()
	return c.deadlineErr(err)
}

// ReadFrame reads one frame of at most max bytes: its first byte must come
// within wait, the rest within d of it. The body is valid until the next
// ReadFrame. A clean end of the stream before the frame is io.EOF.
func (c *Conn) ReadFrame(max int, wait, d time.Duration) ([]byte, error) {
	c.arm(wait)
	if _, err := c.r.Peek(1); err != nil {
		c.disarm()
		return nil, c.deadlineErr(err)
	}
	c.arm(d)
	b, err := c.fr.Next(max)
	c.disarm()
	if err != nil {
		return nil, c.deadlineErr(err)
	}
	return b, nil
}

// ReadFrameInto reads a frame that must hold exactly len(b) bytes, within
// d, straight into b (a buffer the caller reuses, say), and returns the
// frame's size on the wire, its length prefix included. A longer frame is
// refused before its body is read; a shorter one is read, dropped and
// refused (ErrProtocol both).
func (c *Conn) ReadFrameInto(b []byte, d time.Duration) (int, error) {
	c.arm(d)
	defer c.disarm()
	l, err := ReadUvarint(c.r)
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("frame length: %w", err)
		}
		return 0, c.deadlineErr(err)
	}
	n := len(b)
	if l > uint64(n) {
		return 0, fmt.Errorf("%w: %w: %d bytes, at most %d here", ErrProtocol, ErrFrameTooLarge, l, n)
	}
	size := UvarintLen(l) + int(l)
	if int(l) != n {
		if _, err := io.CopyN(io.Discard, c.r, int64(l)); err != nil {
			return 0, c.deadlineErr(fmt.Errorf("frame body: %w", noEOF(err)))
		}
		return size, fmt.Errorf("%w: a frame of %d bytes where %d are due", ErrProtocol, l, n)
	}
	if _, err := io.ReadFull(c.r, b); err != nil {
		return 0, c.deadlineErr(fmt.Errorf("frame body: %w", noEOF(err)))
	}
	return size, nil
}

// Buffered is the number of bytes read from the stream that no frame has
// taken yet: more than 0 means the peer's next frame has begun to arrive.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// Reset stops the watchdog and aborts the stream both ways.
func (c *Conn) Reset() {
	c.disarm()
	c.disarmWrite()
	c.s.Reset()
}

// Finish stops the watchdog and closes the stream gracefully: what was
// written (an error message, say) still reaches the peer before the end
// of the stream.
func (c *Conn) Finish() {
	c.disarm()
	c.disarmWrite()
	if err := c.s.Close(); err != nil {
		c.s.Reset()
	}
}
