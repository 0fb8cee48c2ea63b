package credit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

type key struct {
	priv crypto.PrivKey
	id   peer.ID
}

func newKey(t testing.TB) key {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return key{priv, id}
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// countersigned is a receipt of server for client, signed by both.
func countersigned(t testing.TB, server, client key, seq, tokens uint64, end time.Time) *ServeRecord {
	t.Helper()
	r := Receipt{Seq: seq, Server: server.id, Client: client.id, Model: "bafymodel", First: 2, Last: 4,
		Session: 7, Tokens: tokens, Start: end.Add(-time.Minute), End: end}
	ss, err := Sign(server.priv, r.Signed())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Sign(client.priv, r.Signed())
	if err != nil {
		t.Fatal(err)
	}
	return &ServeRecord{Receipt: r, ServerSig: ss, ClientSig: cs, Status: Countersigned}
}

func signedRound(t testing.TB, job string, n uint64, members ...key) *RoundRecord {
	t.Helper()
	r := Round{Job: job, Round: n, State: [32]byte{1, 2, 3}}
	for i, m := range members {
		r.Members = append(r.Members, m.id)
		r.Shares = append(r.Shares, uint64(4+i))
	}
	rec := &RoundRecord{Time: t0, Round: r}
	for i, m := range members {
		s, err := Sign(m.priv, r.Signed())
		if err != nil {
			t.Fatal(err)
		}
		rec.Sigs = append(rec.Sigs, MemberSig{Member: i, Sig: s})
	}
	return rec
}

func encode(recs ...Record) []byte {
	var b []byte
	for _, r := range recs {
		b = EncodeRecord(b, r)
	}
	return b
}

// Records come back as written, and a whole ledger of true receipts
// verifies.
func TestRecordsRoundTripAndVerify(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	recs := []Record{
		countersigned(t, a, b, 1, 57, t0),
		&ServeRecord{Receipt: countersigned(t, a, c, 2, 9, t0).Receipt, ServerSig: countersigned(t, a, c, 2, 9, t0).ServerSig,
			Status: Unanswered, Note: "could not reach the client"},
		signedRound(t, "job1", 3, a, b, c),
		&Summary{Day: 20000, Kind: Served, Peer: b.id, Subject: "bafymodel", Units: 100, Countersigned: 90, Receipts: 3},
	}
	file := encode(recs...)
	var got []Record
	end, err := readRecords(bytes.NewReader(file), func(r Record, _ int64) error { got = append(got, r); return nil })
	if err != nil || end != int64(len(file)) || len(got) != len(recs) {
		t.Fatalf("read %d records to %d of %d: %v", len(got), end, len(file), err)
	}
	if !bytes.Equal(encode(got...), file) {
		t.Error("the records read do not encode to the same bytes")
	}
	c2, err := Verify(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if c2 != (Checked{Receipts: 2, Countersigned: 1, Rounds: 1, RoundSigs: 3, Summaries: 1, Records: 4}) {
		t.Errorf("checked %+v", c2)
	}
	tot := TotalsOf(got, a.id)
	if tot.Served != 57+9+100 || tot.ServedCountersigned != 57+90 || tot.Trained != 4 || tot.TrainedCountersigned != 4 {
		t.Errorf("totals %+v", tot)
	}
}

// A receipt with an altered count, one signed with the wrong key, a
// countersignature forged by a third key and a round signature moved to
// another member are each refused, naming why.
func TestVerifyRefusesForgeries(t *testing.T) {
	a, b, mallory := newKey(t), newKey(t), newKey(t)
	altered := countersigned(t, a, b, 1, 57, t0)
	altered.Receipt.Tokens = 5700
	wrongKey := countersigned(t, mallory, b, 1, 57, t0)
	wrongKey.Receipt.Server = a.id // signed by mallory, claims to be a's
	forgedClient := countersigned(t, a, mallory, 1, 57, t0)
	forgedClient.Receipt.Client = b.id
	forgedClient.ServerSig, _ = Sign(a.priv, forgedClient.Receipt.Signed())
	noCounter := countersigned(t, a, b, 1, 57, t0)
	noCounter.ClientSig = Sig{}
	round := signedRound(t, "job1", 3, a, b)
	round.Round.Shares[0] = 400 // a claims a bigger share after the fact
	for _, tc := range []struct {
		name string
		rec  Record
		want error
		says string
	}{
		{"altered count", altered, ErrBadSignature, "server " + a.id.String()},
		{"wrong server key", wrongKey, ErrWrongKey, "key is " + mallory.id.String()},
		{"forged countersignature", forgedClient, ErrWrongKey, "client " + b.id.String()},
		{"countersignature missing", noCounter, ErrNotSigned, "client"},
		{"altered round", round, ErrBadSignature, "round 3 of job job1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := countersigned(t, a, b, 2, 3, t0)
			_, err := Verify(bytes.NewReader(encode(good, tc.rec)))
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrForged) || !strings.Contains(err.Error(), tc.says) ||
				!strings.Contains(err.Error(), "record 1 at offset") {
				t.Fatalf("got %v, want %v naming %q and record 1", err, tc.want, tc.says)
			}
		})
	}
}

// A crash in the middle of a write leaves a torn last record: open drops
// it with a warning and keeps every record before it; the next append
// goes where it began. A ledger damaged before its end is refused.
func TestLedgerTornRecord(t *testing.T) {
	a, b := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), LedgerFile)
	l, err := OpenLedger(path, Self(a.id), Now(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.Append(countersigned(t, a, b, uint64(i+1), 10, t0)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	whole, _ := os.ReadFile(path)
	last := EncodeRecord(nil, countersigned(t, a, b, 4, 10, t0))
	for _, cut := range []int{1, len(last) / 2, len(last) - 1} {
		if err := os.WriteFile(path, append(append([]byte(nil), whole...), last[:cut]...), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLedger(path, Self(a.id), Now(func() time.Time { return t0 }))
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if n := len(l.Records()); n != 3 {
			t.Errorf("cut at %d: %d records kept, want 3", cut, n)
		}
		if err := l.Append(countersigned(t, a, b, 4, 10, t0)); err != nil {
			t.Fatal(err)
		}
		l.Close()
		c, err := Verify(bytes.NewReader(must(os.ReadFile(path))))
		if err != nil || c.Receipts != 4 {
			t.Errorf("cut at %d: after the append %+v, %v", cut, c, err)
		}
	}
	// A flipped byte inside the first record, with records after it.
	bad := append([]byte(nil), whole...)
	bad[10] ^= 0xff
	os.WriteFile(path, bad, 0o600)
	if _, err := OpenLedger(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "record 0 at offset 0: checksum fails") {
		t.Errorf("a damaged ledger: %v", err)
	}
	// A flipped byte in the last record only: torn, dropped.
	bad = append([]byte(nil), whole...)
	bad[len(bad)-6] ^= 0xff
	os.WriteFile(path, bad, 0o600)
	l, err = OpenLedger(path)
	if err != nil || len(l.Records()) != 2 {
		t.Fatalf("a last record failing its checksum: %v", err)
	}
	l.Close()
	// Verify refuses a torn export outright.
	if _, err := Verify(bytes.NewReader(whole[:len(whole)-3])); !errors.Is(err, ErrTorn) {
		t.Errorf("verify of a torn file: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Receipts older than the days kept fold into daily summaries per
// counterparty, keeping the totals; so does the oldest day past the
// records kept.
func TestLedgerFolds(t *testing.T) {
	a, b, c := newKey(t), newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), LedgerFile)
	now := t0
	clock := func() time.Time { return now }
	l, err := OpenLedger(path, Self(a.id), Now(clock), KeepDays(30), MaxRecords(5))
	if err != nil {
		t.Fatal(err)
	}
	old := t0.Add(-40 * 24 * time.Hour)
	for i, r := range []Record{
		countersigned(t, a, b, 1, 10, old), countersigned(t, a, b, 2, 20, old), countersigned(t, a, c, 3, 5, old),
		countersigned(t, a, b, 4, 7, t0),
	} {
		if err := l.Append(r); err != nil {
			t.Fatal(i, err)
		}
	}
	want := TotalsOf(l.Records(), a.id)
	recs := l.Records()
	if len(recs) != 3 { // two summaries (b and c that day) and the young receipt
		t.Fatalf("%d records after folding, want 3: %+v", len(recs), recs)
	}
	if s, ok := recs[0].(*Summary); !ok || s.Units+recs[1].(*Summary).Units != 35 {
		t.Errorf("summaries %+v %+v", recs[0], recs[1])
	}
	if want.Served != 42 || want.ServedCountersigned != 42 {
		t.Errorf("totals after folding %+v", want)
	}
	l.Close()
	// The file holds the folded records.
	l, err = OpenLedger(path, Self(a.id), Now(clock), KeepDays(30), MaxRecords(5))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Totals(a.id); got.Served != 42 || got.Summaries != 2 || got.Receipts != 1 {
		t.Errorf("reopened: %+v", got)
	}

	// Past the records kept, the oldest day folds though it is young.
	for i := range 5 {
		if err := l.Append(countersigned(t, a, c, uint64(10+i), 1, t0.Add(time.Duration(i-5)*24*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Totals(a.id); got.Receipts != 5 || got.Served != 47 {
		t.Errorf("past the cap: %+v", got)
	}
	l.Close()
}

// A Seq folded into a summary is never issued again, across a restart.
func TestLedgerSeqSurvivesFolding(t *testing.T) {
	a, b := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), LedgerFile)
	open := func() *Ledger {
		l, err := OpenLedger(path, Self(a.id), Now(func() time.Time { return t0 }), KeepDays(30))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	if err := l.Append(countersigned(t, a, b, 9, 10, t0.Add(-40*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open()
	defer l.Close()
	if tot := l.Totals(a.id); tot.Receipts != 0 || tot.Summaries != 1 {
		t.Fatalf("not folded: %+v", tot)
	}
	if seq := l.nextSeq(); seq != 10 {
		t.Errorf("the next receipt's seq: %d, want 10", seq)
	}
}
