package allreduce

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Round is one averaging step, as every member states it. Members must
// agree on ID, Members (and their order), the vector's length, PartSizes,
// Encoding, Aggregate, Trim, NormFactor and Empty: a hash of these travels in
// every message and a member whose hash differs is refused. Deadline and
// Weight are each member's own.
type Round struct {
	// ID is unique per job and round, e.g. jobID + "/" + round number;
	// at most MaxRoundID bytes.
	ID string
	// Members in the same order on every member; this peer among them.
	Members []peer.ID
	// Weight of this member's vector (examples or tokens it processed);
	// 0: it receives the average and contributes nothing.
	Weight float64
	// Deadline of the whole round.
	Deadline time.Time
	// Encoding of what travels: F32 (the default), Int8 or Q4.
	Encoding Encoding
	// Aggregate is Mean (weighted; the default) or TrimmedMean.
	Aggregate Aggregator
	// PartSizes optionally gives each member's part, in elements (e.g. by
	// measured bandwidth); they must add up to the vector's length, and
	// with Int8 or Q4 every non-empty part must begin at a multiple of
	// BlockSize. Default: the vector cut into blocks of BlockSize dealt
	// out as evenly as possible, the first parts taking the extra blocks.
	PartSizes []int
	// Trim is the fraction of contributions TrimmedMean drops at each end
	// of a coordinate, below 0.5; 0: DefaultTrim.
	Trim float64
	// NormFactor: a contribution whose slice of a part has a norm above
	// NormFactor times the median norm of the slices is refused (with at
	// least three contributions); 0: DefaultNormFactor; below 0: no check.
	NormFactor float64
	// Empty allows a round in which no member contributes (all of weight
	// 0): its parts are zeros of weight 0 rather than a failed round
	// (ErrIncomplete). For averagings whose members may all have nothing
	// to send, such as the first of a group whose averaging runs behind
	// its training.
	Empty bool
	// Check, if set, is called once with every other member's whole
	// contribution to a part this member reduces (as its reducer, or as
	// the replacement of a failed one), once all of it is in: the
	// member's index, the part's first index in the vector and the values
	// as decoded, which are the round's to reuse after the call (copy
	// what is kept). A non-empty reason refuses the contribution, as a
	// value that is not finite is, and every member learns it. The
	// reducer's pieces go back while the contributions arrive, before the
	// check: a refusal has the part computed again without the member and
	// sent again whole, as a sum of squares that does not add up does. It
	// is this member's own check (recomputing another's work, say): not
	// part of the round's parameters.
	Check func(member, offset int, values []float32) string
}

// PartResult says how one part of the vector was averaged.
type PartResult struct {
	Offset, Len int
	// Reducer is the member that computed the part: its own reducer, or
	// the replacement that recomputed it (Recovered).
	Reducer   peer.ID
	Recovered bool
	// Included are the members whose contributions are in the average,
	// in member order, and Weight the sum of their weights.
	Included []peer.ID
	Weight   float64
}

// ReasonMismatch is the reason in Result.Rejected of a member whose
// round parameters differ from the others': it is not a fault of its
// values, and it may well be honest (the members disagreed on who takes
// part).
const ReasonMismatch = "round parameters differ"

// ReasonOutlier begins the reason of a contribution refused for its norm,
// far above the others': a statistical judgement, which an honest
// member's work can fail too (a small share of a batch, late in
// training), unlike a value that is not finite.
const ReasonOutlier = "norm "

// Outlier says whether reason refused a contribution for its norm.
func Outlier(reason string) bool { return strings.HasPrefix(reason, ReasonOutlier) }

// Result of a round: every member that succeeds gets the same Parts,
// Dropped and Rejected.
type Result struct {
	Parts []PartResult
	// Dropped are the members left out of at least one part: they sent
	// nothing in time, or their contribution was refused. Members of
	// weight 0 that took part are not dropped.
	Dropped []peer.ID
	// Rejected gives, for the dropped members whose contribution arrived
	// and was refused, why (the first part's reason).
	Rejected map[peer.ID]string
	// Bytes this member wrote to and read from the round's streams.
	BytesSent, BytesReceived int64
}

// round is a round's state on one member.
type round struct {
	s        *Service
	id       string
	hash     [32]byte
	members  []peer.ID
	self     int
	n        int
	off      []int
	size     []int
	enc      Encoding
	agg      Aggregator
	trim     float64
	empty    bool // Round.Empty
	normFact float64
	weight   float64
	check    func(member, offset int, values []float32) string

	start, reduceAt, recoverAt, fetchAt, deadline time.Time

	// ctx lives until deadline + linger, or until the round is dropped.
	ctx    context.Context
	cancel context.CancelFunc

	// data is the caller's vector while AllReduce runs, nil after: what
	// this member contributes. It is read under dataMu's read lock and
	// written (the averages) under its lock.
	dataMu sync.RWMutex
	data   []float32

	mu       sync.Mutex
	parts    []*partState
	contrib  []*input // contributions to this member's part, by member, from their headers on
	gone     []bool   // members known to have failed: not waited for
	mismatch []bool   // members whose round parameters differ
	refused  map[int]string
	late     error         // this member's part was recovered without it
	lost     chan struct{} // closed when a part is lost or the member is late
	lostOnce sync.Once
	// acked is closed once another member took this member's own part
	// (at once with one member or an empty part): only then is it the part.
	acked     chan struct{}
	ackedOnce sync.Once
	wake      chan struct{} // the reducer's wait has something new
	force     bool          // an arbiter wants this member's part now
	reduced   bool          // the own part is computed: contributions closed
	finalize  sync.Once
	// passed are the members whose contribution to the own part passed
	// Check (read and written by reduceOwn alone): not checked again
	// when the part is computed again.
	passed []bool

	// The own part's pieces as they are computed, for the contributors'
	// streams: out holds the encoded part, its first pub pieces final
	// unless epoch moves on (the part was computed again without a
	// contribution, into a new buffer; the old ones wait in outs for the
	// round's end). progress is closed and replaced at every change.
	out      []byte
	outs     [][]byte
	pub      int
	epoch    int
	progress chan struct{}

	sent, recv atomic.Int64

	// The round's buffers (contributions, parts) go back to the pool once
	// the round is dropped and nothing holds it: AllReduce, the streams
	// it serves, its arbitrations.
	refMu          sync.Mutex
	refs           int
	dropped, freed bool
}

// ref takes a hold on the round's buffers; false once they are freed.
func (rd *round) ref() bool {
	rd.refMu.Lock()
	defer rd.refMu.Unlock()
	if rd.freed {
		return false
	}
	rd.refs++
	return true
}

// unref lets a hold go.
func (rd *round) unref() {
	rd.refMu.Lock()
	rd.refs--
	free := rd.refs == 0 && rd.dropped && !rd.freed
	rd.freed = rd.freed || free
	rd.refMu.Unlock()
	if free {
		rd.freeBuffers()
	}
}

// markDropped notes that the round is gone from the service: its
// buffers are freed once the last hold goes.
func (rd *round) markDropped() {
	rd.refMu.Lock()
	rd.dropped = true
	free := rd.refs == 0 && !rd.freed
	rd.freed = rd.freed || free
	rd.refMu.Unlock()
	if free {
		rd.freeBuffers()
	}
}

// freeBuffers gives the parts' and contributions' buffers back.
func (rd *round) freeBuffers() {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.parts[rd.self].msg == nil {
		putBuf(rd.out)
	}
	rd.out = nil
	for _, b := range rd.outs {
		putBuf(b)
	}
	rd.outs = nil
	for _, ps := range rd.parts {
		if ps.msg != nil {
			putBuf(ps.msg.Data)
			ps.msg.Data = nil
		}
	}
	rd.releaseContribs()
}

// releaseContribs gives the contributions' buffers back (under mu); a
// stream still writing into one gives it back itself.
func (rd *round) releaseContribs() {
	for _, in := range rd.contrib {
		if in == nil {
			continue
		}
		if in.busy {
			in.orphan = true
			continue
		}
		putBuf(in.data)
		in.data = nil
	}
}

// pieces is the number of pieces of part i, and piece the values of its
// piece p (from the part's start).
func (rd *round) pieces(i int) int { return (rd.size[i] + PieceValues - 1) / PieceValues }

func (rd *round) piece(i, p int) (start, n int) {
	start = p * PieceValues
	return start, min(PieceValues, rd.size[i]-start)
}

// pieceBytes is piece p of part i within the part's encoding b.
func (rd *round) pieceBytes(b []byte, i, p int) []byte {
	start, n := rd.piece(i, p)
	return b[EncodedLen(rd.enc, start):EncodedLen(rd.enc, start+n)]
}

// complete says whether a contribution's data is all in (under mu).
func (rd *round) complete(in *input) bool {
	return in.weight == 0 && len(in.data) == 0 || in.have == rd.pieces(rd.self)
}

// publish tells the own part's streams of new pieces (under mu).
func (rd *round) publish() {
	close(rd.progress)
	rd.progress = make(chan struct{})
}

// partState is what a member knows of one part.
type partState struct {
	done chan struct{} // closed when msg is set
	msg  *partMsg

	// failed is closed when the part's reducer is known to have failed,
	// or the part was deferred to a replacement reducer.
	failed     chan struct{}
	failErr    error
	deferred   bool
	cancelOrig func() // resets the stream to the part's reducer
	receiving  bool   // the reducer's PART is arriving
	lost       error  // recovery gave up
	arb        *arbitration
	// hint is the replacement reducer that asked for this member's
	// slice (-1: none); yieldTo an earlier replacement whose result this
	// member, recovering the part too, takes instead of its own (-1).
	hint, yieldTo int
}

// arbitration is a replacement reducer's recovery of a part.
type arbitration struct {
	done chan struct{}
	err  error
}

// hashRound is the hash every message of a round carries.
func hashRound(id string, members []peer.ID, n int, sizes []int, enc Encoding, agg Aggregator, trim, normFactor float64, empty bool) [32]byte {
	h := sha256.New()
	var b []byte
	b = append(b, "mycel/allreduce/2\x00"...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(members)))
	for _, m := range members {
		b = binary.AppendUvarint(b, uint64(len(m)))
		b = append(b, m...)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, s := range sizes {
		b = binary.AppendUvarint(b, uint64(s))
	}
	b = append(b, byte(enc), byte(agg))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(trim))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(normFactor))
	if empty {
		b = append(b, 1)
	}
	h.Write(b)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// defaultSizes deals the blocks of n values out to k parts.
func defaultSizes(n, k int) []int {
	blocks := (n + BlockSize - 1) / BlockSize
	sizes := make([]int, k)
	at := 0
	for i := range sizes {
		b := blocks / k
		if i < blocks%k {
			b++
		}
		end := min(n, at+b*BlockSize)
		sizes[i] = end - at
		at = end
	}
	return sizes
}

// newRound checks r and builds this member's state for it.
func (s *Service) newRound(r Round, data []float32) (*round, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRound, fmt.Sprintf(format, args...))
	}
	if len(r.ID) == 0 || len(r.ID) > MaxRoundID {
		return nil, bad("ID of %d bytes (1..%d)", len(r.ID), MaxRoundID)
	}
	k := len(r.Members)
	if k == 0 || k > MaxMembers {
		return nil, bad("%d members (1..%d)", k, MaxMembers)
	}
	self := -1
	seen := make(map[peer.ID]bool, k)
	for i, m := range r.Members {
		if seen[m] {
			return nil, bad("member %s listed twice", m)
		}
		seen[m] = true
		if m == s.h.ID() {
			self = i
		}
	}
	if self < 0 {
		return nil, bad("this peer %s is not among the members", s.h.ID())
	}
	if !(r.Weight >= 0 && r.Weight <= math.MaxFloat64) {
		return nil, bad("weight %v", r.Weight)
	}
	if r.Deadline.IsZero() {
		return nil, bad("no deadline")
	}
	if !r.Encoding.valid() {
		return nil, bad("encoding %s", r.Encoding)
	}
	if r.Aggregate > TrimmedMean {
		return nil, bad("aggregator %s", r.Aggregate)
	}
	trim := r.Trim
	if trim == 0 {
		trim = DefaultTrim
	}
	if !(trim > 0 && trim < 0.5) {
		return nil, bad("trim %v (0..0.5)", r.Trim)
	}
	nf := r.NormFactor
	if nf == 0 {
		nf = DefaultNormFactor
	}
	if math.IsNaN(nf) || math.IsInf(nf, 0) {
		return nil, bad("norm factor %v", r.NormFactor)
	}
	n := len(data)
	if n > MaxElements {
		return nil, bad("%d elements (at most %d)", n, MaxElements)
	}
	sizes := r.PartSizes
	if sizes == nil {
		sizes = defaultSizes(n, k)
	} else {
		if len(sizes) != k {
			return nil, bad("%d part sizes for %d members", len(sizes), k)
		}
		sum := 0
		for i, sz := range sizes {
			if sz < 0 || sz > n {
				return nil, bad("part %d of %d elements", i, sz)
			}
			if sz > 0 && r.Encoding != F32 && sum%BlockSize != 0 {
				return nil, bad("part %d begins at %d, not a multiple of %d", i, sum, BlockSize)
			}
			sum += sz
		}
		if sum != n {
			return nil, bad("part sizes add up to %d, the vector has %d", sum, n)
		}
		sizes = append([]int(nil), sizes...)
	}
	rd := &round{
		s: s, id: r.ID, members: append([]peer.ID(nil), r.Members...), self: self, n: n,
		size: sizes, off: make([]int, k), enc: r.Encoding, agg: r.Aggregate,
		trim: trim, normFact: nf, weight: r.Weight, data: data, check: r.Check,
		parts: make([]*partState, k), contrib: make([]*input, k), gone: make([]bool, k), progress: make(chan struct{}),
		mismatch: make([]bool, k), passed: make([]bool, k), refused: make(map[int]string), wake: make(chan struct{}, 1),
		lost: make(chan struct{}), acked: make(chan struct{}),
		refs: 1, // AllReduce's
	}
	at := 0
	for i, sz := range sizes {
		rd.off[i] = at
		at += sz
	}
	rd.hash = hashRound(r.ID, rd.members, n, sizes, r.Encoding, r.Aggregate, trim, nf, r.Empty)
	rd.empty = r.Empty
	for i := range rd.parts {
		rd.parts[i] = &partState{done: make(chan struct{}), failed: make(chan struct{}), hint: -1, yieldTo: -1}
	}
	rd.start = time.Now()
	rd.deadline = r.Deadline
	span := rd.deadline.Sub(rd.start)
	at2 := func(f float64) time.Time { return rd.start.Add(time.Duration(f * float64(span))) }
	rd.reduceAt = at2(s.cfg.reduceAt)
	rd.recoverAt = at2(s.cfg.recoverAt)
	rd.fetchAt = at2((s.cfg.recoverAt + 1) / 2)
	rd.ctx, rd.cancel = context.WithDeadline(s.ctx, rd.deadline.Add(s.cfg.linger))
	return rd, nil
}

// part returns this member's values of part i.
func (rd *round) slice(i int) []float32 { return rd.data[rd.off[i] : rd.off[i]+rd.size[i]] }

// ownInput is this member's contribution to part i as it travels
// (encoded, in a buffer from the pool), or nil when data is no longer the
// caller's to read.
func (rd *round) ownInput(i int) *input {
	rd.dataMu.RLock()
	defer rd.dataMu.RUnlock()
	if rd.data == nil {
		return nil
	}
	in := &input{member: rd.self, weight: rd.weight}
	if rd.weight > 0 {
		in.data = getBuf(EncodedLen(rd.enc, rd.size[i]))
		quantizeInto(rd.enc, in.data, rd.slice(i))
	}
	return in
}

// setPart records part i; original says it came from the part's own
// reducer, which is refused once the part was deferred to a replacement.
func (rd *round) setPart(i int, m *partMsg, original bool) bool {
	rd.mu.Lock()
	ps := rd.parts[i]
	if ps.msg != nil || (original && ps.deferred) {
		rd.mu.Unlock()
		return false
	}
	ps.msg = m
	close(ps.done)
	rd.mu.Unlock()
	rd.traceAt(evPart, i)
	return true
}

// failPart records that part i's reducer failed (once).
func (rd *round) failPart(i int, err error) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.failPartLocked(i, err)
}

func (rd *round) failPartLocked(i int, err error) {
	ps := rd.parts[i]
	select {
	case <-ps.failed:
	default:
		ps.failErr = err
		close(ps.failed)
	}
}

// deferPart gives part i over to a replacement reducer unless it is here
// already: the stream to its reducer is reset and a late answer from it
// refused. It reports whether the part is missing (so deferred).
func (rd *round) deferPart(i int) bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	ps := rd.parts[i]
	if ps.msg != nil {
		return false
	}
	if !ps.deferred {
		ps.deferred = true
		if ps.cancelOrig != nil {
			ps.cancelOrig()
		}
		rd.failPartLocked(i, fmt.Errorf("part %d given over to a replacement reducer", i))
	}
	return true
}

// markGone notes that member j failed, so the reducer stops waiting for
// its contribution; reason, when set, says why it is refused.
func (rd *round) markGone(j int, reason string) {
	rd.mu.Lock()
	rd.gone[j] = true
	if reason != "" {
		if _, ok := rd.refused[j]; !ok {
			rd.refused[j] = clip(reason)
		}
	}
	rd.mu.Unlock()
	rd.poke()
}

// confirm notes that this member's own part is acknowledged.
func (rd *round) confirm() {
	rd.ackedOnce.Do(func() {
		close(rd.acked)
		rd.traceAt(evAcked, rd.self)
	})
}

// markMismatch notes that member j's round parameters differ from ours:
// it is refused as a contributor.
func (rd *round) markMismatch(j int) {
	rd.mu.Lock()
	rd.mismatch[j] = true
	rd.mu.Unlock()
	rd.markGone(j, ReasonMismatch)
}

// mismatchErr is ErrMismatch when at least half of the members disagree
// with this one: it cannot tell that it is not the odd one out, so it
// fails rather than average with the few that agree.
func (rd *round) mismatchErr() error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	var odd []string
	for j, m := range rd.mismatch {
		if m {
			odd = append(odd, rd.members[j].String())
		}
	}
	if len(odd) == 0 || 2*len(odd) < len(rd.members) {
		return nil
	}
	return fmt.Errorf("%w: %d of %d members disagree (%v)", ErrMismatch, len(odd), len(rd.members), odd)
}

// setLate notes that the others recovered this member's part without it.
func (rd *round) setLate(err error) {
	rd.mu.Lock()
	if rd.late == nil {
		rd.late = err
	}
	rd.mu.Unlock()
	rd.lostOnce.Do(func() { close(rd.lost) })
}

// lose notes that part i cannot be had.
func (rd *round) lose(i int, err error) {
	rd.mu.Lock()
	if rd.parts[i].lost == nil {
		rd.parts[i].lost = err
	}
	rd.mu.Unlock()
	rd.lostOnce.Do(func() { close(rd.lost) })
}

func (rd *round) poke() {
	select {
	case rd.wake <- struct{}{}:
	default:
	}
}

// waitReduce waits until every other member's contribution to this
// member's part has begun (its header is in) or the member failed, until
// reduceAt, or until an arbiter wants the part now; then it computes the
// part, piece by piece as the contributions' pieces arrive.
func (rd *round) waitReduce(ctx context.Context) {
	rd.waitUntil(ctx, func() (bool, bool) {
		for j := range rd.members {
			if j != rd.self && rd.contrib[j] == nil && !rd.gone[j] {
				return false, false
			}
		}
		return true, false
	})
	if ctx.Err() != nil {
		return
	}
	rd.reduceOwn(ctx)
}

// waitUntil waits until cond (called under mu) says done, and reports
// whether it did: it gives up when cond says abort, at reduceAt, when an
// arbiter wants the part now, when ctx ends, or at once with a nil ctx.
func (rd *round) waitUntil(ctx context.Context, cond func() (done, abort bool)) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		rd.mu.Lock()
		done, abort := cond()
		force := rd.force
		rd.mu.Unlock()
		switch {
		case done:
			return true
		case abort || force || ctx == nil || !time.Now().Before(rd.reduceAt):
			return false
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(rd.reduceAt))
		}
		select {
		case <-rd.wake:
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
}

// reduceOwn computes this member's part, once: piece by piece as the
// contributions arrive where it can (reducePieces), else from the
// contributions that are complete. With ctx nil it waits for nothing. The
// reducer's own output goes through the same encoding as what the others
// receive, so every member decodes the same bytes.
func (rd *round) reduceOwn(ctx context.Context) {
	rd.finalize.Do(func() {
		rd.traceAt(evReducing, rd.self)
		m := rd.reducePieces(ctx)
		if m == nil {
			m = rd.reduceWhole(ctx)
		}
		rd.mu.Lock()
		rd.reduced = true
		rd.releaseContribs()
		rd.mu.Unlock()
		if h := rd.s.cfg.beforeReply; h != nil {
			h(rd.id, rd.self)
		}
		rd.traceAt(evReduced, rd.self)
		rd.setPart(rd.self, m, true)
	})
}

// ownContribution is this member's slice of its own part as it is
// reduced (F32 in place, else encoded into a pooled buffer: pooled), or
// nil once data is no longer the caller's; under dataMu's read lock.
func (rd *round) ownContribution() (own *input, pooled bool) {
	if rd.data == nil {
		return nil, false
	}
	own = &input{member: rd.self, weight: rd.weight}
	if rd.weight > 0 && rd.enc == F32 && nativeLE {
		own.data = f32Bytes(rd.slice(rd.self))
	} else if rd.weight > 0 {
		own.data = getBuf(EncodedLen(rd.enc, rd.size[rd.self]))
		quantizeInto(rd.enc, own.data, rd.slice(rd.self))
		pooled = true
	}
	return own, pooled
}

// reducePieces computes this member's part piece by piece: which
// contributions are in is settled first, on the weights and the sums of
// squares their senders stated (the same checks reduce makes, the norms
// judged against their median), then each piece is averaged once every
// kept contribution's copy of it is in, and published to the streams at
// once. Each kept contribution's squares are added up on the way and
// must come to what its sender stated, and each value must be finite;
// with Check set, each kept contribution is checked once it is all in,
// between pieces. A contribution that fails any of these is refused and
// the part is computed again without it (nil is returned, as it is when a
// kept contribution does not arrive in time, or with ctx nil).
func (rd *round) reducePieces(ctx context.Context) *partMsg {
	if ctx == nil || rd.s.cfg.wholeParts {
		return nil
	}
	rd.dataMu.RLock()
	defer rd.dataMu.RUnlock()
	own, pooled := rd.ownContribution()
	if own == nil {
		return nil
	}
	if pooled {
		defer putBuf(own.data)
	}
	if len(own.data) > 0 {
		own.ss = sumSquaresOf(rd.enc, own.data, rd.size[rd.self])
	}
	var missing []exclusion
	reject := func(m int, format string, args ...any) {
		missing = append(missing, exclusion{Member: m, Kind: exclRejected, Reason: clip(fmt.Sprintf(format, args...))})
	}
	var ok []input
	var norms []float64
	rd.mu.Lock()
	for j := range rd.members {
		in := rd.contrib[j]
		if j == rd.self {
			in = own
		}
		switch {
		case in != nil && in.weight == 0 && len(in.data) == 0:
		case in != nil && !(in.weight > 0 && in.weight <= math.MaxFloat64):
			reject(j, "weight %v is not a positive finite number", in.weight)
		case in != nil && math.IsNaN(in.ss):
			reject(j, "non-finite values (sum of squares %v)", in.ss)
		case in != nil:
			ok = append(ok, *in)
			norms = append(norms, math.Sqrt(in.ss))
		case rd.refused[j] != "":
			missing = append(missing, exclusion{Member: j, Kind: exclRejected, Reason: rd.refused[j]})
		default:
			missing = append(missing, exclusion{Member: j, Kind: exclMissing, Reason: "no contribution in time"})
		}
	}
	rd.mu.Unlock()
	ok = judgeNorms(rd.normFact, ok, norms, reject)
	if len(ok) == 0 {
		return nil
	}
	var total float64
	for _, x := range ok {
		total += x.weight
	}
	rd.mu.Lock()
	out := getBuf(EncodedLen(rd.enc, rd.size[rd.self]))
	rd.out, rd.pub = out, 0
	rd.mu.Unlock()
	ss := make([]float64, len(ok))
	buf := make([]float32, chunk)
	var scratch []float32
	if !(rd.enc == F32 && nativeLE) {
		scratch = getFloats(PieceValues)
		defer putFloats(scratch)
	}
	refuse := func(j int, format string, args ...any) *partMsg {
		rd.mu.Lock()
		rd.refused[j] = clip(fmt.Sprintf(format, args...))
		rd.mu.Unlock()
		return nil
	}
	for p := range rd.pieces(rd.self) {
		// ok's inputs are copies: their data (fixed once the header is
		// in) is read, have and failed are looked up in the round.
		if !rd.waitUntil(ctx, func() (bool, bool) {
			for _, x := range ok {
				if x.member == rd.self {
					continue
				}
				if in := rd.contrib[x.member]; in.have <= p {
					return false, in.failed || rd.gone[x.member]
				}
			}
			return true, false
		}) {
			return nil
		}
		start, n := rd.piece(rd.self, p)
		var vals []float32
		if scratch == nil {
			vals, _ = f32View(rd.pieceBytes(out, rd.self, p))
		} else {
			vals = scratch[:n]
		}
		if k, at := reducePiece(rd.enc, rd.agg, rd.trim, total, ok, start, ss, vals, buf); k >= 0 {
			return refuse(ok[k].member, "non-finite value at element %d", at)
		}
		if scratch != nil {
			quantizeInto(rd.enc, rd.pieceBytes(out, rd.self, p), vals)
		}
		rd.mu.Lock()
		rd.pub = p + 1
		rd.publish()
		rd.mu.Unlock()
		if j, why := rd.checkComplete(ok); j >= 0 {
			return refuse(j, "%s", why)
		}
	}
	for k, x := range ok {
		if ss[k] != x.ss {
			return refuse(x.member, "its values' sum of squares is %.17g, not the %.17g it stated", ss[k], x.ss)
		}
	}
	m := &partMsg{Hash: rd.hash, Part: rd.self, Reducer: rd.self, Weight: total, Included: make([]byte, (len(rd.members)+7)/8), Data: out}
	for _, x := range ok {
		m.Included[x.member/8] |= 1 << (x.member % 8)
	}
	m.Excluded = sortExclusions(missing)
	return m
}

// checkComplete calls Check on the contributions of ok, but this
// member's, that are all in and not checked yet, and returns the first
// it refuses and why (-1: none).
func (rd *round) checkComplete(ok []input) (int, string) {
	if rd.check == nil {
		return -1, ""
	}
	for _, x := range ok {
		if x.member == rd.self || rd.passed[x.member] {
			continue
		}
		rd.mu.Lock()
		all := rd.complete(rd.contrib[x.member])
		rd.mu.Unlock()
		if !all {
			continue
		}
		if why := rd.checkInput(rd.self, x); why != "" {
			return x.member, why
		}
		rd.passed[x.member] = true
	}
	return -1, ""
}

// checkInput is Check's verdict on x, a whole contribution to part i
// ("" when it cannot be decoded: reduce refuses it for that).
func (rd *round) checkInput(i int, x input) string {
	if len(x.data) != EncodedLen(rd.enc, rd.size[i]) {
		return ""
	}
	if rd.enc == F32 {
		if vals, ok := f32View(x.data); ok {
			return rd.check(x.member, rd.off[i], vals)
		}
	}
	vals := getFloats(rd.size[i])
	defer putFloats(vals)
	if err := Dequantize(rd.enc, x.data, vals); err != nil {
		return ""
	}
	return rd.check(x.member, rd.off[i], vals)
}

// reduceWhole computes this member's part from the contributions that
// are complete once every one that is not refused or failed is (or at
// reduceAt; with ctx nil, at once), checking each whole as makePart
// does, and publishes it to the streams in one go, after any pieces
// published before (they are sent again).
func (rd *round) reduceWhole(ctx context.Context) *partMsg {
	rd.traceAt(evWhole, rd.self)
	rd.waitUntil(ctx, func() (bool, bool) {
		for j, in := range rd.contrib {
			if in != nil && rd.refused[j] == "" && !in.failed && !rd.gone[j] && !rd.complete(in) {
				return false, false
			}
		}
		return true, false
	})
	// The own slice is read in place (F32) or encoded into a buffer
	// given back below; data stays the caller's until the part is
	// computed.
	rd.dataMu.RLock()
	own, pooled := rd.ownContribution()
	rd.mu.Lock()
	ins := make([]input, 0, len(rd.members))
	var missing []exclusion
	for j := range rd.members {
		in := rd.contrib[j]
		switch {
		case j == rd.self && own != nil:
			ins = append(ins, *own)
		case j == rd.self:
			missing = append(missing, exclusion{Member: j, Kind: exclMissing, Reason: "round ended here"})
		case rd.refused[j] != "":
			missing = append(missing, exclusion{Member: j, Kind: exclRejected, Reason: rd.refused[j]})
		case in != nil && rd.complete(in):
			ins = append(ins, *in)
		default:
			missing = append(missing, exclusion{Member: j, Kind: exclMissing, Reason: "no contribution in time"})
		}
	}
	rd.mu.Unlock()
	m := rd.makePart(rd.self, rd.self, ins, missing)
	rd.dataMu.RUnlock()
	if pooled {
		putBuf(own.data)
	}
	rd.mu.Lock()
	if rd.out != nil {
		rd.outs = append(rd.outs, rd.out)
		rd.epoch++
	}
	rd.out, rd.pub = m.Data, rd.pieces(rd.self)
	rd.publish()
	rd.mu.Unlock()
	return m
}

// makePart reduces part i from ins, as computed by member reducer.
func (rd *round) makePart(i, reducer int, ins []input, missing []exclusion) *partMsg {
	if rd.check != nil {
		kept := make([]input, 0, len(ins))
		for _, x := range ins {
			// The own part's contributions that passed on the way
			// (reducePieces) are not checked twice.
			if x.member != rd.self && !(i == rd.self && rd.passed[x.member]) {
				if why := rd.checkInput(i, x); why != "" {
					missing = append(missing, exclusion{Member: x.member, Kind: exclRejected, Reason: clip(why)})
					continue
				}
			}
			kept = append(kept, x)
		}
		ins = kept
	}
	red := reduce(rd.enc, rd.agg, rd.trim, rd.normFact, rd.size[i], ins)
	m := &partMsg{
		Hash: rd.hash, Part: i, Reducer: reducer, Weight: red.weight,
		Included: make([]byte, (len(rd.members)+7)/8),
	}
	if rd.enc == F32 && nativeLE {
		m.Data = f32Bytes(red.out) // the sums' buffer is the encoding
	} else {
		m.Data = getBuf(EncodedLen(rd.enc, len(red.out)))
		quantizeInto(rd.enc, m.Data, red.out)
		putFloats(red.out)
	}
	for _, j := range red.included {
		m.Included[j/8] |= 1 << (j % 8)
	}
	m.Excluded = sortExclusions(append(missing, red.excluded...))
	return m
}

// sortExclusions puts ex in member order, so that the list is the same
// whoever computes it.
func sortExclusions(ex []exclusion) []exclusion {
	for a := 1; a < len(ex); a++ {
		for b := a; b > 0 && ex[b].Member < ex[b-1].Member; b-- {
			ex[b], ex[b-1] = ex[b-1], ex[b]
		}
	}
	return ex
}

// checkPart checks a received PART header against the round.
func (rd *round) checkPart(m *partMsg, part int) error {
	switch {
	case m.Hash != rd.hash:
		return ErrMismatch
	case m.Part != part:
		return fmt.Errorf("part %d where %d was asked", m.Part, part)
	case m.Reducer >= len(rd.members):
		return fmt.Errorf("reducer %d of %d members", m.Reducer, len(rd.members))
	case len(m.Included) != (len(rd.members)+7)/8:
		return fmt.Errorf("included bitmap of %d bytes for %d members", len(m.Included), len(rd.members))
	case !(m.Weight >= 0 && m.Weight <= math.MaxFloat64):
		return fmt.Errorf("total weight %v", m.Weight)
	}
	for j := len(rd.members); j < 8*len(m.Included); j++ {
		if m.Included[j/8]&(1<<(j%8)) != 0 {
			return fmt.Errorf("included bit %d past the members", j)
		}
	}
	for _, e := range m.Excluded {
		if e.Member >= len(rd.members) {
			return fmt.Errorf("excluded member %d of %d", e.Member, len(rd.members))
		}
	}
	return nil
}

// AllReduce runs round r with this member's vector data and, when every
// part is in, replaces data by the average: bitwise the same on every
// member that succeeds. On error data is left as it was.
//
// It returns by r.Deadline at the latest (or when ctx ends). A part that
// could not be had from its reducer or by recovery fails the round with
// ErrIncomplete, naming the part and its reducer.
func (s *Service) AllReduce(ctx context.Context, r Round, data []float32) (Result, error) {
	rd, err := s.newRound(r, data)
	if err != nil {
		return Result{}, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Result{}, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if err := s.register(rd); err != nil {
		rd.cancel()
		return Result{}, err
	}

	if k := len(rd.members); k == 1 || rd.size[rd.self] == 0 {
		rd.confirm()
	}
	cctx, ccancel := context.WithDeadline(rd.ctx, rd.deadline)
	stop := context.AfterFunc(ctx, ccancel)
	var wg sync.WaitGroup
	k := len(rd.members)
	for i := range k {
		switch {
		case rd.size[i] == 0:
			rd.setPart(i, &partMsg{Hash: rd.hash, Part: i, Reducer: i, Included: make([]byte, (k+7)/8)}, true)
		case i == rd.self:
			wg.Go(func() { rd.waitReduce(cctx) })
		default:
			wg.Go(func() { rd.contribute(cctx, i) })
			wg.Go(func() { rd.watch(cctx, i) })
		}
	}
	err = rd.waitAll(cctx, ctx)
	if merr := rd.mismatchErr(); merr != nil {
		err = merr
	}
	ccancel()
	stop()
	wg.Wait()
	if rd.size[rd.self] > 0 && s.ctx.Err() == nil {
		// A reducer whose caller gave up early still serves its part,
		// with its own contribution, to the members that wait for it.
		rd.reduceOwn(nil)
	}

	var res Result
	rd.dataMu.Lock()
	if err == nil {
		err = rd.apply()
		if err == nil {
			res = rd.result()
		}
	}
	rd.data = nil
	rd.dataMu.Unlock()
	res.BytesSent, res.BytesReceived = rd.sent.Load(), rd.recv.Load()
	rd.unref()
	s.retire(rd)
	if err != nil {
		return res, fmt.Errorf("allreduce: round %q: %w", rd.id, err)
	}
	return res, nil
}

// waitAll waits until every part is in, or a part is lost for good
// (recovery found no replacement) or this member learns it is late, or
// the round's time ends.
func (rd *round) waitAll(cctx, callerCtx context.Context) error {
	lost := rd.lost
	for i := 0; i <= len(rd.parts); i++ {
		// The last wait is for the acknowledgement of the own part.
		done, acked := rd.acked, true
		if i < len(rd.parts) {
			done, acked = rd.parts[i].done, false
		}
		select {
		case <-done:
			continue
		case <-cctx.Done():
		case <-lost:
			rd.mu.Lock()
			late := rd.late
			rd.mu.Unlock()
			if late != nil {
				return late
			}
			if rd.lostAny() {
				return rd.missing(0)
			}
			lost = nil // a lost part came after all: wait on
			i--
			continue
		}
		switch {
		case callerCtx.Err() != nil:
			return callerCtx.Err()
		case rd.s.ctx.Err() != nil:
			return ErrClosed
		case acked:
			return fmt.Errorf("%w: part %d (reducer %s, this member): no member took it by the deadline", ErrIncomplete, rd.self, rd.members[rd.self])
		}
		return rd.missing(i)
	}
	return nil
}

// lostAny reports whether some part is lost and not in.
func (rd *round) lostAny() bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for _, ps := range rd.parts {
		if ps.lost != nil && ps.msg == nil {
			return true
		}
	}
	return false
}

// missing is the error for the first part not in, naming it.
func (rd *round) missing(first int) error {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	var errs []error
	for i := first; i < len(rd.parts); i++ {
		ps := rd.parts[i]
		if ps.msg != nil {
			continue
		}
		why := ps.lost
		if why == nil {
			why = ps.failErr
		}
		if why == nil {
			why = fmt.Errorf("no answer by the deadline")
		}
		errs = append(errs, fmt.Errorf("part %d (reducer %s): %w", i, rd.members[i], why))
	}
	if len(errs) == 1 {
		return fmt.Errorf("%w: %w", ErrIncomplete, errs[0])
	}
	return fmt.Errorf("%w: %d parts: %w", ErrIncomplete, len(errs), joinErrs(errs))
}

// apply decodes every part into data (under dataMu). A non-empty part
// that averages no contribution at all fails the round, unless the
// round allows that (Empty: it is zeros): there is no average to give
// it, and every member sees the same part so fails alike.
func (rd *round) apply() error {
	none := func(i int) bool {
		return rd.size[i] > 0 && len(rd.parts[i].msg.Data) > 0 && rd.parts[i].msg.Weight == 0
	}
	for i, ps := range rd.parts {
		if none(i) && !rd.empty {
			return fmt.Errorf("%w: part %d (reducer %s): no contribution included", ErrIncomplete, i, rd.members[ps.msg.Reducer])
		}
	}
	for i, ps := range rd.parts {
		if none(i) {
			clear(rd.slice(i))
			continue
		}
		if err := Dequantize(rd.enc, ps.msg.Data, rd.slice(i)); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
	}
	return nil
}

// result describes the parts.
func (rd *round) result() Result {
	var res Result
	dropped := make([]bool, len(rd.members))
	for i, ps := range rd.parts {
		m := ps.msg
		pr := PartResult{Offset: rd.off[i], Len: rd.size[i], Reducer: rd.members[m.Reducer], Recovered: m.Reducer != i, Weight: m.Weight}
		for j := range rd.members {
			if m.Included[j/8]&(1<<(j%8)) != 0 {
				pr.Included = append(pr.Included, rd.members[j])
			}
		}
		for _, e := range m.Excluded {
			dropped[e.Member] = true
			if e.Kind == exclRejected {
				if res.Rejected == nil {
					res.Rejected = make(map[peer.ID]string)
				}
				if _, ok := res.Rejected[rd.members[e.Member]]; !ok {
					res.Rejected[rd.members[e.Member]] = e.Reason
				}
			}
		}
		res.Parts = append(res.Parts, pr)
	}
	for j, d := range dropped {
		if d {
			res.Dropped = append(res.Dropped, rd.members[j])
		}
	}
	return res
}
