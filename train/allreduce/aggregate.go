package allreduce

import (
	"fmt"
	"math"
	"slices"
)

// Aggregator is how a reducer combines the contributions to its part.
type Aggregator uint8

const (
	// Mean is the weighted mean: Σ wᵢxᵢ / Σ wᵢ per coordinate.
	Mean Aggregator = iota
	// TrimmedMean is the coordinate-wise trimmed mean: per coordinate the
	// t largest and t smallest values are dropped (ties broken by member
	// order) and the rest averaged by weight, where t is Round.Trim of the
	// contributions (rounded down, at least 1 once there are 3, and
	// always leaving at least one). One member in eight sending values
	// scaled 100× then moves no coordinate outside the honest members'
	// range for it.
	TrimmedMean
)

func (a Aggregator) String() string {
	switch a {
	case Mean:
		return "mean"
	case TrimmedMean:
		return "trimmed-mean"
	}
	return fmt.Sprintf("aggregator(%d)", uint8(a))
}

// Defaults of a Round's robustness parameters.
const (
	// DefaultTrim is the fraction TrimmedMean drops at each end.
	DefaultTrim = 0.2
	// DefaultNormFactor: a contribution whose slice of a part has a norm
	// above this many times the median of the slices' norms is refused.
	DefaultNormFactor = 10
)

// input is one member's contribution to a part: its weight and its slice
// in the round's encoding (nil for a member that contributes nothing).
type input struct {
	member int
	weight float64
	data   []byte

	// A contribution arriving on a stream (under the round's mu): ss is
	// the sum of squares its sender stated, have the pieces of data in,
	// failed says its stream broke first, busy that the stream still
	// writes into data, orphan that the round let data go meanwhile (the
	// stream gives it back).
	ss                   float64
	have                 int
	failed, busy, orphan bool
}

// reduction is what a reducer made of its inputs.
type reduction struct {
	out      []float32
	weight   float64 // total weight of the included inputs
	included []int   // members, in order
	excluded []exclusion
}

// chunk is how many values the reducer decodes and sums at a time: a
// multiple of BlockSize, small enough for the float64 sums to stay in
// cache.
const chunk = 64 * BlockSize

// trimCount is how many values TrimmedMean drops at each end of k.
func trimCount(k int, trim float64) int {
	if k < 3 {
		return 0
	}
	t := max(1, int(math.Floor(float64(k)*trim)))
	return min(t, (k-1)/2)
}

// median of xs (the mean of the two middle values for an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// reduce checks and combines the inputs to a part of length values, in
// member order, whatever order they arrived in: the same inputs give the
// same bits on every machine. Inputs whose weight is not a positive finite
// number, or that hold a value that is not finite, or whose norm is more
// than normFactor times the median norm (with at least three inputs and
// normFactor > 0) are left out with the reason.
func reduce(enc Encoding, agg Aggregator, trim, normFactor float64, length int, in []input) reduction {
	var r reduction
	reject := func(m int, format string, args ...any) {
		r.excluded = append(r.excluded, exclusion{Member: m, Kind: exclRejected, Reason: clip(fmt.Sprintf(format, args...))})
	}
	// First the inputs' weights and lengths, then one pass over their
	// values that checks them, takes their norms and, for Mean, sums them
	// as if every input were kept: that sum is the mean unless an input
	// turns out refused, when it is summed again without it.
	type cand struct {
		x    input
		ss   float64
		bad  int
		why  string // refused for its weight or length
		skip bool   // a member that only receives
	}
	cs := make([]cand, len(in))
	var total float64
	for k, x := range in {
		c := &cs[k]
		c.x, c.bad = x, -1
		switch {
		case x.weight == 0 && len(x.data) == 0:
			c.skip = true
		case !(x.weight > 0 && x.weight <= math.MaxFloat64):
			c.why = fmt.Sprintf("weight %v is not a positive finite number", x.weight)
		case len(x.data) != EncodedLen(enc, length):
			c.why = fmt.Sprintf("%d bytes, %d values of %s take %d", len(x.data), length, enc, EncodedLen(enc, length))
		default:
			total += x.weight
		}
	}
	spec := agg == Mean
	var speculative []float32
	if spec {
		speculative = getFloats(length)
	}
	var acc [chunk]float64
	buf := getFloats(chunk)
	defer putFloats(buf)
	for start := 0; start < length; start += chunk {
		n := min(chunk, length-start)
		a := acc[:n]
		clear(a)
		for k := range cs {
			c := &cs[k]
			if c.skip || c.why != "" || c.bad >= 0 {
				continue
			}
			vs := values(enc, c.x.data, start, n, buf)
			var bad int
			if spec {
				c.ss, bad = sumSquaresAcc(c.ss, vs, c.x.weight, a)
			} else {
				c.ss, bad = sumSquares(c.ss, vs)
			}
			if bad >= 0 {
				c.bad = start + bad
				spec = false
			}
		}
		if spec {
			o := speculative[start : start+n]
			for i, v := range a {
				o[i] = float32(v / total)
			}
		}
	}
	var ok []input
	var norms []float64
	for _, c := range cs {
		switch {
		case c.skip:
		case c.why != "":
			reject(c.x.member, "%s", c.why)
		case c.bad >= 0:
			reject(c.x.member, "non-finite value at element %d", c.bad)
		default:
			ok = append(ok, c.x)
			norms = append(norms, math.Sqrt(c.ss))
		}
	}
	if kept := judgeNorms(normFactor, ok, norms, reject); len(kept) < len(ok) {
		ok = kept
		spec = false
	}
	for _, x := range ok {
		r.included = append(r.included, x.member)
		r.weight += x.weight
	}
	if spec && len(ok) > 0 {
		r.out = speculative // every input kept: the sums are the mean
		return r
	}
	if speculative != nil {
		putFloats(speculative)
	}
	r.out = getFloats(length)
	if len(ok) == 0 {
		clear(r.out)
		return r
	}
	if agg == TrimmedMean && trimCount(len(ok), trim) > 0 {
		trimmedMean(enc, ok, trimCount(len(ok), trim), r.out)
	} else {
		weightedMean(enc, ok, r.weight, r.out)
	}
	return r
}

// judgeNorms returns ok without the inputs whose norm is above
// normFactor times the median of norms (with at least three inputs and
// normFactor > 0), which it rejects.
func judgeNorms(normFactor float64, ok []input, norms []float64, reject func(m int, format string, args ...any)) []input {
	if !(normFactor > 0 && len(ok) >= 3) {
		return ok
	}
	med := median(norms)
	if !(med > 0) {
		return ok
	}
	kept := make([]input, 0, len(ok))
	for i, x := range ok {
		if norms[i] > normFactor*med {
			reject(x.member, ReasonOutlier+"%.4g is %.3g× the median %.4g (limit %g×)", norms[i], norms[i]/med, med, normFactor)
			continue
		}
		kept = append(kept, x)
	}
	return kept
}

// sumSquaresOf is the sum of the squares of the length values that b
// encodes, added in order in float64 as the reducer adds them, or NaN if
// one is not finite.
func sumSquaresOf(enc Encoding, b []byte, length int) float64 {
	buf := getFloats(chunk)
	defer putFloats(buf)
	var ss float64
	for start := 0; start < length; start += chunk {
		n := min(chunk, length-start)
		var bad int
		if ss, bad = sumSquares(ss, values(enc, b, start, n, buf)); bad >= 0 {
			return math.NaN()
		}
	}
	return ss
}

// reducePiece averages the values [start, start+len(out)) of the inputs
// in (member order, all kept, of total weight total) into out as reduce
// would, and adds each input's squares of those values to ss[k]. It
// returns the input and element (from the part's start) of the first
// value that is not finite, or -1, -1. buf is scratch of chunk values,
// reused from piece to piece.
func reducePiece(enc Encoding, agg Aggregator, trim, total float64, in []input, start int, ss []float64, out, buf []float32) (int, int) {
	if agg == TrimmedMean && trimCount(len(in), trim) > 0 {
		for k, x := range in {
			for c := 0; c < len(out); c += chunk {
				n := min(chunk, len(out)-c)
				var bad int
				if ss[k], bad = sumSquares(ss[k], values(enc, x.data, start+c, n, buf)); bad >= 0 {
					return k, start + c + bad
				}
			}
		}
		trimmedMeanAt(enc, in, trimCount(len(in), trim), start, out)
		return -1, -1
	}
	var acc [chunk]float64
	for c := 0; c < len(out); c += chunk {
		n := min(chunk, len(out)-c)
		a := acc[:n]
		clear(a)
		for k, x := range in {
			var bad int
			if ss[k], bad = sumSquaresAcc(ss[k], values(enc, x.data, start+c, n, buf), x.weight, a); bad >= 0 {
				return k, start + c + bad
			}
		}
		o := out[c : c+n]
		for i, v := range a {
			o[i] = float32(v / total)
		}
	}
	return -1, -1
}

// weightedMean sets out to Σ wᵢxᵢ / total, summed in float64 in the
// order of in and rounded to float32 once.
func weightedMean(enc Encoding, in []input, total float64, out []float32) {
	var acc [chunk]float64
	buf := getFloats(chunk)
	defer putFloats(buf)
	for start := 0; start < len(out); start += chunk {
		n := min(chunk, len(out)-start)
		a := acc[:n]
		clear(a)
		for _, x := range in {
			vs := values(enc, x.data, start, n, buf)
			vs = vs[:len(a)]
			w := x.weight
			for i, v := range vs {
				// The conversion keeps the product rounded on its own,
				// never fused with the sum.
				a[i] += float64(w * float64(v))
			}
		}
		o := out[start : start+n]
		for i, v := range a {
			o[i] = float32(v / total)
		}
	}
}

// values returns count values of an encoded vector from element start (a
// multiple of BlockSize): F32 bytes as they are where possible, else
// decoded into buf.
func values(enc Encoding, b []byte, start, count int, buf []float32) []float32 {
	if enc == F32 {
		if v, ok := f32View(b[4*start : 4*(start+count)]); ok {
			return v
		}
	}
	dequantizeRange(enc, b, start, count, buf)
	return buf[:count]
}

// sumSquares adds the squares of vs to ss in float64, in order, or
// returns the index of the first value that is not finite.
func sumSquares(ss float64, vs []float32) (float64, int) {
	for i, v := range vs {
		f := float64(v)
		if f-f != 0 { // NaN or ±Inf
			return ss, i
		}
		// The conversion keeps the square rounded on its own, never fused
		// with the sum: a sender and its reducer add the same bits.
		ss += float64(f * f)
	}
	return ss, -1
}

// sumSquaresAcc is sumSquares that also adds w times each value to a,
// as weightedMean does.
func sumSquaresAcc(ss float64, vs []float32, w float64, a []float64) (float64, int) {
	a = a[:len(vs)]
	for i, v := range vs {
		f := float64(v)
		if f-f != 0 { // NaN or ±Inf
			return ss, i
		}
		// The conversions keep the products rounded on their own, never
		// fused with the sums.
		ss += float64(f * f)
		a[i] += float64(w * f)
	}
	return ss, -1
}

// trimmedMean sets out to the coordinate-wise weighted mean of in after
// dropping the t smallest and t largest values of each coordinate (equal
// values ordered by member), summed in float64 in member order.
func trimmedMean(enc Encoding, in []input, t int, out []float32) {
	trimmedMeanAt(enc, in, t, 0, out)
}

// trimmedMeanAt is trimmedMean of the values [from, from+len(out)) of
// the inputs (from a multiple of BlockSize).
func trimmedMeanAt(enc Encoding, in []input, t, from int, out []float32) {
	k := len(in)
	bufs := make([][]float32, k)
	for i := range bufs {
		bufs[i] = make([]float32, chunk)
	}
	vals := make([][]float32, k)
	order := make([]int, k)
	keep := make([]bool, k)
	for start := 0; start < len(out); start += chunk {
		n := min(chunk, len(out)-start)
		for j, x := range in {
			vals[j] = values(enc, x.data, from+start, n, bufs[j])
		}
		for i := range n {
			// Insertion sort of the k contributions by value, then member.
			for j := range order {
				order[j] = j
			}
			for a := 1; a < k; a++ {
				for b := a; b > 0 && vals[order[b]][i] < vals[order[b-1]][i]; b-- {
					order[b], order[b-1] = order[b-1], order[b]
				}
			}
			clear(keep)
			for _, j := range order[t : k-t] {
				keep[j] = true
			}
			var sum, w float64
			for j, x := range in {
				if keep[j] {
					sum += float64(x.weight * float64(vals[j][i]))
					w += x.weight
				}
			}
			out[start+i] = float32(sum / w)
		}
	}
}

// clip shortens a reason to MaxReason bytes.
func clip(s string) string {
	if len(s) > MaxReason {
		return s[:MaxReason]
	}
	return s
}
