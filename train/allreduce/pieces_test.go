package allreduce

import (
	"math"
	"slices"
	"strings"
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
