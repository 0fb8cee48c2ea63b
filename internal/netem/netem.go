// Package netem emulates network links under real libp2p hosts in one
// process: a one-way delay and per-host upload and download rates, in
// user space, for benchmarks on machines whose kernel has no netem.
//
// Each host has a Port, its access link: one token bucket for what it
// sends and one for what it receives, shared by all its connections, as a
// home connection's uplink and downlink are. A host dials through
// Net.Dialer (p2p.TCPDialer), which wraps every connection it makes: the
// wrapper holds each chunk written for the delay and the rates of the
// sender's upload and the receiver's download, in both directions, so a
// connection costs its round trip and its rates whichever side made it.
// Every host of the emulated network must dial through it, and Attach
// names each host's listen addresses so a dialer knows whose download it
// sends into. A chunk passes the sender's upload, then the link's delay,
// then the receiver's download, each a stage of its own: a chunk waiting
// for a busy download does not hold the upload, which goes on sending to
// others, as a router's queues do.
package netem

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"
)

// chunk is the most bytes one packet of the emulation carries: the unit
// the rates are charged in and the delay is applied to.
const chunk = 16 << 10

// Net is an emulated network: every link has the same one-way delay and
// every host the same upload and download rate.
type Net struct {
	delay time.Duration
	rate  float64 // bytes per second, each way, per host; 0: unlimited

	mu    sync.Mutex
	ports map[string]*Port // "ip:port" a host listens on → its port
}

// New returns a network whose links delay each byte by delay one way
// (a round trip costs twice that) and whose hosts upload and download
// bytesPerSec each (0: no limit).
func New(delay time.Duration, bytesPerSec float64) *Net {
	if delay < 0 || bytesPerSec < 0 {
		panic(fmt.Sprintf("netem: negative delay %v or rate %v", delay, bytesPerSec))
	}
	return &Net{delay: delay, rate: bytesPerSec, ports: make(map[string]*Port)}
}

// Port is one host's access link.
type Port struct {
	up, down *rate.Limiter // nil: unlimited
}

// NewPort returns a host's access link at the network's rates.
func (n *Net) NewPort() *Port {
	if n.rate == 0 {
		return &Port{}
	}
	// The burst is 20 ms of the rate, and a few chunks at least: enough
	// for the rate not to be lost to a goroutine woken late on a busy
	// machine, little enough that a transfer of a second keeps to it.
	burst := max(4*chunk, int(n.rate/50))
	return &Port{
		up:   rate.NewLimiter(rate.Limit(n.rate), burst),
		down: rate.NewLimiter(rate.Limit(n.rate), burst),
	}
}

// Attach says that the host of p listens on addrs (its host's Addrs):
// connections dialed to them are charged to p's download and upload.
func (n *Net) Attach(p *Port, addrs ...ma.Multiaddr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		na, err := manet.ToNetAddr(a)
		if err != nil {
			continue // not TCP or UDP: QUIC, relays
		}
		n.ports[na.String()] = p
	}
}

func (n *Net) port(addr string) *Port {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ports[addr]
}

// Dialer returns the dialer for the host of p (p2p.TCPDialer).
func (n *Net) Dialer(p *Port) tcp.DialerForAddr {
	if p == nil {
		p = &Port{}
	}
	return func(ma.Multiaddr) (tcp.ContextDialer, error) {
		return dialer{n: n, local: p}, nil
	}
}

type dialer struct {
	n     *Net
	local *Port
}

func (d dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	remote := d.n.port(address)
	if remote == nil {
		remote = &Port{}
	}
	return newConn(c, d.n.delay, d.n.rate,
		stages{up: d.local.up, down: remote.down},
		stages{up: remote.up, down: d.local.down}), nil
}

// stages are the limits one direction of a connection passes: the
// sender's upload and the receiver's download (nil: unlimited).
type stages struct{ up, down *rate.Limiter }

// packet is a chunk on its way, and when it arrives.
type packet struct {
	b   *[]byte // from chunks
	n   int
	due time.Time
}

// chunks recycles packets' buffers: fresh memory for every chunk costs
// more CPU than the rest of the emulation.
var chunks = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}

// conn is a TCP connection seen through the emulated link. Write charges
// this side's upload and queues; a goroutine sends what is due once the
// peer's download allows. Another reads what the peer sent, charges the
// peer's upload and queues it; Read takes what is due once this side's
// download allows.
type conn struct {
	net.Conn
	delay   time.Duration
	out, in stages

	ctx    context.Context
	cancel context.CancelFunc
	outq   chan packet
	inq    chan packet
	err    atomic.Pointer[error] // why the link broke, once it did
	rerr   error                 // what ended the reads; set before inq closes

	cur          []byte  // the unread rest of the packet Read holds
	held         *[]byte // its buffer, back to chunks once read
	readDeadline atomic.Pointer[time.Time]
}

func newConn(c net.Conn, delay time.Duration, bytesPerSec float64, out, in stages) *conn {
	// Queues long enough for twice the bytes in flight on the link
	// (rate × delay), so that the delay does not cut the rate.
	depth := 64
	if bytesPerSec > 0 {
		depth = max(depth, int(2*bytesPerSec*delay.Seconds()/chunk)+1)
	} else if delay > 0 {
		depth = 1024
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &conn{Conn: c, delay: delay, out: out, in: in, ctx: ctx, cancel: cancel,
		outq: make(chan packet, depth), inq: make(chan packet, depth)}
	go w.send()
	go w.receive()
	return w
}

func (c *conn) fail(err error) {
	c.err.CompareAndSwap(nil, &err)
	c.cancel()
}

func (c *conn) broken() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return net.ErrClosed
}

// charge waits until l allows k bytes (nil: at once).
func charge(ctx context.Context, l *rate.Limiter, k int) error {
	if l == nil {
		return nil
	}
	return l.WaitN(ctx, k)
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *conn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), chunk)
		if err := charge(c.ctx, c.out.up, k); err != nil {
			return n, c.broken()
		}
		buf := chunks.Get().(*[]byte)
		copy(*buf, b[:k])
		select {
		case c.outq <- packet{b: buf, n: k, due: time.Now().Add(c.delay)}:
		case <-c.ctx.Done():
			chunks.Put(buf)
			return n, c.broken()
		}
		n += k
		b = b[k:]
	}
	return n, nil
}

func (c *conn) send() {
	for {
		select {
		case p := <-c.outq:
			if !sleepUntil(c.ctx, p.due) || charge(c.ctx, c.out.down, p.n) != nil {
				return
			}
			_, err := c.Conn.Write((*p.b)[:p.n])
			chunks.Put(p.b)
			if err != nil {
				c.fail(err)
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *conn) receive() {
	defer close(c.inq)
	for {
		buf := chunks.Get().(*[]byte)
		k, err := c.Conn.Read(*buf)
		if k > 0 {
			if charge(c.ctx, c.in.up, k) != nil {
				c.rerr = c.broken()
				return
			}
			select {
			case c.inq <- packet{b: buf, n: k, due: time.Now().Add(c.delay)}:
			case <-c.ctx.Done():
				c.rerr = c.broken()
				return
			}
		} else {
			chunks.Put(buf)
		}
		if err != nil {
			c.rerr = err
			return
		}
	}
}

func (c *conn) Read(b []byte) (int, error) {
	if len(c.cur) == 0 {
		var deadline <-chan time.Time
		if t := c.readDeadline.Load(); t != nil && !t.IsZero() {
			tm := time.NewTimer(time.Until(*t))
			defer tm.Stop()
			deadline = tm.C
		}
		select {
		case p, ok := <-c.inq:
			if !ok {
				return 0, c.rerr
			}
			if !sleepUntil(c.ctx, p.due) || charge(c.ctx, c.in.down, p.n) != nil {
				chunks.Put(p.b)
				return 0, c.broken()
			}
			c.held, c.cur = p.b, (*p.b)[:p.n]
		case <-deadline:
			return 0, os.ErrDeadlineExceeded
		case <-c.ctx.Done():
			return 0, c.broken()
		}
	}
	n := copy(b, c.cur)
	c.cur = c.cur[n:]
	if len(c.cur) == 0 {
		chunks.Put(c.held)
		c.held = nil
	}
	return n, nil
}

// Close drops what is still in flight, as a host that goes does.
func (c *conn) Close() error {
	c.fail(net.ErrClosed)
	return c.Conn.Close()
}

// SetDeadline sets the read deadline Read keeps and the write deadline of
// the connection underneath (the sending goroutine's).
func (c *conn) SetDeadline(t time.Time) error {
	c.readDeadline.Store(&t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(&t)
	return nil
}

var _ net.Conn = (*conn)(nil)
