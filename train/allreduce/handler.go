package allreduce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// serve answers one incoming stream: a CONTRIB to this member's part, or
// a FETCH or RECOVER of a part. The first frame names the round; a round
// that has not started here is waited for (bounded, see lookup).
func (s *Service) serve(st network.Stream, p peer.ID) {
	x := newStream(s.ctx, st, nil)
	ok := false
	defer func() {
		if ok {
			x.finish()
		} else {
			x.reset()
		}
	}()
	m, err := x.recvMsg(time.Now().Add(headerWait), time.Now().Add(headerWait))
	if err != nil {
		log.Debug("bad request", "peer", p, "err", err)
		return
	}
	var id string
	var deadline int64
	switch m := m.(type) {
	case *contribMsg:
		id, deadline = m.ID, m.Deadline
	case *requestMsg:
		id, deadline = m.ID, m.Deadline
	default:
		x.sendError(codeBadRequest, "%s opens no stream", m.kind())
		ok = true
		return
	}
	rd, code := s.lookup(s.ctx, id, p, time.UnixMilli(deadline))
	if code != 0 {
		x.sendError(code, "round %q", id)
		ok = true
		return
	}
	if !rd.ref() {
		return // dropped meanwhile
	}
	defer rd.unref()
	// From here the stream lives at most as long as the round.
	stop := context.AfterFunc(rd.ctx, x.c.Reset)
	defer stop()
	x.rd = rd
	switch m := m.(type) {
	case *contribMsg:
		ok = rd.serveContrib(x, p, m)
	case *requestMsg:
		ok = rd.serveRequest(x, p, m)
	}
}

// checkSender checks a request's hash and sender against the round; a
// mismatching member is noted (and refused as a contributor).
// The hash is checked before the sender's index: a member that lists the
// members in another order names itself by an index that means nothing
// here, and must learn that the rounds differ, not that it is unknown.
func (rd *round) checkSender(x *stream, p peer.ID, hash [32]byte, sender int) bool {
	j := slices.Index(rd.members, p)
	if j < 0 {
		x.sendError(codeNotMember, "%s is not a member of round %q", p, rd.id)
		return false
	}
	if hash != rd.hash {
		rd.markMismatch(j)
		x.sendError(codeMismatch, "round %q: parameters hash to %x here", rd.id, rd.hash[:8])
		return false
	}
	if sender != j {
		x.sendError(codeNotMember, "%s is member %d of round %q, not %d", p, j, rd.id, sender)
		return false
	}
	return true
}

// serveContrib takes member p's slice of this member's part, piece by
// piece, and sends the averaged part's pieces back on the same stream as
// they are computed, then the PART that seals them.
func (rd *round) serveContrib(x *stream, p peer.ID, m *contribMsg) bool {
	if !rd.checkSender(x, p, m.Hash, m.Sender) {
		return true
	}
	if m.Part != rd.self || m.Sender == rd.self {
		x.sendError(codeBadRequest, "part %d sent to member %d", m.Part, rd.self)
		return true
	}
	rd.mu.Lock()
	own := rd.parts[m.Sender].msg
	// One contribution per member: a second stream is refused before its
	// data is read, so a member holds at most one part's worth of this
	// reducer's memory.
	dup := rd.contrib[m.Sender] != nil
	rd.mu.Unlock()
	if own != nil && own.Reducer != m.Sender {
		// The others recovered the sender's part without it: whatever it
		// computed for itself differs from what they hold.
		x.sendError(codeSuperseded, "part %d was recomputed by %s", m.Sender, rd.members[own.Reducer])
		return true
	}
	if dup {
		x.sendError(codeBadRequest, "a second contribution from %s", p)
		return true
	}
	if err := x.send(&readyMsg{}, rd.deadline); err != nil {
		return false
	}
	in := &input{member: m.Sender, weight: m.Weight, ss: m.SumSquares, busy: true}
	if m.Weight != 0 {
		in.data = getBuf(EncodedLen(rd.enc, rd.size[rd.self]))
	}
	rd.mu.Lock()
	taken := !rd.reduced && rd.contrib[m.Sender] == nil
	if taken {
		rd.contrib[m.Sender] = in
	}
	rd.mu.Unlock()
	rd.poke()
	// The pieces are read on a goroutine of their own while this one
	// sends the part's pieces back.
	read := make(chan error, 1)
	go func() { read <- rd.takeContrib(x, in, taken) }()
	sent := rd.replyPieces(x)
	if !sent {
		x.c.Reset()
	}
	if err := <-read; err != nil {
		log.Debug("contribution cut", "round", rd.id, "peer", p, "err", err)
		return false
	}
	return sent && rd.awaitAck(x)
}

// takeContrib reads a contribution's data frames, one per piece, into
// in.data (a contribution too late to be taken is read and dropped),
// noting each piece as it comes.
func (rd *round) takeContrib(x *stream, in *input, taken bool) (err error) {
	defer func() {
		rd.mu.Lock()
		in.busy = false
		in.failed = err != nil
		free := !taken || in.orphan
		if free {
			putBuf(in.data)
			in.data = nil
		}
		rd.mu.Unlock()
		rd.poke()
	}()
	if in.weight == 0 {
		_, err := x.recvData(0, rd.deadline)
		return err
	}
	for p := range rd.pieces(rd.self) {
		b := rd.pieceBytes(in.data, rd.self, p)
		size, err := x.c.ReadFrameInto(b, until(rd.deadline))
		rd.recv.Add(int64(size))
		if err != nil {
			return fmt.Errorf("piece %d: %w", p, err)
		}
		rd.mu.Lock()
		in.have = p + 1
		rd.mu.Unlock()
		rd.poke()
	}
	rd.traceAt(evContrib, in.member)
	return nil
}

// replyPieces sends this member's part on a contribution's stream: its
// pieces as they are computed (all of them again when it is computed
// anew), then the PART that seals them, with an empty data frame.
func (rd *round) replyPieces(x *stream) bool {
	ps := rd.parts[rd.self]
	by := rd.deadline.Add(rd.s.cfg.linger)
	n := rd.pieces(rd.self)
	sent, epoch := 0, -1
	for {
		rd.mu.Lock()
		if rd.epoch != epoch {
			epoch, sent = rd.epoch, 0
		}
		out, pub, ch, msg := rd.out, rd.pub, rd.progress, ps.msg
		rd.mu.Unlock()
		switch {
		case sent < pub:
			if x.sendWith(&pieceMsg{Piece: sent}, rd.pieceBytes(out, rd.self, sent), by) != nil {
				return false
			}
			sent++
			continue
		case msg != nil && sent == n:
			hdr := *msg
			hdr.Data = nil
			return x.sendPart(&hdr, by) == nil
		}
		select {
		case <-ch:
		case <-ps.done:
		case <-rd.ctx.Done():
			return false
		}
	}
}

// awaitAck waits for the end of a stream on which this member's own part
// went out: a member closes the stream once it holds the part, and
// resets it when it does not take it, so the clean end is the
// acknowledgement that the part computed here is the part.
func (rd *round) awaitAck(x *stream) bool {
	by := rd.deadline.Add(rd.s.cfg.linger)
	if _, err := x.c.ReadFrame(0, until(by), until(by)); err != io.EOF {
		return false
	}
	rd.confirm()
	return true
}

// replyPart sends part i once it is here (until the round ends), with
// its data.
func (rd *round) replyPart(x *stream, i int) bool {
	ps := rd.parts[i]
	select {
	case <-ps.done:
	case <-rd.ctx.Done():
		return false
	}
	rd.mu.Lock()
	msg := ps.msg
	rd.mu.Unlock()
	by := rd.deadline.Add(rd.s.cfg.linger)
	if err := x.sendPart(msg, by); err != nil {
		return false
	}
	if i != rd.self || msg.Reducer != rd.self {
		return true
	}
	return rd.awaitAck(x)
}

// serveRequest answers FETCH (a replacement reducer wants a copy of the
// part or this member's slice of it) and RECOVER (a member wants the part
// from this member as its replacement reducer).
func (rd *round) serveRequest(x *stream, p peer.ID, m *requestMsg) bool {
	if !rd.checkSender(x, p, m.Hash, m.Sender) {
		return true
	}
	i := m.Part
	if i >= len(rd.members) || m.Sender == rd.self {
		x.sendError(codeBadRequest, "part %d of %d", i, len(rd.members))
		return true
	}
	if i == rd.self {
		// This member is the part's reducer: whoever asks wants it now.
		rd.mu.Lock()
		rd.force = true
		rd.mu.Unlock()
		rd.poke()
		if rd.size[i] > 0 {
			rd.reduceOwn(nil)
		}
		return rd.replyPart(x, i)
	}
	if m.Type == msgRecover {
		rd.mu.Lock()
		have := rd.parts[i].msg != nil
		rd.mu.Unlock()
		if !have {
			a := rd.startArbitration(i)
			select {
			case <-a.done:
			case <-rd.ctx.Done():
				return false
			}
			if !rd.has(i) {
				why := a.err
				if why == nil {
					why = errors.New("not recovered")
				}
				x.sendError(codeUnavailable, "part %d: %v", i, why)
				return true
			}
		}
		return rd.replyPart(x, i)
	}

	// FETCH: a copy if this member has the part; else its slice, and the
	// part is given over to the asker.
	rd.mu.Lock()
	ps := rd.parts[i]
	if ps.msg != nil {
		rd.mu.Unlock()
		return rd.replyPart(x, i)
	}
	if ps.arb != nil {
		select {
		case <-ps.arb.done:
		default:
			if rd.rank(i, rd.self) < rd.rank(i, m.Sender) {
				rd.mu.Unlock()
				x.sendError(codeConflict, "member %d recovers part %d", rd.self, i)
				return true
			}
			if ps.yieldTo < 0 || rd.rank(i, m.Sender) < rd.rank(i, ps.yieldTo) {
				ps.yieldTo = m.Sender
			}
		}
	}
	if ps.hint < 0 {
		ps.hint = m.Sender
	}
	rd.mu.Unlock()
	if !rd.deferPart(i) {
		return rd.replyPart(x, i) // it came meanwhile
	}
	in := rd.ownInput(i)
	if in == nil {
		x.sendError(codeUnavailable, "part %d: this member's round has ended", i)
		return true
	}
	defer putBuf(in.data)
	hdr := &contribMsg{Hash: rd.hash, ID: rd.id, Deadline: rd.deadline.UnixMilli(), Sender: rd.self, Part: i, Weight: in.weight}
	if err := x.send(hdr, rd.deadline); err != nil {
		return false
	}
	if err := x.sendData(in.data, rd.deadline); err != nil {
		return false
	}
	return true
}

// String describes a round for logs.
func (rd *round) String() string {
	return fmt.Sprintf("round %q (%d members, %d values, %s)", rd.id, len(rd.members), rd.n, rd.enc)
}
