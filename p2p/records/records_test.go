package records_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mycel-net/mycel/p2p/records"
	"github.com/mycel-net/mycel/p2p/wire"
)

// noteRecord is a small record kind, the way train publishes its job and
// peer records: a topic, a note, and the stamp.
type noteRecord struct {
	Peer    peer.ID   `json:"-"`
	Job     string    `json:"job"`
	Note    string    `json:"note"`
	Gone    bool      `json:"gone,omitempty"`
	Seq     uint64    `json:"seq"`
	Expires time.Time `json:"expires"`
}

func (*noteRecord) Domain() string { return "mycel-test-note" }
func (*noteRecord) Codec() []byte  { return []byte("/mycel/test-note/1") }

func (r *noteRecord) MarshalRecord() ([]byte, error) { return json.Marshal(r) }

func (r *noteRecord) UnmarshalRecord(b []byte) error {
	var n noteRecord
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if err := checkNote(&n); err != nil {
		return err
	}
	*r = n
	return nil
}

func (r *noteRecord) Topic() string { return r.Job }
func (r *noteRecord) Leaving() bool { return r.Gone }

func (r *noteRecord) Stamp() records.Stamp {
	return records.Stamp{Peer: r.Peer, Seq: r.Seq, Expires: r.Expires}
}

func (r *noteRecord) SetStamp(s records.Stamp) { r.Peer, r.Seq, r.Expires = s.Peer, s.Seq, s.Expires }

func checkNote(r *noteRecord) error {
	if r.Job == "" || len(r.Note) > 64 {
		return errors.New("bad note record")
	}
	return nil
}

var notes = &records.Kind[noteRecord, *noteRecord]{
	Name:     "note record",
	MaxBytes: 1 << 10,
	MaxTTL:   time.Hour,
	MaxAddrs: 4,
	Check:    checkNote,
	Leave:    func(r *noteRecord, job string) { r.Job, r.Gone = job, true },
}

const noteProtocol protocol.ID = "/mycel/test-notes/1"

func key(t testing.TB) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := key(t)
	r := &noteRecord{Job: "j", Note: "hello", Seq: 3, Expires: time.Now().Add(time.Minute).Round(time.Second)}
	raw, err := notes.Seal(r, k)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	if r.Peer != id {
		t.Fatalf("sealed record speaks for %s, want its signer %s", r.Peer, id)
	}
	got, err := notes.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != id || got.Note != "hello" || got.Seq != 3 || !got.Expires.Equal(r.Expires) {
		t.Fatalf("opened %+v, sealed %+v", got, r)
	}
	if !notes.Valid(got.Stamp(), time.Now()) || notes.Valid(got.Stamp(), r.Expires) {
		t.Fatal("validity is not the span up to expiry")
	}
	far := records.Stamp{Expires: time.Now().Add(time.Hour + 2*time.Minute)}
	if notes.Valid(far, time.Now()) {
		t.Fatal("a record expiring past MaxTTL is valid")
	}

	// The payload is under the signature.
	i := bytes.Index(raw, []byte("hello"))
	bad := bytes.Clone(raw)
	bad[i] = 'j'
	if _, err := notes.Open(bad); err == nil {
		t.Fatal("opened a record whose payload was changed")
	}
	if _, err := notes.Open(make([]byte, notes.MaxBytes+1)); err == nil {
		t.Fatal("opened an oversized record")
	}
	if _, err := notes.Seal(&noteRecord{}, k); err == nil {
		t.Fatal("sealed a record that fails its check")
	}
	long := &noteRecord{Job: "j", Note: string(make([]byte, 60))}
	small := *notes
	small.MaxBytes = 100
	if _, err := small.Seal(long, k); err == nil {
		t.Fatal("sealed a record over MaxBytes")
	}
}

// FuzzOpen feeds arbitrary bytes to Open: whatever opens passed the
// payload's checks and names its signer.
func FuzzOpen(f *testing.F) {
	k := key(f)
	raw, _ := notes.Seal(&noteRecord{Job: "j", Note: "n", Seq: 1, Expires: time.Now()}, k)
	f.Add(raw)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := notes.Open(b)
		if err != nil {
			return
		}
		if err := checkNote(r); err != nil || r.Peer == "" {
			t.Fatalf("opened %+v: %v", r, err)
		}
	})
}

type node struct {
	h   host.Host
	dir *records.Directory[noteRecord, *noteRecord]
}

// nodes starts n connected hosts on a mock network, each with gossipsub
// and a directory of note records.
func nodes(t *testing.T, n int, cfg records.Config) []node {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := make([]node, n)
	for i := range out {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign))
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.Protocol, c.Namespace, c.PubSub = noteProtocol, "/mycel/test-notes/", ps
		d, err := records.New(h, notes, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		out[i] = node{h: h, dir: d}
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	return out
}

// pull asks p for its records of topic over the pull protocol.
func pull(t *testing.T, h host.Host, p peer.ID, topic string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := h.NewStream(ctx, p, noteProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Write(wire.AppendString(nil, topic))
	st.CloseWrite()
	br := bufio.NewReader(st)
	n, err := wire.ReadBounded(br, "count", 0, records.MaxRecordsPerAnswer)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range n {
		b, err := wire.ReadFrame(br, notes.MaxBytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func notesOf(recs []noteRecord) string {
	s := ""
	for _, r := range recs {
		s += fmt.Sprintf("%s:%s ", r.Peer.ShortString(), r.Note)
	}
	return s
}

// A record announced by one node reaches another through a lookup, a
// newer one replaces it and an older one replayed by a third peer does
// not, and a withdrawal removes it.
func TestDirectoryLookupMergeWithdraw(t *testing.T) {
	ns := nodes(t, 3, records.Config{})
	a, b, c := ns[0], ns[1], ns[2]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const job = "job-1"
	if err := a.dir.Announce(ctx, &noteRecord{Job: job, Note: "first"}); err != nil {
		t.Fatal(err)
	}
	old := pull(t, b.h, a.h.ID(), job)
	if len(old) != 1 {
		t.Fatalf("a answers with %d records, want its own", len(old))
	}
	if err := b.dir.Lookup(ctx, job); err != nil {
		t.Fatal(err)
	}
	if recs := b.dir.Known(job); len(recs) != 1 || recs[0].Peer != a.h.ID() || recs[0].Note != "first" {
		t.Fatalf("b knows %s, want a:first", notesOf(recs))
	}
	if ts := b.dir.Topics(); len(ts) != 1 || ts[0] != job {
		t.Fatalf("b's topics: %v", ts)
	}

	// c replays a's first record; a has a newer one.
	c.h.SetStreamHandler(noteProtocol, func(st network.Stream) {
		defer st.Close()
		st.Write(wire.AppendFrame(wire.AppendUvarint(nil, 1), old[0]))
	})
	if err := a.dir.Announce(ctx, &noteRecord{Job: job, Note: "second"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := b.dir.Lookup(ctx, job); err != nil {
			t.Fatal(err)
		}
		if recs := b.dir.Known(job); len(recs) != 1 || recs[0].Note != "second" {
			t.Fatalf("b knows %s, want a:second", notesOf(recs))
		}
	}

	if err := a.dir.Withdraw(ctx, job); err != nil {
		t.Fatal(err)
	}
	if got := pull(t, b.h, a.h.ID(), job); len(got) != 0 {
		t.Fatalf("a still hands out %d records after withdrawing", len(got))
	}
	c.h.RemoveStreamHandler(noteProtocol)
	if err := b.dir.Lookup(ctx, job); err != nil {
		t.Fatal(err)
	}
	if recs := b.dir.Known(job); len(recs) != 0 {
		t.Fatalf("b still knows %s after a withdrew", notesOf(recs))
	}
	if err := b.dir.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.dir.Lookup(ctx, job); !errors.Is(err, records.ErrClosed) {
		t.Fatalf("lookup after close: %v, want ErrClosed", err)
	}
}

// Records pushed on the topic wake a watcher, and expire on their own.
func TestDirectoryPubSubAndExpiry(t *testing.T) {
	ns := nodes(t, 2, records.Config{RecordTTL: 2 * time.Second})
	a, b := ns[0], ns[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const job = "job-2"
	ch, stop, err := b.dir.Watch(job)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	_, stopA, err := a.dir.Watch(job) // a joins the topic too
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	// The first publish may go out before the two meet on the topic:
	// announce until b hears.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for heard := false; !heard; {
		if err := a.dir.Announce(ctx, &noteRecord{Job: job, Note: "pushed"}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			heard = true
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("b never heard a's record on the topic")
		}
	}
	if recs := b.dir.Known(job); len(recs) != 1 || recs[0].Note != "pushed" {
		t.Fatalf("b knows %s, want a:pushed", notesOf(recs))
	}
	exp := b.dir.Known(job)[0].Expires
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	if recs := b.dir.Known(job); len(recs) != 0 {
		t.Fatalf("b still knows %s after expiry", notesOf(recs))
	}
}

// A node that joins a topic learns the records of the peers already on
// it at once, without waiting for them to announce again: it pulls them
// from each peer it meets on the topic, and they pull its own from it.
func TestDirectoryJoinerPullsAtOnce(t *testing.T) {
	ns := nodes(t, 2, records.Config{})
	a, b := ns[0], ns[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const job = "job-3"
	// a announces while b is not on the topic: the publish reaches no one.
	if err := a.dir.Announce(ctx, &noteRecord{Job: job, Note: "early"}); err != nil {
		t.Fatal(err)
	}
	ch, stop, err := b.dir.Watch(job)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for len(b.dir.Known(job)) == 0 {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("b never learnt the record a announced before b joined the topic")
		}
	}
	if recs := b.dir.Known(job); len(recs) != 1 || recs[0].Peer != a.h.ID() || recs[0].Note != "early" {
		t.Fatalf("b knows %s, want a:early", notesOf(recs))
	}
}
