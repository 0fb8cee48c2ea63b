package credit

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// LedgerFile is the ledger's file name inside a node's data directory.
const LedgerFile = "credit.ledger"

// Defaults of the ledger's bounds.
const (
	// DefaultKeepDays is how long receipts and rounds stay whole, with
	// their signatures; older ones are folded into daily summaries.
	DefaultKeepDays = 90
	// DefaultMaxRecords bounds the whole records kept: past it the
	// oldest days are folded, however young.
	DefaultMaxRecords = 100_000
)

// LedgerOption sets an option of OpenLedger.
type LedgerOption func(*Ledger) error

// KeepDays sets how many days receipts stay whole (at least 1).
func KeepDays(n int) LedgerOption {
	return func(l *Ledger) error {
		if n < 1 {
			return fmt.Errorf("credit: keep days %d: at least 1", n)
		}
		l.keepDays = n
		return nil
	}
}

// MaxRecords bounds the whole records (receipts and rounds) the ledger
// keeps (at least 1).
func MaxRecords(n int) LedgerOption {
	return func(l *Ledger) error {
		if n < 1 {
			return fmt.Errorf("credit: max records %d: at least 1", n)
		}
		l.maxRecords = n
		return nil
	}
}

// Self names the node whose ledger it is, for the folding of receipts
// into summaries (served or used); without it nothing is folded.
func Self(id peer.ID) LedgerOption {
	return func(l *Ledger) error { l.self = id; return nil }
}

// Logger sets where the ledger reports a torn record dropped.
func Logger(lg *slog.Logger) LedgerOption {
	return func(l *Ledger) error { l.log = lg; return nil }
}

// Now sets the ledger's clock (tests).
func Now(now func() time.Time) LedgerOption {
	return func(l *Ledger) error { l.now = now; return nil }
}

// Ledger is a node's append-only file of receipts: those it issued as a
// server, those it countersigned as a client, the rounds it trained in,
// and the summaries of old ones. Every record is written whole and
// synced before Append returns.
type Ledger struct {
	path       string
	keepDays   int
	maxRecords int
	self       peer.ID
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex
	f       *os.File
	recs    []Record
	lastSeq uint64 // the highest receipt Seq this node issued
	buf     []byte
}

// OpenLedger opens (or creates) the ledger at path. A torn last record
// (a crash in the middle of a write) is dropped with a warning and cut
// from the file; nothing before it is lost. A ledger damaged before its
// end is refused, naming the record. Receipts older than the days kept,
// or past the records kept, are folded into summaries, and the file is
// rewritten (to a new file renamed over the old).
func OpenLedger(path string, opts ...LedgerOption) (*Ledger, error) {
	l := &Ledger{path: path, keepDays: DefaultKeepDays, maxRecords: DefaultMaxRecords, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(l); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("credit: ledger: %w", err)
	}
	end, err := readRecords(bufio.NewReader(f), func(rec Record, _ int64) error {
		l.add(rec)
		return nil
	})
	if errors.Is(err, ErrTorn) {
		st, _ := f.Stat()
		l.log.Warn("credit ledger: a torn last record dropped (the node stopped in the middle of a write)",
			"file", path, "offset", end, "bytes", st.Size()-end, "err", err)
		if err = f.Truncate(end); err != nil {
			err = fmt.Errorf("credit: ledger %s: cut the torn record: %w", path, err)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	if _, err := f.Seek(end, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("credit: ledger: %w", err)
	}
	l.f = f
	if l.foldLocked() {
		if err := l.rewriteLocked(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return l, nil
}

// add keeps rec in memory.
func (l *Ledger) add(rec Record) {
	l.recs = append(l.recs, rec)
	switch r := rec.(type) {
	case *ServeRecord:
		if r.Receipt.Server == l.self {
			l.lastSeq = max(l.lastSeq, r.Receipt.Seq)
		}
	case *Summary:
		l.lastSeq = max(l.lastSeq, r.LastSeq)
	}
}

// Path is the ledger's file.
func (l *Ledger) Path() string { return l.path }

// nextSeq reserves the Seq of the next receipt this node issues.
func (l *Ledger) nextSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastSeq++
	return l.lastSeq
}

// Append writes rec at the end of the file and syncs it. Past the bound
// of whole records the oldest days are folded and the file rewritten.
func (l *Ledger) Append(rec Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("credit: ledger closed")
	}
	l.buf = EncodeRecord(l.buf[:0], rec)
	if len(l.buf) > MaxFrame+16 {
		return fmt.Errorf("credit: a record of %d bytes, more than a ledger takes", len(l.buf))
	}
	if _, err := l.f.Write(l.buf); err != nil {
		return fmt.Errorf("credit: ledger: append: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("credit: ledger: sync: %w", err)
	}
	l.add(rec)
	if l.foldLocked() {
		return l.rewriteLocked()
	}
	return nil
}

// Records returns the records in the order written (shared: the caller
// must not change them).
func (l *Ledger) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// Close closes the file. Safe to call twice.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// day is t's day number, UTC.
func day(t time.Time) int { return int(t.UTC().Unix() / 86400) }

// recordDay is the day a whole record belongs to.
func recordDay(rec Record) int {
	switch r := rec.(type) {
	case *ServeRecord:
		return day(r.Receipt.End)
	case *RoundRecord:
		return day(r.Time)
	case *Summary:
		return r.Day
	}
	return 0
}

// foldLocked folds into summaries the whole records older than the days
// kept, and the oldest days past the records kept. It reports whether
// anything was folded.
func (l *Ledger) foldLocked() bool {
	if l.self == "" {
		return false
	}
	whole := 0
	for _, r := range l.recs {
		if _, ok := r.(*Summary); !ok {
			whole++
		}
	}
	cut := day(l.now()) - l.keepDays // days up to cut are folded
	if whole > l.maxRecords {
		// The oldest days go until the records fit.
		days := map[int]int{}
		for _, r := range l.recs {
			if _, ok := r.(*Summary); !ok {
				days[recordDay(r)]++
			}
		}
		keys := make([]int, 0, len(days))
		for d := range days {
			keys = append(keys, d)
		}
		slices.Sort(keys)
		for _, d := range keys {
			if whole <= l.maxRecords {
				break
			}
			whole -= days[d]
			cut = max(cut, d)
		}
	}
	type key struct {
		day     int
		kind    Kind
		peer    peer.ID
		subject string
	}
	sums := map[key]*Summary{}
	var keep []Record
	folded := false
	for _, rec := range l.recs {
		sum, isSum := rec.(*Summary)
		if !isSum && recordDay(rec) > cut {
			keep = append(keep, rec)
			continue
		}
		if !isSum {
			folded = true
		}
		es := entries(rec, l.self)
		if isSum {
			es = []Summary{*sum}
		}
		for _, e := range es {
			k := key{e.Day, e.Kind, e.Peer, e.Subject}
			s := sums[k]
			if s == nil {
				s = &Summary{Day: e.Day, Kind: e.Kind, Peer: e.Peer, Subject: e.Subject}
				sums[k] = s
			}
			s.Units += e.Units
			s.Countersigned += e.Countersigned
			s.Receipts += e.Receipts
			s.LastSeq = max(s.LastSeq, e.LastSeq)
		}
	}
	if !folded {
		return false
	}
	var out []Record
	for _, s := range sums {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Record) int {
		x, y := a.(*Summary), b.(*Summary)
		return cmp.Or(cmp.Compare(x.Day, y.Day), cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Peer, y.Peer), cmp.Compare(x.Subject, y.Subject))
	})
	l.recs = append(out, keep...)
	return true
}

// rewriteLocked writes the records in memory to a new file and renames
// it over the ledger.
func (l *Ledger) rewriteLocked() error {
	tmp := l.path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("credit: ledger: rewrite: %w", err)
	}
	var b []byte
	for _, r := range l.recs {
		b = EncodeRecord(b, r)
	}
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("credit: ledger: rewrite: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("credit: ledger: rewrite: %w", err)
	}
	l.f.Close()
	l.f = f
	return nil
}
