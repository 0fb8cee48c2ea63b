package collab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/train"
)

// The member serving a checkpoint to a peer that joins late dies in the
// middle of a block: the joiner takes what that member still owed from
// the other members, catches up, and the three that are left end the job
// with bitwise the same parameters.
func TestServerDiesMidCatchUp(t *testing.T) {
	b := loadBase(t)
	const steps, holdAt = 5, 1
	peers := newPeers(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	// An averaging of the whole model takes seconds with the race
	// detector on two cores.
	cfg := Config{Job: "fox-serve", MinPeers: 2, RoundTimeout: 30 * time.Second}
	var ms []*member
	for _, p := range peers {
		ms = append(ms, join(t, p, b.trainer(t, job("full", steps)), cfg))
	}
	// The members wait in round holdAt until they know of the late peer,
	// so that they serve it a checkpoint at that round or the next,
	// whatever the pace of the machine.
	for _, m := range ms {
		m.g.beforeAverage = func(round int, _ []float32) {
			for round == holdAt && !knowsOthers(m.p.dir.Known(cfg.Job), peers) && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	// Each member runs under a context of its own, so that the one whose
	// host is closed can be stopped.
	stops := map[peer.ID]context.CancelFunc{}
	for _, m := range ms {
		mctx, stop := context.WithCancel(ctx)
		defer stop()
		stops[m.p.h.ID()] = stop
		m.run(mctx)
	}
	for ms[0].g.Round() < holdAt && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}

	// The late peer reads its block streams through a tap. Once one
	// member has sent it more than a block and a half of them, that
	// member's host is closed, and the tap waits until the late peer has
	// seen its connection go before it hands on what it read: the rest of
	// the block under way, and the blocks after it, are lost with it.
	const killAfter = blocks.ChunkSize * 3 / 2
	byPeer := map[peer.ID]*member{}
	for _, m := range ms {
		byPeer[m.p.h.ID()] = m
	}
	var (
		victim *member
		chosen = make(chan struct{})
		killed = make(chan struct{})
		once   sync.Once
		late   *peerNode
	)
	tap := &blockTap{read: map[peer.ID]int64{}}
	tap.onRead = func(p peer.ID, total int64) {
		if total < killAfter || byPeer[p] == nil {
			return
		}
		once.Do(func() {
			victim = byPeer[p]
			close(chosen)
			victim.p.close()
			stops[p]()
			deadline := time.Now().Add(10 * time.Second)
			for late.h.Libp2p().Network().Connectedness(p) == network.Connected && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			close(killed)
		})
	}
	late = newPeerWith(t, func(h host.Host) host.Host { return &tappedHost{Host: h, tap: tap} })
	connect(t, append([]*peerNode{late}, peers...)...)
	// The late peer fetches a checkpoint once all three members store it,
	// so that each of them serves a part.
	var servers []*blocks.Store
	for _, p := range peers {
		servers = append(servers, p.states.Store)
	}
	ls := &servedStates{BlockStates: late.states, servers: servers}
	lm := join(t, late, b.trainer(t, job("full", steps)), cfg)
	lm.g.states = ls
	joinedAt := time.Now()
	lm.run(ctx)

	select {
	case <-chosen:
	case <-ms[0].done:
		select {
		case <-chosen:
		default:
			t.Fatalf("the members ended the job before the late peer fetched a checkpoint (%v)", ms[0].err)
		}
	case <-ctx.Done():
		t.Fatal("no member was killed while the late peer fetched a checkpoint")
	}
	<-killed
	victim.wait(t) // its context was cancelled; whatever it returns
	var survivors []*member
	for _, m := range ms {
		if m != victim {
			survivors = append(survivors, m)
		}
	}
	survivors = append(survivors, lm)
	waitAll(t, survivors)

	// The checkpoint is many blocks, and the late peer read them from
	// every member: part of one from the victim, the rest from the others.
	got := ls.fetches()
	if len(got) == 0 {
		t.Fatal("the late peer took no checkpoint")
	}
	size := got[0].size
	if size < 8*blocks.ChunkSize {
		t.Fatalf("the checkpoint is %d bytes: too few blocks to die in the middle of", size)
	}
	read := tap.snapshot()
	dead := victim.p.h.ID()
	var fromOthers int64
	for _, m := range survivors[:2] {
		n := read[m.p.h.ID()]
		if n < blocks.ChunkSize {
			t.Errorf("the late peer read %d bytes from a surviving member, not one block", n)
		}
		fromOthers += n
	}
	if read[dead] < killAfter || read[dead] >= int64(size) {
		t.Errorf("the late peer read %d bytes of a %d-byte checkpoint from the member that died", read[dead], size)
	}
	if fromOthers+read[dead] < int64(size) {
		t.Errorf("the late peer read %d bytes in all for a %d-byte checkpoint", fromOthers+read[dead], size)
	}
	t.Logf("checkpoint %d bytes (%d blocks) at round %d; read %d bytes from the member that died, %d from the others; %d fetch(es)",
		size, (size+blocks.ChunkSize-1)/blocks.ChunkSize, got[len(got)-1].round, read[dead], fromOthers, len(got))

	// The late peer caught up: the first round it ended holds the
	// parameters the others reached in that round, and the three end the
	// job on the same ones.
	lr := lm.rounds()
	if len(lr) == 0 {
		t.Fatal("the late peer took part in no round")
	}
	var same bool
	for _, r := range survivors[0].rounds() {
		if r.Round == lr[0].Round {
			same = r.State == lr[0].State
		}
	}
	if !same {
		t.Errorf("round %d: the late peer's parameters differ from the members'", lr[0].Round)
	}
	for i, m := range survivors {
		if m.g.State() != survivors[0].g.State() || train.Hash(m.tr.Params) != m.g.State() || m.tr.Step != steps {
			t.Errorf("survivor %d at step %d with other parameters", i, m.tr.Step)
		}
	}
	if lr[0].Round > holdAt+1 {
		t.Errorf("the late peer's first round is %d, want %d or %d", lr[0].Round, holdAt, holdAt+1)
	}
	for _, r := range survivors[0].rounds() {
		if r.Round > holdAt {
			t.Logf("round %d: %d members, dropped %d, took %v", r.Round, len(r.Members), len(r.Dropped), r.Wall.Round(time.Millisecond))
		}
	}
	if last := lr[len(lr)-1]; len(last.Members) != 3 || last.Round != steps-1 || slices.Contains(last.Members, dead) {
		t.Errorf("the late peer's last round, %d, had %d members", last.Round, len(last.Members))
	}
	t.Logf("the late peer ended its first round, %d, %v after it started", lr[0].Round, lm.first.Sub(joinedAt).Round(time.Millisecond))
}

// knowsOthers says whether recs hold a record of a peer other than
// peers'.
func knowsOthers(recs []Member, peers []*peerNode) bool {
	return slices.ContainsFunc(recs, func(m Member) bool {
		return !slices.ContainsFunc(peers, func(p *peerNode) bool { return p.h.ID() == m.Peer })
	})
}

// blockTap counts the bytes a host reads from each peer over the blocks
// protocol and tells onRead the running total after every read.
type blockTap struct {
	onRead func(p peer.ID, total int64)

	mu   sync.Mutex
	read map[peer.ID]int64
}

func (tp *blockTap) add(p peer.ID, n int) {
	tp.mu.Lock()
	tp.read[p] += int64(n)
	total := tp.read[p]
	tp.mu.Unlock()
	tp.onRead(p, total)
}

func (tp *blockTap) snapshot() map[peer.ID]int64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return maps.Clone(tp.read)
}

// tappedHost hands out its streams of the blocks protocol through a tap.
type tappedHost struct {
	host.Host
	tap *blockTap
}

func (h *tappedHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil || s.Protocol() != p2p.BlocksProtocol {
		return s, err
	}
	return &tappedStream{Stream: s, tap: h.tap}, nil
}

type tappedStream struct {
	network.Stream
	tap *blockTap
}

func (s *tappedStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if n > 0 {
		s.tap.add(s.Conn().RemotePeer(), n)
	}
	return n, err
}

// servedStates is a joiner's BlockStates that starts a fetch only once
// every member's store holds the checkpoint, and records what it took.
type servedStates struct {
	*BlockStates
	servers []*blocks.Store

	mu   sync.Mutex
	took []fetched
}

type fetched struct {
	size, round int
}

func (s *servedStates) Get(ctx context.Context, c cid.Cid, from []peer.ID) ([]byte, error) {
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, st := range s.servers {
		for {
			ok, err := st.Has(wctx, c)
			if err != nil && !errors.Is(err, blocks.ErrClosed) {
				return nil, err
			}
			if ok || errors.Is(err, blocks.ErrClosed) {
				break
			}
			select {
			case <-wctx.Done():
				return nil, fmt.Errorf("checkpoint %s: not on every member: %w", c, wctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	data, err := s.BlockStates.Get(ctx, c, from)
	if err == nil {
		h, herr := train.CheckCheckpoint(data)
		if herr != nil {
			return nil, herr
		}
		s.mu.Lock()
		s.took = append(s.took, fetched{size: len(data), round: h.Step})
		s.mu.Unlock()
	}
	return data, err
}

func (s *servedStates) fetches() []fetched {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.took)
}
