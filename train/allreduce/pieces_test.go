package allreduce

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// piecesLen is a vector whose parts among k members take three pieces,
// the last one short.
func piecesLen(k int) int { return k * (2*PieceValues + 1000) }

// Parts of several pieces average as whole parts do: every member ends
// with the same bits, the weighted mean (or trimmed mean) of everyone.
func TestPiecesRound(t *testing.T) {
	const k = 4
	n := piecesLen(k)
	c := newCluster(t, k)
	for _, tc := range []struct {
		enc Encoding
		agg Aggregator
	}{{F32, Mean}, {Int8, Mean}, {F32, TrimmedMean}} {
		t.Run(tc.enc.String()+"/"+tc.agg.String(), func(t *testing.T) {
			orig := randVecs(21, k, n, 1)
			data := clone(orig)
			r := c.round("pieces-"+tc.enc.String()+tc.agg.String(), 30*time.Second)
			r.Encoding, r.Aggregate = tc.enc, tc.agg
			w := weights(k)
			res, errs := c.run(same(r, k, w), data, nil)
			mustSucceed(t, errs, allMembers(k))
			checkSame(t, data, res, allMembers(k))
			for _, p := range res[0].Parts {
				if got := (p.Len + PieceValues - 1) / PieceValues; got != 3 {
					t.Fatalf("part %+v takes %d pieces, want 3", p, got)
				}
				if len(p.Included) != k {
					t.Fatalf("part %+v leaves members out", p)
				}
			}
			switch {
			case tc.enc == F32 && tc.agg == Mean:
				checkParts(t, c, orig, w, res[0], data[0])
			case tc.enc == Int8:
				checkClose(t, "int8", data[0], refMean(orig, w, nil, 0, n), 0, 0.05)
			default:
				// Every coordinate lies within the members' range.
				for j := range n {
					lo, hi := orig[0][j], orig[0][j]
					for _, v := range orig[1:] {
						lo, hi = min(lo, v[j]), max(hi, v[j])
					}
					if !(data[0][j] >= lo && data[0][j] <= hi) {
						t.Fatalf("element %d: %v outside [%v, %v]", j, data[0][j], lo, hi)
					}
				}
			}
		})
	}
}

// A member that states a sum of squares its values do not add up to is
// refused (not as an outlier), however far its pieces went into the
// average: its values blown up in the last piece under a stated sum that
// looks normal, or a NaN there. The part is computed again without it,
// and every member ends with the others' mean.
func TestPiecesStatedNormChecked(t *testing.T) {
	const k, liar = 4, 1
	n := piecesLen(k)
	for _, tc := range []struct {
		name, want string
		spoil      func(v []float32)
	}{
		{"scaled", "sum of squares", func(v []float32) {
			for j := 2 * PieceValues; j < len(v); j++ {
				v[j] *= 1000
			}
		}},
		{"nan", "non-finite value at element", func(v []float32) { v[len(v)-1] = float32(math.NaN()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, k)
			orig := randVecs(22, k, n, 1)
			honest := clone(orig)
			sizes := defaultSizes(n, k)
			c.svcs[liar].cfg.statedSumSquares = func(part int, _ float64) float64 {
				at := 0
				for _, s := range sizes[:part] {
					at += s
				}
				return sumSquaresOf(F32, f32Bytes(honest[liar][at:at+sizes[part]]), sizes[part])
			}
			at := 0
			for i, s := range sizes {
				if i != liar {
					tc.spoil(orig[liar][at : at+s])
				}
				at += s
			}
			data := clone(orig)
			w := weights(k)
			res, errs := c.run(same(c.round("lie-"+tc.name, 30*time.Second), k, w), data, nil)
			mustSucceed(t, errs, allMembers(k))
			checkSame(t, data, res, allMembers(k))
			if !slices.Equal(res[0].Dropped, c.ids[liar:liar+1]) {
				t.Fatalf("dropped %v, want member %d", res[0].Dropped, liar)
			}
			why := res[0].Rejected[c.ids[liar]]
			if !strings.Contains(why, tc.want) || Outlier(why) {
				t.Fatalf("rejected for %q, want %q and not as an outlier", why, tc.want)
			}
			for i, p := range res[0].Parts {
				if slices.Contains(p.Included, c.ids[liar]) != (i == liar) {
					t.Fatalf("part %d includes the liar: %v", i, p.Included)
				}
			}
			checkParts(t, c, orig, w, res[0], data[0])
		})
	}
}

// tracer counts the trace events of a cluster's members: [member][event][part].
type tracer struct {
	mu sync.Mutex
	n  [][numEvents][]int
	ch chan struct{} // a piece of part 0 arrived somewhere
}

func newTracer(c *cluster) *tracer {
	k := len(c.svcs)
	tr := &tracer{n: make([][numEvents][]int, k), ch: make(chan struct{}, 1)}
	for i, s := range c.svcs {
		for e := range tr.n[i] {
			tr.n[i][e] = make([]int, k)
		}
		s.cfg.trace = func(_ string, ev traceEvent, part int) {
			tr.mu.Lock()
			tr.n[i][ev][part]++
			tr.mu.Unlock()
			if ev == evPiece && part == 0 {
				select {
				case tr.ch <- struct{}{}:
				default:
				}
			}
		}
	}
	return tr
}

func (tr *tracer) count(member int, ev traceEvent, part int) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.n[member][ev][part]
}

// With Check set, parts are still averaged piece by piece: Check sees
// every other member's whole contribution once, and no part is computed
// whole. A refusal that comes after pieces of the part went back has the
// part computed again without the member and its pieces sent again,
// which the members take in place of the first: every one ends with the
// mean of the others on that part.
func TestPiecesCheck(t *testing.T) {
	const k = 4
	n := piecesLen(k)
	sizes := defaultSizes(n, k)
	offs := make([]int, k)
	for i := 1; i < k; i++ {
		offs[i] = offs[i-1] + sizes[i-1]
	}
	pieces := (sizes[0] + PieceValues - 1) / PieceValues
	for _, refuse := range []bool{false, true} {
		name := "accept"
		if refuse {
			name = "refuse"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, k)
			tr := newTracer(c)
			orig := randVecs(23, k, n, 1)
			data := clone(orig)
			w := weights(k)
			rs := same(c.round("check-pieces-"+name, 30*time.Second), k, w)
			var mu sync.Mutex
			seen := make([][]int, k)
			var bad []string
			for i := range rs {
				rs[i].Check = func(member, offset int, values []float32) string {
					mu.Lock()
					seen[i] = append(seen[i], member)
					if offset != offs[i] || !slices.Equal(values, orig[member][offset:offset+sizes[i]]) {
						bad = append(bad, fmt.Sprintf("member %d checked member %d at %d, %d values: not its whole part", i, member, offset, len(values)))
					}
					mu.Unlock()
					if !refuse || i != 0 || member != 2 {
						return ""
					}
					// Refused only once a piece of the part went back.
					select {
					case <-tr.ch:
					case <-time.After(10 * time.Second):
						mu.Lock()
						bad = append(bad, "no piece went back before the check")
						mu.Unlock()
					}
					return "recomputed and found different"
				}
			}
			res, errs := c.run(rs, data, nil)
			mustSucceed(t, errs, allMembers(k))
			checkSame(t, data, res, allMembers(k))
			if len(bad) > 0 {
				t.Fatal(strings.Join(bad, "\n"))
			}
			for i := range k {
				slices.Sort(seen[i])
				var want []int
				for j := range k {
					if j != i {
						want = append(want, j)
					}
				}
				if !slices.Equal(seen[i], want) {
					t.Errorf("member %d checked %v, want each other member once: %v", i, seen[i], want)
				}
				whole := tr.count(i, evWhole, i)
				if wantWhole := refuse && i == 0; (whole > 0) != wantWhole {
					t.Errorf("member %d computed its part whole %d times; refusal here: %v", i, whole, wantWhole)
				}
			}
			checkParts(t, c, orig, w, res[0], data[0])
			for i, p := range res[0].Parts {
				if in := slices.Contains(p.Included, c.ids[2]); in == (refuse && i == 0) {
					t.Errorf("part %d: member 2 included: %v", i, in)
				}
			}
			resent := false
			for j := 1; j < k; j++ {
				got := tr.count(j, evPiece, 0)
				if !refuse && got != pieces || refuse && got < pieces {
					t.Errorf("member %d took %d pieces of part 0, the part has %d", j, got, pieces)
				}
				resent = resent || got > pieces
			}
			if refuse && !resent {
				t.Error("no member took part 0's pieces twice: the refusal came before any went back")
			}
			if refuse && (!slices.Equal(res[0].Dropped, c.ids[2:3]) || res[0].Rejected[c.ids[2]] != "recomputed and found different") {
				t.Errorf("dropped %v, rejected %v", res[0].Dropped, res[0].Rejected)
			}
		})
	}
}
