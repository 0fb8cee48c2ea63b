package allreduce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mycel-net/mycel/internal/netem"
)

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawRate measures the throughput of one raw libp2p stream between two
// hosts of the kind the cluster uses, in bytes per second.
func rawRate(b *testing.B, nw *netem.Net, size int) float64 {
	b.Helper()
	src, dst := newHostOn(b, nw), newHostOn(b, nw)
	connect(b, src, dst)
	const proto = "/mycel/bench/raw/1"
	got := make(chan int64, 1)
	dst.SetStreamHandler(proto, func(s network.Stream) {
		n, _ := io.Copy(io.Discard, s)
		s.Close()
		got <- n
	})
	s, err := src.NewStream(context.Background(), dst.ID(), proto)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for sent := 0; sent < size; sent += len(buf) {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	s.CloseWrite()
	n := <-got
	d := time.Since(start)
	s.Close()
	return float64(n) / d.Seconds()
}

// BenchmarkAllReduce averages 100 MB (25M float32) among 4 and 8 members
// and reports the achieved bus bandwidth, 2(N−1)/N·size over the time,
// against that of one raw stream between two such hosts measured in the
// same run: x-optimal is the round's time over 2(N−1)/N·size/rate. The
// links are TCP loopback as it is (links=loopback: the CPU bounds the
// rate, and the members share it), and loopback shaped to a home link
// (links=200Mbit: every host uploads and downloads 25 MB/s, 1 ms each
// way; internal/netem), where the links bound it, as between volunteers.
func BenchmarkAllReduce(b *testing.B) {
	for _, link := range []struct {
		name string
		nw   func() *netem.Net
	}{
		{"loopback", func() *netem.Net { return nil }},
		{"200Mbit", func() *netem.Net { return netem.New(time.Millisecond, 25e6) }},
	} {
		b.Run("links="+link.name, func(b *testing.B) { benchAllReduce(b, link.nw) })
	}
}

// benchValues is the length of the vectors the benchmarks average.
const benchValues = 25 << 20 / 4 * 4 // 25M values

func benchAllReduce(b *testing.B, nw func() *netem.Net) {
	rate := rawRate(b, nw(), 4*benchValues)
	b.Logf("raw stream: %.0f MB/s", rate/1e6)
	for _, k := range []int{4, 8} {
		b.Run(fmt.Sprintf("members=%d", k), func(b *testing.B) { benchMembers(b, nw, k, rate, false, false) })
	}
}

// BenchmarkAllReduceCheck is BenchmarkAllReduce's round among 4 members
// on 200Mbit links with a Check on every member that accepts every
// contribution (as a DiLoCo group's members keep the contributions they
// reduce), its parts reduced whole (path=whole) or piece by piece.
func BenchmarkAllReduceCheck(b *testing.B) {
	nw := func() *netem.Net { return netem.New(time.Millisecond, 25e6) }
	rate := rawRate(b, nw(), 4*benchValues)
	for _, whole := range []bool{true, false} {
		name := "path=pieces"
		if whole {
			name = "path=whole"
		}
		b.Run(name, func(b *testing.B) { benchMembers(b, nw, 4, rate, whole, true) })
	}
}

// benchMembers times rounds of benchValues values among k members, on
// links nw against a raw stream's rate, their parts reduced whole if
// whole is set, with a Check that accepts everything if check is.
func benchMembers(b *testing.B, nw func() *netem.Net, k int, rate float64, whole, check bool) {
	const n = benchValues
	size := float64(4 * n)
	c := newClusterOn(b, nw(), k)
	for _, s := range c.svcs {
		s.cfg.wholeParts = whole
	}
	accept := func(int, int, []float32) string { return "" }
	w := weights(k)
	round := func(id string) []Round {
		rs := same(c.round(id, 10*time.Minute), k, w)
		for i := range rs {
			if check {
				rs[i].Check = accept
			}
		}
		return rs
	}
	tl := newTimeline(c)
	data := randVecs(1, k, n, 1)
	// Two rounds first, untimed: training runs round after round,
	// and the first touch of fresh memory is slow on virtual
	// machines (about 3.5 ms a MB on the one measured). A round's
	// buffers are reused from the round before the previous one
	// (the previous one keeps its parts for late members), so the
	// third round is the first of the steady state.
	for i := range 2 {
		rs := round(fmt.Sprintf("bench/warm%d", i))
		if _, errs := c.run(rs, clone(data), nil); errors.Join(errs...) != nil {
			b.Fatal(errors.Join(errs...))
		}
	}
	b.SetBytes(int64(4 * n))
	b.ResetTimer()
	var total, cpu time.Duration
	for it := range b.N {
		rs := round(fmt.Sprintf("bench/%d", it))
		tl.reset()
		start, cpu0 := time.Now(), cpuTime()
		var wg sync.WaitGroup
		errs := make([]error, k)
		for i := range k {
			wg.Go(func() {
				_, errs[i] = c.svcs[i].AllReduce(context.Background(), rs[i], data[i])
			})
		}
		wg.Wait()
		d, dc := time.Since(start), cpuTime()-cpu0
		total += d
		cpu += dc
		b.Logf("round %d: %v, CPU %v; %s", it, d.Round(time.Millisecond), dc.Round(time.Millisecond), tl.phases(start))
		for i, err := range errs {
			if err != nil {
				b.Fatalf("member %d: %v", i, err)
			}
		}
	}
	per := total.Seconds() / float64(b.N)
	bus := 2 * float64(k-1) / float64(k) * size
	b.ReportMetric(bus/per/1e6, "busMB/s")
	b.ReportMetric(rate/1e6, "rawMB/s")
	b.ReportMetric(per/(bus/rate), "x-optimal")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// timeline records when each member of a cluster passed each step of
// its rounds (config.trace), for the phases a round's time goes to.
type timeline struct {
	mu sync.Mutex
	at [][][]time.Time // [member][event][part]
}

func newTimeline(c *cluster) *timeline {
	k := len(c.svcs)
	tl := &timeline{at: make([][][]time.Time, k)}
	for i, s := range c.svcs {
		tl.at[i] = make([][]time.Time, numEvents)
		for e := range tl.at[i] {
			tl.at[i][e] = make([]time.Time, k)
		}
		s.cfg.trace = func(_ string, ev traceEvent, part int) {
			tl.mu.Lock()
			tl.at[i][ev][part] = time.Now()
			tl.mu.Unlock()
		}
	}
	return tl
}

func (tl *timeline) reset() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, m := range tl.at {
		for _, e := range m {
			clear(e)
		}
	}
}

// phases sums the timeline up from start: when the members' last
// contributions went out (median, last), when the reducers had them all
// and began to reduce, how long a reduction took at most, when the
// first part arrived anywhere, and when the members held every part.
func (tl *timeline) phases(start time.Time) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var sent, reducing, lastPart []time.Duration
	var firstPart, reduceMax, ackMax time.Duration
	firstPart = time.Hour
	last := func(ts []time.Time) time.Duration {
		var d time.Duration
		for _, t := range ts {
			if !t.IsZero() {
				d = max(d, t.Sub(start))
			}
		}
		return d
	}
	for i, m := range tl.at {
		sent = append(sent, last(m[evSent]))
		reducing = append(reducing, m[evReducing][i].Sub(start))
		reduceMax = max(reduceMax, m[evReduced][i].Sub(m[evReducing][i]))
		lastPart = append(lastPart, last(m[evPart]))
		ackMax = max(ackMax, last(m[evAcked]))
		for j, t := range m[evPart] {
			if j != i && !t.IsZero() {
				firstPart = min(firstPart, t.Sub(start))
			}
		}
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	med := func(ds []time.Duration) time.Duration { ds = slices.Clone(ds); slices.Sort(ds); return ds[len(ds)/2] }
	return fmt.Sprintf("sent %s/%s s, reducing %s/%s s, reduce ≤%v, first part %s s, all parts %s/%s s, acked %s s (median/last)",
		ms(med(sent)), ms(slices.Max(sent)), ms(med(reducing)), ms(slices.Max(reducing)),
		reduceMax.Round(time.Millisecond), ms(firstPart), ms(med(lastPart)), ms(slices.Max(lastPart)), ms(ackMax))
}
