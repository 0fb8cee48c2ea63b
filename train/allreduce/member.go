package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mycel-net/mycel/p2p/wire"
)

// busyRetry is how long a contributor waits before trying a busy reducer
// again.
const busyRetry = 50 * time.Millisecond

// contribute sends this member's slice of part k to its reducer and
// takes the averaged part from the answer. A reducer that cannot be
// reached, refuses or breaks the stream is marked failed: this member's
// own reduction stops waiting for it and watch recovers part k.
func (rd *round) contribute(ctx context.Context, k int) {
	for {
		err := rd.contributeOnce(ctx, k)
		if err == nil || ctx.Err() != nil {
			return
		}
		switch codeOf(err) {
		case codeBusy:
			if time.Now().Add(busyRetry).Before(rd.reduceAt) {
				select {
				case <-time.After(busyRetry):
					continue
				case <-ctx.Done():
					return
				}
			}
			rd.markGone(k, "")
		case codeMismatch:
			rd.markMismatch(k)
		case codeSuperseded:
			rd.setLate(err)
		default:
			rd.markGone(k, "")
		}
		log.Debug("contribution failed", "round", rd.id, "part", k, "peer", rd.members[k], "err", err)
		rd.failPart(k, err)
		return
	}
}

var errDeferred = errors.New("part given over to a replacement reducer")

func (rd *round) contributeOnce(ctx context.Context, k int) error {
	x, err := rd.open(ctx, k)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if ok {
			x.finish()
		} else {
			x.reset()
		}
	}()
	rd.mu.Lock()
	ps := rd.parts[k]
	if ps.deferred {
		rd.mu.Unlock()
		return errDeferred
	}
	ps.cancelOrig = x.c.Reset
	rd.mu.Unlock()

	// The slice as it travels (F32 in place, else encoded into a pooled
	// buffer) and the sum of its squares, stated ahead; data stays the
	// caller's while it goes out.
	rd.dataMu.RLock()
	defer rd.dataMu.RUnlock()
	var data []byte
	ss := 0.0
	if rd.weight > 0 {
		if rd.enc == F32 && nativeLE {
			data = f32Bytes(rd.slice(k))
		} else {
			data = getBuf(EncodedLen(rd.enc, rd.size[k]))
			quantizeInto(rd.enc, data, rd.slice(k))
			defer putBuf(data)
		}
		ss = sumSquaresOf(rd.enc, data, rd.size[k])
	}
	if f := rd.s.cfg.statedSumSquares; f != nil {
		ss = f(k, ss)
	}
	hdr := &contribMsg{Hash: rd.hash, ID: rd.id, Deadline: rd.deadline.UnixMilli(), Sender: rd.self, Part: k, Weight: rd.weight, SumSquares: ss}
	if err := x.send(hdr, rd.deadline); err != nil {
		return err
	}
	// The reducer holds the stream until its round has started, at most
	// until this member would look for the part elsewhere.
	m, err := x.recvMsg(rd.recoverAt, rd.deadline)
	if err != nil {
		return err
	}
	if _, ok := m.(*readyMsg); !ok {
		return fmt.Errorf("%w: %s where READY was due", wire.ErrProtocol, m.kind())
	}
	// The pieces go out on a goroutine of their own while this one takes
	// the averaged pieces back.
	sent := make(chan error, 1)
	go func() {
		if data == nil {
			sent <- x.sendData(nil, rd.deadline)
			return
		}
		for p := range rd.pieces(k) {
			if err := x.sendData(rd.pieceBytes(data, k, p), rd.deadline); err != nil {
				sent <- err
				return
			}
		}
		rd.traceAt(evSent, k)
		sent <- nil
	}()
	p, err := rd.recvPieces(x, k)
	if err != nil {
		x.c.Reset()
		<-sent
		return err
	}
	if err := <-sent; err != nil {
		putBuf(p.Data)
		return err
	}
	// Closing the stream acknowledges the part (see awaitAck); a part not
	// taken (given over to a replacement meanwhile) is not.
	if ok = rd.setPart(k, p, true); !ok {
		putBuf(p.Data)
	}
	return nil
}

// recvPieces reads part k from its reducer on the stream of this
// member's contribution: its pieces (the first due by recoverAt, and
// from the first again when the reducer computed the part anew), then the
// PART that seals them, with an empty data frame.
func (rd *round) recvPieces(x *stream, k int) (*partMsg, error) {
	buf := getBuf(EncodedLen(rd.enc, rd.size[k]))
	n, next := rd.pieces(k), 0
	first := rd.recoverAt
	for {
		m, err := x.recvMsg(first, rd.deadline)
		if err != nil {
			putBuf(buf)
			return nil, err
		}
		first = rd.deadline
		switch m := m.(type) {
		case *pieceMsg:
			if m.Piece != next && m.Piece != 0 || m.Piece >= n {
				putBuf(buf)
				return nil, fmt.Errorf("%w: piece %d of %d where %d was due", wire.ErrProtocol, m.Piece, n, next)
			}
			if next == 0 {
				rd.mu.Lock()
				rd.parts[k].receiving = true
				rd.mu.Unlock()
			}
			size, err := x.c.ReadFrameInto(rd.pieceBytes(buf, k, m.Piece), until(rd.deadline))
			rd.recv.Add(int64(size))
			if err != nil {
				putBuf(buf)
				return nil, fmt.Errorf("piece %d: %w", m.Piece, err)
			}
			rd.traceAt(evPiece, k)
			next = m.Piece + 1
		case *partMsg:
			if err := rd.checkPart(m, k); err != nil {
				putBuf(buf)
				return nil, fmt.Errorf("%w: %w", wire.ErrProtocol, err)
			}
			if next != n {
				putBuf(buf)
				return nil, fmt.Errorf("%w: PART after %d of %d pieces", wire.ErrProtocol, next, n)
			}
			if m.Reducer != k {
				putBuf(buf)
				return nil, fmt.Errorf("%w: part %d computed by %d, sent by its reducer", wire.ErrProtocol, k, m.Reducer)
			}
			if _, err := x.recvData(0, rd.deadline); err != nil {
				putBuf(buf)
				return nil, err
			}
			m.Data = buf
			return m, nil
		default:
			putBuf(buf)
			return nil, fmt.Errorf("%w: %s where PIECE or PART was due", wire.ErrProtocol, m.kind())
		}
	}
}

// recvPart reads a PART for part i (header due by first) and its data.
func (rd *round) recvPart(x *stream, i int, first time.Time) (*partMsg, error) {
	m, err := x.recvMsg(first, rd.deadline)
	if err != nil {
		return nil, err
	}
	p, ok := m.(*partMsg)
	if !ok {
		return nil, fmt.Errorf("%w: %s where PART was due", wire.ErrProtocol, m.kind())
	}
	if err := rd.checkPart(p, i); err != nil {
		return nil, fmt.Errorf("%w: %w", wire.ErrProtocol, err)
	}
	rd.mu.Lock()
	rd.parts[i].receiving = true
	rd.mu.Unlock()
	if p.Data, err = x.recvData(EncodedLen(rd.enc, rd.size[i]), rd.deadline); err != nil {
		return nil, err
	}
	return p, nil
}

// waitOriginal waits for part i from its own reducer until recoverAt (or
// longer while it is arriving) and reports whether it came.
func (rd *round) waitOriginal(ctx context.Context, i int) bool {
	ps := rd.parts[i]
	timer := time.NewTimer(time.Until(rd.recoverAt))
	defer timer.Stop()
	select {
	case <-ps.done:
		return true
	case <-ps.failed:
		return rd.has(i)
	case <-ctx.Done():
		return rd.has(i)
	case <-timer.C:
	}
	rd.mu.Lock()
	receiving := ps.receiving && !ps.deferred
	rd.mu.Unlock()
	if receiving {
		select {
		case <-ps.done:
		case <-ps.failed:
		case <-ctx.Done():
		}
	}
	return rd.has(i)
}

func (rd *round) has(i int) bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.parts[i].msg != nil
}

// watch recovers part i when its reducer fails or stays silent past
// recoverAt.
func (rd *round) watch(ctx context.Context, i int) {
	if rd.waitOriginal(ctx, i) || ctx.Err() != nil {
		return
	}
	rd.recoverPart(ctx, i)
}

// candidates is the order in which members replace part i's reducer: the
// members after it, wrapping around.
func (rd *round) candidates(i int) []int {
	k := len(rd.members)
	c := make([]int, 0, k-1)
	for d := 1; d < k; d++ {
		c = append(c, (i+d)%k)
	}
	return c
}

// rank is c's place among part i's candidates.
func (rd *round) rank(i, c int) int {
	k := len(rd.members)
	return (c - i - 1 + k) % k
}

// recoverPart asks the replacement reducers of part i, in order, for it:
// first the one that asked this member for its slice (it is recovering
// the part already), then the candidates, skipping members known to have
// failed; this member itself arbitrates when its turn comes.
func (rd *round) recoverPart(ctx context.Context, i int) {
	rd.mu.Lock()
	order := rd.candidates(i)
	if h := rd.parts[i].hint; h >= 0 {
		order = append([]int{h}, order...)
	}
	rd.mu.Unlock()
	var last error
	tried := make([]bool, len(rd.members))
	for _, c := range order {
		if rd.has(i) || ctx.Err() != nil {
			return
		}
		rd.mu.Lock()
		skip := tried[c] || (rd.gone[c] && c != rd.parts[i].hint)
		rd.mu.Unlock()
		if skip {
			continue
		}
		tried[c] = true
		var err error
		if c == rd.self {
			a := rd.startArbitration(i)
			select {
			case <-a.done:
				err = a.err
			case <-ctx.Done():
				return
			}
		} else {
			err = rd.askRecover(ctx, c, i)
		}
		if err == nil && rd.has(i) {
			return
		}
		if err == nil {
			err = errors.New("no part")
		}
		last = fmt.Errorf("replacement %s: %w", rd.members[c], err)
		if codeOf(err) == codeMismatch {
			rd.markMismatch(c)
		}
		log.Debug("recovery failed", "round", rd.id, "part", i, "peer", rd.members[c], "err", err)
	}
	if last == nil {
		last = errors.New("no replacement reducer left")
	}
	rd.lose(i, last)
}

// askRecover asks member c for part i (RECOVER).
func (rd *round) askRecover(ctx context.Context, c, i int) error {
	x, err := rd.open(ctx, c)
	if err != nil {
		return err
	}
	req := &requestMsg{Type: msgRecover, Hash: rd.hash, ID: rd.id, Deadline: rd.deadline.UnixMilli(), Sender: rd.self, Part: i}
	if err := x.send(req, rd.deadline); err != nil {
		x.reset()
		return err
	}
	p, err := rd.recvPart(x, i, rd.deadline)
	if err != nil {
		x.reset()
		return err
	}
	if rd.setPart(i, p, false) {
		x.finish()
	} else {
		putBuf(p.Data)
		x.reset()
	}
	return nil
}

// startArbitration makes this member the replacement reducer of part i
// (once) and returns its arbitration.
func (rd *round) startArbitration(i int) *arbitration {
	rd.mu.Lock()
	ps := rd.parts[i]
	if ps.arb != nil {
		a := ps.arb
		rd.mu.Unlock()
		return a
	}
	a := &arbitration{done: make(chan struct{})}
	ps.arb = a
	rd.mu.Unlock()
	// The callers hold the round; the arbitration may outlive them.
	if !rd.ref() {
		a.err = ErrClosed
		close(a.done)
		return a
	}
	if !rd.s.goTracked(func() { defer rd.unref(); rd.arbitrate(i, a) }) {
		rd.unref()
		a.err = ErrClosed
		close(a.done)
	}
	return a
}

// fetched is one member's answer to FETCH.
type fetched struct {
	member int
	copy   *partMsg
	slice  *input
	err    error
}

// arbitrate recovers part i as its replacement reducer: it waits for the
// part's own reducer over this member's stream, then asks every other
// member (the reducer included) for a copy of the part or, failing that,
// for its slice; a copy wins, else the part is recomputed from the slices
// that arrived by fetchAt. A member asked while recovering the same part
// itself answers with its slice when the asker comes first among the
// candidates and refuses (codeConflict) otherwise; a replacement refused
// so, or asked by an earlier one, yields: it takes the earlier one's
// result instead of its own, so two replacements that meet end with one
// result.
func (rd *round) arbitrate(i int, a *arbitration) {
	defer close(a.done)
	ctx, cancel := context.WithDeadline(rd.ctx, rd.deadline)
	defer cancel()
	if rd.waitOriginal(ctx, i) {
		return
	}
	if !rd.deferPart(i) {
		return
	}
	fctx, fcancel := context.WithDeadline(ctx, rd.fetchAt)
	// Every answer is kept, even one that completes as fetchAt passes: a
	// copy acknowledged to its reducer must not be passed over.
	results := make(chan fetched, len(rd.members))
	var wg sync.WaitGroup
	for j := range rd.members {
		if j != rd.self {
			wg.Go(func() { results <- rd.fetch(fctx, j, i) })
		}
	}
	go func() { wg.Wait(); close(results) }()
	var got []fetched
	var copyMsg *partMsg
	for f := range results {
		if f.copy != nil && copyMsg == nil {
			copyMsg = f.copy
			fcancel() // one copy is enough
		} else if f.copy != nil {
			putBuf(f.copy.Data)
		}
		if codeOf(f.err) == codeConflict {
			rd.yield(i, f.member)
		}
		got = append(got, f)
	}
	fcancel()
	// The slices are read by makePart at most: their buffers go back
	// after it.
	defer func() {
		for _, f := range got {
			if f.slice != nil {
				putBuf(f.slice.data)
			}
		}
	}()
	if copyMsg != nil {
		if !rd.setPart(i, copyMsg, false) {
			putBuf(copyMsg.Data)
		}
		return
	}

	rd.mu.Lock()
	y := rd.parts[i].yieldTo
	rd.mu.Unlock()
	if y >= 0 {
		// An earlier replacement is at work: its result is the part.
		if err := rd.askRecover(ctx, y, i); err != nil {
			a.err = fmt.Errorf("replacement %s: %w", rd.members[y], err)
		}
		return
	}

	ins := make([]*input, len(rd.members))
	reasons := make(map[int]exclusion)
	for _, f := range got {
		switch {
		case f.slice != nil:
			ins[f.member] = f.slice
		case codeOf(f.err) == codeMismatch:
			rd.markMismatch(f.member)
			reasons[f.member] = exclusion{Member: f.member, Kind: exclRejected, Reason: ReasonMismatch}
		}
	}
	// Only a majority may recompute a part: members cut off from the rest
	// must not each make their own. A member that sent its slice has
	// given the part over to this one and takes no other version.
	heard := 1
	for _, in := range ins {
		if in != nil {
			heard++
		}
	}
	if 2*heard <= len(rd.members) {
		a.err = fmt.Errorf("slices from %d of %d members, not a majority", heard, len(rd.members))
		return
	}
	own := rd.ownInput(i)
	if own != nil {
		defer putBuf(own.data)
	}
	ins[rd.self] = own
	var list []input
	var missing []exclusion
	for j, in := range ins {
		switch {
		case in != nil:
			list = append(list, *in)
		case reasons[j].Reason != "":
			missing = append(missing, reasons[j])
		default:
			missing = append(missing, exclusion{Member: j, Kind: exclMissing, Reason: "no slice for the replacement reducer"})
		}
	}
	m := rd.makePart(i, rd.self, list, missing)
	if rd.setPart(i, m, false) {
		log.Info("part recomputed by its replacement reducer", "round", rd.id, "part", i,
			"reducer", rd.members[i], "included", len(list))
	} else {
		putBuf(m.Data)
	}
}

// yield notes that member c, earlier among part i's candidates than
// this member, is recovering the part too: this member will take c's
// result rather than publish its own.
func (rd *round) yield(i, c int) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	ps := rd.parts[i]
	if rd.rank(i, c) < rd.rank(i, rd.self) && (ps.yieldTo < 0 || rd.rank(i, c) < rd.rank(i, ps.yieldTo)) {
		ps.yieldTo = c
	}
}

// fetch asks member j for a copy of part i or its slice of it (FETCH).
func (rd *round) fetch(ctx context.Context, j, i int) fetched {
	f := fetched{member: j}
	x, err := rd.open(ctx, j)
	if err != nil {
		f.err = err
		return f
	}
	ok := false
	defer func() {
		if ok {
			x.finish()
		} else {
			x.reset()
		}
	}()
	req := &requestMsg{Type: msgFetch, Hash: rd.hash, ID: rd.id, Deadline: rd.deadline.UnixMilli(), Sender: rd.self, Part: i}
	if f.err = x.send(req, rd.fetchAt); f.err != nil {
		return f
	}
	m, err := x.recvMsg(rd.fetchAt, rd.deadline)
	if err != nil {
		f.err = err
		return f
	}
	switch m := m.(type) {
	case *partMsg:
		if f.err = rd.checkPart(m, i); f.err != nil {
			return f
		}
		if m.Data, f.err = x.recvData(EncodedLen(rd.enc, rd.size[i]), rd.deadline); f.err != nil {
			return f
		}
		f.copy = m
	case *contribMsg:
		if m.Hash != rd.hash || m.Sender != j || m.Part != i {
			f.err = fmt.Errorf("%w: slice of part %d from member %d where %d's of %d was asked", wire.ErrProtocol, m.Part, m.Sender, j, i)
			return f
		}
		n := 0
		if m.Weight != 0 {
			n = EncodedLen(rd.enc, rd.size[i])
		}
		data, err := x.recvData(n, rd.deadline)
		if err != nil {
			f.err = err
			return f
		}
		f.slice = &input{member: j, weight: m.Weight, data: data}
	default:
		f.err = fmt.Errorf("%w: %s answers FETCH", wire.ErrProtocol, m.kind())
		return f
	}
	ok = true
	return f
}
