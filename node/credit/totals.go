package credit

import (
	"cmp"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// entries is what rec counts for self, as summaries of one record each
// (none when rec does not concern self).
func entries(rec Record, self peer.ID) []Summary {
	switch r := rec.(type) {
	case *Summary:
		return []Summary{*r}
	case *ServeRecord:
		e := Summary{Day: day(r.Receipt.End), Subject: r.Receipt.Model, Units: r.Receipt.Tokens, Receipts: 1}
		switch self {
		case r.Receipt.Server:
			e.Kind, e.Peer, e.LastSeq = Served, r.Receipt.Client, r.Receipt.Seq
		case r.Receipt.Client:
			e.Kind, e.Peer = Used, r.Receipt.Server
		default:
			return nil
		}
		if r.Status == Countersigned {
			e.Countersigned = e.Units
		}
		return []Summary{e}
	case *RoundRecord:
		i := r.Round.index(self)
		if i < 0 || i >= len(r.Round.Shares) {
			return nil
		}
		e := Summary{Day: day(r.Time), Kind: Trained, Subject: r.Round.Job, Units: r.Round.Shares[i], Receipts: 1}
		if r.countersignedFor(i) {
			e.Countersigned = e.Units
		}
		return []Summary{e}
	}
	return nil
}

// countersignedFor reports whether every member other than member i
// signed the round (their signatures are checked when they arrive).
func (r *RoundRecord) countersignedFor(i int) bool {
	signed := map[int]bool{}
	for _, s := range r.Sigs {
		if !s.Sig.IsZero() {
			signed[s.Member] = true
		}
	}
	for j := range r.Round.Members {
		if j != i && !signed[j] {
			return false
		}
	}
	return len(r.Round.Members) > 1
}

// Totals is what a ledger credits its node with.
type Totals struct {
	// Served: tokens this node served to clients, and those of them
	// the clients countersigned.
	Served, ServedCountersigned uint64
	// Used: tokens servers served to this node (receipts it signed).
	Used uint64
	// Trained: examples this node trained in jobs' rounds, and those
	// of them every other member of the round signed.
	Trained, TrainedCountersigned uint64
	// Receipts and Rounds count the whole records; Summaries the folded.
	Receipts, Rounds, Summaries int
	// Rows break the totals down by day (newest first), kind,
	// counterparty and model or job.
	Rows []Summary
}

// Totals adds up the ledger's records for self.
func (l *Ledger) Totals(self peer.ID) Totals {
	return TotalsOf(l.Records(), self)
}

// TotalsOf adds up recs for self.
func TotalsOf(recs []Record, self peer.ID) Totals {
	type key struct {
		day     int
		kind    Kind
		peer    peer.ID
		subject string
	}
	var t Totals
	rows := map[key]*Summary{}
	for _, rec := range recs {
		switch rec.(type) {
		case *ServeRecord:
			t.Receipts++
		case *RoundRecord:
			t.Rounds++
		case *Summary:
			t.Summaries++
		}
		for _, e := range entries(rec, self) {
			switch e.Kind {
			case Served:
				t.Served += e.Units
				t.ServedCountersigned += e.Countersigned
			case Used:
				t.Used += e.Units
			case Trained:
				t.Trained += e.Units
				t.TrainedCountersigned += e.Countersigned
			}
			k := key{e.Day, e.Kind, e.Peer, e.Subject}
			if s := rows[k]; s != nil {
				s.Units += e.Units
				s.Countersigned += e.Countersigned
				s.Receipts += e.Receipts
			} else {
				rows[k] = &e
			}
		}
	}
	for _, s := range rows {
		t.Rows = append(t.Rows, *s)
	}
	slices.SortFunc(t.Rows, func(a, b Summary) int {
		return cmp.Or(cmp.Compare(b.Day, a.Day), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Subject, b.Subject))
	})
	return t
}
