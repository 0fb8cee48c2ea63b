package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Every member ends with bitwise the same vector, the float64 weighted
// mean rounded once, whatever the number of members.
func TestAllReduceF32(t *testing.T) {
	for _, k := range []int{1, 2, 4, 8} {
		t.Run(fmt.Sprintf("members=%d", k), func(t *testing.T) {
			c := newCluster(t, k)
			const n = 1000 // not a multiple of BlockSize
			orig := randVecs(uint64(k), k, n, 1)
			data := clone(orig)
			w := weights(k)
			res, errs := c.run(same(c.round("f32", 20*time.Second), k, w), data, nil)
			all := allMembers(k)
			mustSucceed(t, errs, all)
			checkSame(t, data, res, all)
			checkClose(t, "average", data[0], refMean(orig, w, nil, 0, n), 1e-6, 1e-30)
			if len(res[0].Parts) != k || len(res[0].Dropped) != 0 || len(res[0].Rejected) != 0 {
				t.Fatalf("result %+v", res[0])
			}
			tw := 0.0
			for _, x := range w {
				tw += x
			}
			for i, p := range res[0].Parts {
				if p.Reducer != c.ids[i] || p.Recovered || p.Weight != tw || len(p.Included) != k {
					t.Fatalf("part %d: %+v", i, p)
				}
			}
			if k > 1 && (res[0].BytesSent < int64(4*n*(k-1)/k) || res[0].BytesReceived < int64(4*n*(k-1)/k)) {
				t.Fatalf("bytes sent %d, received %d", res[0].BytesSent, res[0].BytesReceived)
			}
		})
	}
}

func allMembers(k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = i
	}
	return out
}

func mustSucceed(t *testing.T, errs []error, who []int) {
	t.Helper()
	for _, i := range who {
		if errs[i] != nil {
			for j, err := range errs {
				t.Logf("member %d: %v", j, err)
			}
			t.Fatalf("member %d failed", i)
		}
	}
}

// A member of weight 0 receives the average and moves it not at all.
func TestWeightZero(t *testing.T) {
	const k, n = 4, 300
	c := newCluster(t, k)
	orig := randVecs(3, k, n, 1)
	for j := range orig[2] {
		orig[2][j] = 1e6 // would show if it counted
	}
	data := clone(orig)
	w := []float64{1, 2.5, 0, 0.5}
	res, errs := c.run(same(c.round("w0", 20*time.Second), k, w), data, nil)
	mustSucceed(t, errs, allMembers(k))
	checkSame(t, data, res, allMembers(k))
	checkClose(t, "average", data[2], refMean(orig, w, nil, 0, n), 1e-6, 1e-30)
	if len(res[0].Dropped) != 0 {
		t.Fatalf("dropped %v: a member of weight 0 is not dropped", res[0].Dropped)
	}
	for _, p := range res[0].Parts {
		if slices.Contains(p.Included, c.ids[2]) || p.Weight != 4 {
			t.Fatalf("part %+v includes the member of weight 0", p)
		}
	}
}

// Part sizes chosen by the caller, empty parts among them; with Int8 the
// parts begin on block boundaries.
func TestPartSizes(t *testing.T) {
	const k = 4
	c := newCluster(t, k)
	for _, tc := range []struct {
		enc   Encoding
		sizes []int
	}{
		{F32, []int{0, 301, 7, 692}},
		{F32, []int{1000, 0, 0, 0}},
		{Int8, []int{128, 0, 640, 232}},
	} {
		t.Run(fmt.Sprintf("%s%v", tc.enc, tc.sizes), func(t *testing.T) {
			n := 0
			for _, s := range tc.sizes {
				n += s
			}
			orig := randVecs(5, k, n, 1)
			data := clone(orig)
			r := c.round(fmt.Sprintf("sizes%s%v", tc.enc, tc.sizes), 20*time.Second)
			r.PartSizes, r.Encoding = tc.sizes, tc.enc
			res, errs := c.run(same(r, k, nil), data, nil)
			mustSucceed(t, errs, allMembers(k))
			checkSame(t, data, res, allMembers(k))
			off := 0
			for i, p := range res[0].Parts {
				if p.Offset != off || p.Len != tc.sizes[i] {
					t.Fatalf("part %d at %d+%d, want %d+%d", i, p.Offset, p.Len, off, tc.sizes[i])
				}
				off += p.Len
			}
			if tc.enc == F32 {
				checkClose(t, "average", data[1], refMean(orig, weights(k), nil, 0, n), 1e-6, 1e-30)
			}
		})
	}
}

// A vector shorter than the member count (most parts empty), and an
// empty one.
func TestShortVector(t *testing.T) {
	const k = 4
	c := newCluster(t, k)
	for _, n := range []int{3, 0} {
		orig := randVecs(9, k, n, 1)
		data := clone(orig)
		res, errs := c.run(same(c.round(fmt.Sprintf("short%d", n), 20*time.Second), k, nil), data, nil)
		mustSucceed(t, errs, allMembers(k))
		checkSame(t, data, res, allMembers(k))
		checkClose(t, "average", data[3], refMean(orig, weights(k), nil, 0, n), 1e-6, 1e-30)
		if len(res[0].Parts) != k {
			t.Fatalf("n=%d: %d parts", n, len(res[0].Parts))
		}
	}
}

// Int8 and Q4 rounds: every member gets the same bits, within the
// quantization error of the reference: half a step of the contributions'
// block scales plus half a step of the average's.
func TestQuantizedRound(t *testing.T) {
	const k, n = 4, 1000
	c := newCluster(t, k)
	for _, tc := range []struct {
		enc Encoding
		q   float64
	}{{Int8, 127}, {Q4, 7}} {
		t.Run(tc.enc.String(), func(t *testing.T) {
			orig := randVecs(11, k, n, 0.1)
			data := clone(orig)
			r := c.round("quant-"+tc.enc.String(), 20*time.Second)
			r.Encoding = tc.enc
			w := weights(k)
			res, errs := c.run(same(r, k, w), data, nil)
			mustSucceed(t, errs, allMembers(k))
			checkSame(t, data, res, allMembers(k))
			want := refMean(orig, w, nil, 0, n)
			for b := 0; b < n; b += BlockSize {
				end := min(n, b+BlockSize)
				var inMax, outMax float64
				for i := range k {
					for _, v := range orig[i][b:end] {
						inMax = max(inMax, math.Abs(float64(v)))
					}
				}
				for _, v := range want[b:end] {
					outMax = max(outMax, math.Abs(v))
				}
				bound := (inMax/tc.q/2+outMax/tc.q/2)*1.001 + 1e-12
				for j := b; j < end; j++ {
					if d := math.Abs(float64(data[0][j]) - want[j]); d > bound {
						t.Fatalf("element %d: %v, want %v (error %.3g > %.3g)", j, data[0][j], want[j], d, bound)
					}
				}
			}
		})
	}
}

// A member whose contribution holds a NaN is left out with the reason,
// in F32 and in Int8 (where the block's scale carries the NaN).
func TestNaNRejected(t *testing.T) {
	const k, n = 4, 500
	c := newCluster(t, k)
	for _, enc := range []Encoding{F32, Int8} {
		t.Run(enc.String(), func(t *testing.T) {
			orig := randVecs(13, k, n, 1)
			orig[1][200] = float32(math.NaN())
			orig[1][450] = float32(math.Inf(1))
			data := clone(orig)
			r := c.round("nan-"+enc.String(), 20*time.Second)
			r.Encoding = enc
			w := weights(k)
			res, errs := c.run(same(r, k, w), data, nil)
			mustSucceed(t, errs, allMembers(k))
			checkSame(t, data, res, allMembers(k))
			if !slices.Equal(res[0].Dropped, c.ids[1:2]) {
				t.Fatalf("dropped %v, want member 1", res[0].Dropped)
			}
			why := res[0].Rejected[c.ids[1]]
			if !strings.Contains(why, "non-finite") {
				t.Fatalf("rejected %v", res[0].Rejected)
			}
			for j, v := range data[0] {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("element %d is %v", j, v)
				}
			}
			if enc == F32 {
				checkParts(t, c, orig, w, res[0], data[0])
				// The parts without a NaN still hold member 1.
				for _, p := range res[0].Parts {
					bad := p.Offset <= 200 && 200 < p.Offset+p.Len || p.Offset <= 450 && 450 < p.Offset+p.Len
					if slices.Contains(p.Included, c.ids[1]) == bad {
						t.Fatalf("part %+v: member 1 included %v", p, !bad)
					}
				}
			}
		})
	}
}

// A member's own check refuses a contribution to the part it reduces:
// every member learns it, and that part averages the others; the parts
// other members reduce (without a check) keep it.
func TestCheckRefuses(t *testing.T) {
	const k, n = 3, 300
	c := newCluster(t, k)
	orig := randVecs(17, k, n, 1)
	data := clone(orig)
	w := weights(k)
	rounds := same(c.round("check", 20*time.Second), k, w)
	var seen []int
	rounds[0].Check = func(member, offset int, values []float32) string {
		seen = append(seen, member)
		if offset != 0 {
			return "wrong part"
		}
		if !slices.Equal(values, orig[member][:len(values)]) {
			return "not what it sent"
		}
		if member == 2 {
			return "recomputed and found different"
		}
		return ""
	}
	res, errs := c.run(rounds, data, nil)
	mustSucceed(t, errs, allMembers(k))
	checkSame(t, data, res, allMembers(k))
	slices.Sort(seen)
	if !slices.Equal(seen, []int{1, 2}) {
		t.Errorf("the check saw members %v, want 1 and 2", seen)
	}
	for i, r := range res {
		if !slices.Equal(r.Dropped, c.ids[2:3]) || r.Rejected[c.ids[2]] != "recomputed and found different" {
			t.Fatalf("member %d: dropped %v, rejected %v", i, r.Dropped, r.Rejected)
		}
	}
	checkParts(t, c, orig, w, res[0], data[0])
	for i, p := range res[0].Parts {
		if slices.Contains(p.Included, c.ids[2]) == (i == 0) {
			t.Errorf("part %d: member 2 included: %v", i, slices.Contains(p.Included, c.ids[2]))
		}
	}
}

// With TrimmedMean among 8, one member sending 100× the values moves no
// coordinate out of the honest members' range, and the average barely.
func TestTrimmedMeanAttacker(t *testing.T) {
	const k, n = 8, 400
	c := newCluster(t, k)
	orig := randVecs(17, k, n, 1)
	for j := range orig[5] {
		orig[5][j] *= 100
	}
	data := clone(orig)
	r := c.round("trim", 20*time.Second)
	r.Aggregate, r.NormFactor = TrimmedMean, -1 // the trim alone
	w := make([]float64, k)
	for i := range w {
		w[i] = 1
	}
	res, errs := c.run(same(r, k, w), data, nil)
	mustSucceed(t, errs, allMembers(k))
	checkSame(t, data, res, allMembers(k))
	honest := []int{0, 1, 2, 3, 4, 6, 7}
	want := refMean(orig, w, honest, 0, n)
	var worst float64
	for j := range n {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, i := range honest {
			lo, hi = min(lo, float64(orig[i][j])), max(hi, float64(orig[i][j]))
		}
		v := float64(data[0][j])
		if v < lo || v > hi {
			t.Fatalf("element %d: %v outside the honest range [%v, %v]", j, v, lo, hi)
		}
		worst = max(worst, math.Abs(v-want[j]))
	}
	// The honest values are N(0,1): the trimmed mean of 7 of them stays
	// well within one standard deviation of their mean.
	if worst > 1 {
		t.Fatalf("the attacker moved an element by %v", worst)
	}
	// The plain mean moves by about 100/8 times a value.
	plain := refMean(orig, w, allMembers(k), 0, n)
	var plainWorst float64
	for j := range n {
		plainWorst = max(plainWorst, math.Abs(plain[j]-want[j]))
	}
	if plainWorst < 10*worst {
		t.Fatalf("trimmed mean moved %v, plain mean %v", worst, plainWorst)
	}
}

// With Mean, a contribution 100× the others' norm is refused.
func TestNormCheck(t *testing.T) {
	const k, n = 4, 400
	c := newCluster(t, k)
	orig := randVecs(19, k, n, 1)
	for j := range orig[0] {
		orig[0][j] *= 100
	}
	data := clone(orig)
	w := weights(k)
	res, errs := c.run(same(c.round("norm", 20*time.Second), k, w), data, nil)
	mustSucceed(t, errs, allMembers(k))
	checkSame(t, data, res, allMembers(k))
	if !slices.Equal(res[0].Dropped, c.ids[:1]) || !strings.Contains(res[0].Rejected[c.ids[0]], "median") {
		t.Fatalf("dropped %v, rejected %v", res[0].Dropped, res[0].Rejected)
	}
	checkClose(t, "average", data[0], refMean(orig, w, []int{1, 2, 3}, 0, n), 1e-6, 1e-30)
}

// Members that state the round differently are refused with ErrMismatch.
func TestMismatch(t *testing.T) {
	c := newCluster(t, 3)
	pair := &cluster{hosts: c.hosts[:2], svcs: c.svcs[:2], ids: c.ids[:2]}
	t.Run("order", func(t *testing.T) {
		r := pair.round("order", 10*time.Second)
		rs := same(r, 2, nil)
		rs[1].Members = []peer.ID{pair.ids[1], pair.ids[0]}
		data := randVecs(1, 2, 100, 1)
		_, errs := pair.run(rs, data, nil)
		for i, err := range errs {
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "differ") {
				t.Fatalf("member %d: %v, want ErrMismatch", i, err)
			}
		}
	})
	t.Run("length", func(t *testing.T) {
		data := [][]float32{make([]float32, 100), make([]float32, 101)}
		_, errs := pair.run(same(pair.round("length", 10*time.Second), 2, nil), data, nil)
		for i, err := range errs {
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("member %d: %v, want ErrMismatch", i, err)
			}
		}
	})
	t.Run("odd one out", func(t *testing.T) {
		orig := randVecs(2, 3, 200, 1)
		orig[2] = orig[2][:150]
		data := clone(orig)
		start := time.Now()
		res, errs := c.run(same(c.round("odd", 10*time.Second), 3, nil), data, nil)
		if !errors.Is(errs[2], ErrMismatch) {
			t.Fatalf("the odd member: %v, want ErrMismatch", errs[2])
		}
		mustSucceed(t, errs, []int{0, 1})
		checkSame(t, data, res, []int{0, 1})
		if !slices.Contains(res[0].Dropped, c.ids[2]) {
			t.Fatalf("dropped %v", res[0].Dropped)
		}
		checkClose(t, "average", data[0], refMean(orig, weights(3), []int{0, 1}, 0, 200), 1e-6, 1e-30)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v: a mismatch is known at once", d)
		}
	})
}

// Rounds that cannot run are refused before anything is sent.
func TestInvalidRound(t *testing.T) {
	c := newCluster(t, 2)
	s := c.svcs[0]
	ok := c.round("valid", 10*time.Second)
	data := make([]float32, 200)
	for _, tc := range []struct {
		name string
		edit func(*Round)
	}{
		{"no ID", func(r *Round) { r.ID = "" }},
		{"long ID", func(r *Round) { r.ID = strings.Repeat("x", MaxRoundID+1) }},
		{"not a member", func(r *Round) { r.Members = c.ids[1:] }},
		{"twice", func(r *Round) { r.Members = append(slices.Clone(c.ids), c.ids[0]) }},
		{"negative weight", func(r *Round) { r.Weight = -1 }},
		{"NaN weight", func(r *Round) { r.Weight = math.NaN() }},
		{"no deadline", func(r *Round) { r.Deadline = time.Time{} }},
		{"encoding", func(r *Round) { r.Encoding = 9 }},
		{"aggregator", func(r *Round) { r.Aggregate = 9 }},
		{"trim", func(r *Round) { r.Trim = 0.5 }},
		{"norm factor", func(r *Round) { r.NormFactor = math.Inf(1) }},
		{"sizes count", func(r *Round) { r.PartSizes = []int{200} }},
		{"sizes sum", func(r *Round) { r.PartSizes = []int{100, 99} }},
		{"negative size", func(r *Round) { r.PartSizes = []int{201, -1} }},
		{"unaligned", func(r *Round) { r.Encoding, r.PartSizes = Int8, []int{100, 100} }},
	} {
		r := ok
		tc.edit(&r)
		_, err := s.AllReduce(context.Background(), r, data)
		if !errors.Is(err, ErrInvalidRound) {
			t.Errorf("%s: %v, want ErrInvalidRound", tc.name, err)
		}
	}
	// An ID in use.
	r := ok
	r.Members, r.Weight = c.ids[:1], 1
	if _, err := s.AllReduce(context.Background(), r, data); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllReduce(context.Background(), r, data); !errors.Is(err, ErrRoundActive) {
		t.Fatalf("the same ID again: %v, want ErrRoundActive", err)
	}
}

// The caller's context ends the round early, with its error.
func TestCallerCancel(t *testing.T) {
	c := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	data := make([]float32, 100)
	_, err := c.svcs[0].AllReduce(ctx, same(c.round("cancel", 20*time.Second), 2, nil)[0], data)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

// Close during a round: the round returns ErrClosed at once, and no
// goroutine of the service is left.
func TestCloseDuringRound(t *testing.T) {
	c := newCluster(t, 3)
	data := randVecs(23, 3, 300, 1)
	rs := same(c.round("close", 30*time.Second), 3, nil)
	done := make(chan error, 2)
	for i := range 2 { // member 2 never comes: the round waits
		go func() {
			_, err := c.svcs[i].AllReduce(context.Background(), rs[i], data[i])
			done <- err
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	c.svcs[0].Close()
	c.svcs[1].Close()
	for range 2 {
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("%v, want ErrClosed", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closing took %v", d)
	}
	if _, err := c.svcs[0].AllReduce(context.Background(), rs[0], data[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	c.svcs[0].Close() // twice is fine
	c.svcs[2].Close()
	waitNoLeak(t)
}

// A round in which no member has anything to send: with Empty it gives
// zeros of weight 0 on every member; without, it fails alike everywhere.
func TestEmptyRound(t *testing.T) {
	const k, n = 3, 700
	c := newCluster(t, k)
	for _, enc := range []Encoding{F32, Int8} {
		r := c.round(fmt.Sprintf("empty-%s", enc), 20*time.Second)
		r.Encoding, r.Empty = enc, true
		data := randVecs(5, k, n, 1)
		res, errs := c.run(same(r, k, []float64{0, 0, 0}), data, nil)
		mustSucceed(t, errs, allMembers(k))
		for i := range k {
			for j, v := range data[i] {
				if v != 0 {
					t.Fatalf("%s: member %d value %d is %v after a round with no contribution", enc, i, j, v)
				}
			}
			for _, p := range res[i].Parts {
				if p.Weight != 0 || len(p.Included) != 0 {
					t.Fatalf("%s: member %d part %+v: want weight 0, no one included", enc, i, p)
				}
			}
			if len(res[i].Dropped) != 0 {
				t.Fatalf("%s: member %d dropped %v", enc, i, res[i].Dropped)
			}
		}
	}
	r := c.round("empty-refused", 20*time.Second)
	_, errs := c.run(same(r, k, []float64{0, 0, 0}), randVecs(6, k, n, 1), nil)
	for i, err := range errs {
		if !errors.Is(err, ErrIncomplete) {
			t.Fatalf("member %d without Empty: %v, want ErrIncomplete", i, err)
		}
	}
}
