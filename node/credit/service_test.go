package credit

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p"
)

type testNode struct {
	h *p2p.Host
	s *Service
	l *Ledger
}

func newTestNodes(t *testing.T, n int, cfg Config) []*testNode {
	t.Helper()
	var out []*testNode
	for range n {
		h, err := p2p.New(p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(), p2p.NoMDNS(), p2p.MemoryDatastore())
		if err != nil {
			t.Fatal(err)
		}
		l, err := OpenLedger(filepath.Join(t.TempDir(), LedgerFile), Self(h.ID()))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewService(h.Libp2p(), l, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		tn := &testNode{h: h, s: s, l: l}
		t.Cleanup(func() {
			s.Close()
			l.Close()
			h.Close()
		})
		out = append(out, tn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, a := range out {
		for _, b := range out[i+1:] {
			if err := a.h.Libp2p().Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Libp2p().Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// waitRecords waits until l holds n records.
func waitRecords(t *testing.T, l *Ledger, n int) []Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := l.Records()
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records, want %d: %+v", len(recs), n, recs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server's receipt that matches what the client received comes back
// countersigned and both ledgers hold it; one that claims more is
// refused with the client's count; one for a session the client never
// had is refused and leaves nothing in the client's ledger.
func TestReceiptExchange(t *testing.T) {
	ns := newTestNodes(t, 3, Config{Timeout: 5 * time.Second})
	a, b, c := ns[0], ns[1], ns[2]
	now := time.Now()
	b.s.Used(a.h.ID(), 7, "bafym", 0, 2, 12)
	b.s.Used(a.h.ID(), 7, "bafym", 0, 2, 1)
	a.s.Issue(Receipt{Client: b.h.ID(), Model: "bafym", First: 0, Last: 2, Session: 7, Tokens: 13, Start: now, End: now})
	recs := waitRecords(t, a.l, 1)
	r := recs[0].(*ServeRecord)
	if r.Status != Countersigned || r.Receipt.Tokens != 13 || r.Receipt.Seq != 1 || VerifyRecord(r) != nil {
		t.Fatalf("server's record %+v: %v", r, VerifyRecord(r))
	}
	cr := waitRecords(t, b.l, 1)[0].(*ServeRecord)
	if string(EncodeRecord(nil, cr)) != string(EncodeRecord(nil, r)) {
		t.Errorf("the client's record differs from the server's:\n%+v\n%+v", cr, r)
	}
	if tb := b.l.Totals(b.h.ID()); tb.Used != 13 || tb.Served != 0 {
		t.Errorf("client's totals %+v", tb)
	}

	// Claims more than the client received.
	b.s.Used(a.h.ID(), 8, "bafym", 0, 2, 5)
	a.s.Issue(Receipt{Client: b.h.ID(), Model: "bafym", First: 0, Last: 2, Session: 8, Tokens: 6, Start: now, End: now})
	r = waitRecords(t, a.l, 2)[1].(*ServeRecord)
	if r.Status != Refused || !strings.Contains(r.Note, "the client counted 5 tokens") || r.Receipt.Seq != 2 {
		t.Errorf("inflated receipt: %+v", r)
	}
	// A session C never had.
	a.s.Issue(Receipt{Client: c.h.ID(), Model: "bafym", First: 0, Last: 2, Session: 9, Tokens: 6, Start: now, End: now})
	r = waitRecords(t, a.l, 3)[2].(*ServeRecord)
	if r.Status != Refused || !strings.Contains(r.Note, "no session 9") {
		t.Errorf("unknown session: %+v", r)
	}
	if n := len(c.l.Records()); n != 0 {
		t.Errorf("C recorded %d receipts of a session it never had", n)
	}
	ta := a.l.Totals(a.h.ID())
	if ta.Served != 13+6+6 || ta.ServedCountersigned != 13 {
		t.Errorf("server's totals %+v", ta)
	}
}

// The members of a round sign its summary and each records it with
// every member's signature; a member whose summary differs signs
// nothing the others take, and they record the round without it once
// the wait is over.
func TestRoundSignatures(t *testing.T) {
	ns := newTestNodes(t, 3, Config{Timeout: 5 * time.Second, RoundWait: 500 * time.Millisecond})
	round := Round{Job: "job1", Round: 4, State: [32]byte{9}, Shares: []uint64{3, 3, 2}}
	for _, n := range ns {
		round.Members = append(round.Members, n.h.ID())
	}
	for _, n := range ns {
		if err := n.s.SignRound(round); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range ns {
		r := waitRecords(t, n.l, 1)[0].(*RoundRecord)
		if len(r.Sigs) != 3 || VerifyRecord(r) != nil {
			t.Fatalf("member %d: %d signatures: %v", i, len(r.Sigs), VerifyRecord(r))
		}
		if tot := n.l.Totals(n.h.ID()); tot.Trained != round.Shares[i] || tot.TrainedCountersigned != round.Shares[i] {
			t.Errorf("member %d: totals %+v", i, tot)
		}
	}
	// C sees other shares.
	round.Round = 5
	other := round
	other.Shares = []uint64{1, 1, 6}
	ns[0].s.SignRound(round)
	ns[1].s.SignRound(round)
	ns[2].s.SignRound(other)
	for i, n := range ns[:2] {
		r := waitRecords(t, n.l, 2)[1].(*RoundRecord)
		if len(r.Sigs) != 2 || VerifyRecord(r) != nil {
			t.Errorf("member %d: %d signatures on the disputed round: %v", i, len(r.Sigs), VerifyRecord(r))
		}
		if tot := n.l.Totals(n.h.ID()); tot.TrainedCountersigned != round.Shares[i] || tot.Trained != 2*round.Shares[i] {
			t.Errorf("member %d: totals %+v", i, tot)
		}
	}
	if err := ns[0].s.SignRound(Round{Job: "j", Members: []peer.ID{ns[1].h.ID()}, Shares: []uint64{1}}); err == nil {
		t.Error("signed a round this node is no member of")
	}
}
