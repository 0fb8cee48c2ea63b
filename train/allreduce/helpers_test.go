package allreduce

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/mycel-net/mycel/internal/netem"
)

// cluster is k real libp2p hosts on TCP loopback, all connected, each
// with a Service.
type cluster struct {
	hosts []host.Host
	svcs  []*Service
	ids   []peer.ID
}

func newHost(tb testing.TB) host.Host { return newHostOn(tb, nil) }

// newHostOn is newHost behind a port of the emulated network nw (nil:
// plain loopback).
func newHostOn(tb testing.TB, nw *netem.Net) host.Host {
	tb.Helper()
	transport := libp2p.Transport(tcp.NewTCPTransport)
	var port *netem.Port
	if nw != nil {
		port = nw.NewPort()
		transport = libp2p.Transport(tcp.NewTCPTransport, tcp.WithDialerForAddr(nw.Dialer(port)))
	}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		transport,
		libp2p.DisableRelay(),
	)
	if err != nil {
		tb.Fatalf("libp2p host: %v", err)
	}
	tb.Cleanup(func() { h.Close() })
	if nw != nil {
		nw.Attach(port, h.Addrs()...)
	}
	return h
}

func connect(tb testing.TB, a, b host.Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		tb.Fatalf("connect: %v", err)
	}
}

func newCluster(tb testing.TB, k int, opts ...Option) *cluster {
	tb.Helper()
	return newClusterOn(tb, nil, k, opts...)
}

// newClusterOn is newCluster on the emulated network nw (nil: plain
// loopback).
func newClusterOn(tb testing.TB, nw *netem.Net, k int, opts ...Option) *cluster {
	tb.Helper()
	c := &cluster{}
	for range k {
		h := newHostOn(tb, nw)
		c.hosts = append(c.hosts, h)
		c.ids = append(c.ids, h.ID())
	}
	for i := range k {
		for j := i + 1; j < k; j++ {
			connect(tb, c.hosts[i], c.hosts[j])
		}
	}
	for _, h := range c.hosts {
		s := New(h, opts...)
		tb.Cleanup(func() { s.Close() })
		c.svcs = append(c.svcs, s)
	}
	return c
}

// round is a Round over the cluster's members with weight i+1 for
// member i.
func (c *cluster) round(id string, d time.Duration) Round {
	return Round{ID: id, Members: c.ids, Deadline: time.Now().Add(d)}
}

// run runs rounds[i] with data[i] on the members listed in who (all
// when nil), each in its own goroutine, and returns what each got.
func (c *cluster) run(rounds []Round, data [][]float32, who []int) ([]Result, []error) {
	if who == nil {
		for i := range c.svcs {
			who = append(who, i)
		}
	}
	res := make([]Result, len(c.svcs))
	errs := make([]error, len(c.svcs))
	var wg sync.WaitGroup
	for _, i := range who {
		wg.Go(func() {
			res[i], errs[i] = c.svcs[i].AllReduce(context.Background(), rounds[i], data[i])
		})
	}
	wg.Wait()
	return res, errs
}

// same gives every member the same Round, with weight w[i] (i+1 when w
// is nil).
func same(r Round, k int, w []float64) []Round {
	rs := make([]Round, k)
	for i := range rs {
		rs[i] = r
		if w == nil {
			rs[i].Weight = float64(i + 1)
		} else {
			rs[i].Weight = w[i]
		}
	}
	return rs
}

func randVecs(seed uint64, k, n int, scale float32) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	vs := make([][]float32, k)
	for i := range vs {
		vs[i] = make([]float32, n)
		for j := range vs[i] {
			vs[i][j] = scale * float32(rng.NormFloat64())
		}
	}
	return vs
}

func clone(vs [][]float32) [][]float32 {
	out := make([][]float32, len(vs))
	for i, v := range vs {
		out[i] = append([]float32(nil), v...)
	}
	return out
}

// refMean is the float64 weighted mean of the members in include (all
// with weight > 0 when nil), over elements [off, off+n).
func refMean(vs [][]float32, w []float64, include []int, off, n int) []float64 {
	if include == nil {
		for i := range vs {
			if w[i] > 0 {
				include = append(include, i)
			}
		}
	}
	out := make([]float64, n)
	var tw float64
	for _, i := range include {
		tw += w[i]
		for j := range n {
			out[j] += w[i] * float64(vs[i][off+j])
		}
	}
	for j := range out {
		out[j] /= tw
	}
	return out
}

func weights(k int) []float64 {
	w := make([]float64, k)
	for i := range w {
		w[i] = float64(i + 1)
	}
	return w
}

// checkSame fails unless every member in who ended with bitwise the same
// vector and the same description of the parts.
func checkSame(t *testing.T, data [][]float32, res []Result, who []int) {
	t.Helper()
	a := who[0]
	for _, b := range who[1:] {
		if len(data[a]) != len(data[b]) {
			t.Fatalf("members %d and %d: lengths %d and %d", a, b, len(data[a]), len(data[b]))
		}
		for j := range data[a] {
			if math.Float32bits(data[a][j]) != math.Float32bits(data[b][j]) {
				t.Fatalf("members %d and %d differ at %d: %v and %v", a, b, j, data[a][j], data[b][j])
			}
		}
		if len(res[a].Parts) != len(res[b].Parts) {
			t.Fatalf("members %d and %d: %d and %d parts", a, b, len(res[a].Parts), len(res[b].Parts))
		}
		for i := range res[a].Parts {
			pa, pb := res[a].Parts[i], res[b].Parts[i]
			if pa.Reducer != pb.Reducer || pa.Weight != pb.Weight || len(pa.Included) != len(pb.Included) {
				t.Fatalf("part %d described differently by members %d and %d: %+v, %+v", i, a, b, pa, pb)
			}
		}
		if len(res[a].Dropped) != len(res[b].Dropped) {
			t.Fatalf("members %d and %d: dropped %v and %v", a, b, res[a].Dropped, res[b].Dropped)
		}
	}
}

// checkClose fails unless got is within rel relative error of want
// (with an absolute floor abs).
func checkClose(t *testing.T, what string, got []float32, want []float64, rel, abs float64) {
	t.Helper()
	for j := range want {
		d := math.Abs(float64(got[j]) - want[j])
		if !(d <= rel*math.Abs(want[j])+abs) {
			t.Fatalf("%s: element %d is %v, want %v (error %.3g)", what, j, got[j], want[j], d)
		}
	}
}

func indexOf(ids []peer.ID, p peer.ID) int {
	for i, q := range ids {
		if q == p {
			return i
		}
	}
	return -1
}

func members(ids []peer.ID, ps []peer.ID) []int {
	var out []int
	for _, p := range ps {
		out = append(out, indexOf(ids, p))
	}
	return out
}

// checkParts checks each part of data[who] against the weighted mean of
// the part's Included members.
func checkParts(t *testing.T, c *cluster, orig [][]float32, w []float64, res Result, got []float32) {
	t.Helper()
	for i, p := range res.Parts {
		if p.Len == 0 {
			continue
		}
		inc := members(c.ids, p.Included)
		want := refMean(orig, w, inc, p.Offset, p.Len)
		checkClose(t, fmt.Sprintf("part %d", i), got[p.Offset:p.Offset+p.Len], want, 1e-6, 1e-30)
	}
}

// leaked lists the goroutines running this package's non-test code.
func leaked() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "/train/allreduce/") && !strings.Contains(g, "_test.go") {
			out = append(out, g)
		}
	}
	return out
}

// waitNoLeak waits until no goroutine of the package's code is left.
func waitNoLeak(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := leaked()
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left:\n%s", len(l), strings.Join(l, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
