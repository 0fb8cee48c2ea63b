package jobs

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	lprecord "github.com/libp2p/go-libp2p/core/record"
	mh "github.com/multiformats/go-multihash"
)

// cidOf is the raw CID of s.
func cidOf(t testing.TB, s string) string {
	t.Helper()
	m, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, m).String()
}

// spec is a job file of steps steps with CIDs for its model and data.
func spec(t testing.TB, steps int) []byte {
	return []byte("model = \"" + cidOf(t, "model") + "\"\ndata = \"" + cidOf(t, "data") + "\"\nsteps = " + itoa(steps) + "\naveraging = \"diloco\"\n")
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A job seals and opens with every field, its submitter taken from the
// key and its ID derived.
func TestSealOpen(t *testing.T) {
	key := newKey(t)
	created := time.Now()
	j, err := New(spec(t, 50), created)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := j.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	if j.Submitter == "" || j.ID != IDOf(j.Submitter, created, j.Spec) || len(j.ID) != 27 || j.ID[0] != 'j' {
		t.Fatalf("sealed: submitter %q, id %q", j.Submitter, j.ID)
	}
	got, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != j.ID || got.Submitter != j.Submitter || !bytes.Equal(got.Spec, j.Spec) || !got.Created.Equal(created) || !got.Stopped.IsZero() {
		t.Fatalf("opened %+v from %+v", got, j)
	}
	tj, err := got.Train()
	if err != nil || tj.Steps != 50 || tj.Averaging != "diloco" {
		t.Fatalf("job file: %+v, %v", tj, err)
	}

	// Stopped by its submitter: the same job, stopped.
	got.Stopped = created.Add(time.Hour)
	stopped, err := got.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(stopped)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != j.ID || !s.Stopped.Equal(got.Stopped) {
		t.Fatalf("stopped job: id %s (want %s), stopped %v", s.ID, j.ID, s.Stopped)
	}
	// Sealed by another key: another job.
	other, err := s.Seal(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(other)
	if err != nil {
		t.Fatal(err)
	}
	if o.ID == j.ID || o.Submitter == j.Submitter {
		t.Fatal("a job sealed by another key kept its submitter's ID")
	}
}

// Tampered, truncated or foreign bytes do not open.
func TestOpenRefusesTampered(t *testing.T) {
	j, err := New(spec(t, 10), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := j.Seal(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(raw[:len(raw)-1]); err == nil {
		t.Error("a truncated job opened")
	}
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x10
		if got, err := Open(b); err == nil && (got.ID != j.ID || !bytes.Equal(got.Spec, j.Spec)) {
			t.Fatalf("byte %d flipped: opened a different job", i)
		}
	}
	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 1
	if _, err := Open(bad); err == nil {
		t.Error("a job with a flipped bit in its payload opened")
	}
	if _, err := Open(make([]byte, MaxJobBytes+1)); err == nil {
		t.Error("an oversized job opened")
	}
	// The right domain, but another payload type.
	env, err := lprecord.Seal(&foreign{payload{Spec: string(j.Spec), Created: j.Created.UnixNano()}}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := env.Marshal()
	if _, err := Open(fb); err == nil || !strings.Contains(err.Error(), "payload type") {
		t.Errorf("a job of another payload type: %v", err)
	}
}

type foreign struct{ payload }

func (*foreign) Codec() []byte { return []byte("/other/1") }

// A job file that does not parse, or whose model or data is not a CID, is
// refused naming the key.
func TestNewRefuses(t *testing.T) {
	m, d := cidOf(t, "m"), cidOf(t, "d")
	for _, c := range []struct{ file, want string }{
		{"model = \"stories260K\"\ndata = \"" + d + "\"\n", "model"},
		{"model = \"" + m + "\"\ndata = \"story.txt\"\n", "data"},
		{"model = \"" + m + "\"\ndata = \"" + d + "\"\nmin_peers = 0\n", "min_peers"},
		{"model = \"" + m + "\"\n", "data"},
		{"", "empty"},
		{"model = \"" + m + "\"\ndata = \"" + d + "\"\n#" + strings.Repeat("x", MaxSpecBytes), "bytes"},
	} {
		if _, err := New([]byte(c.file), time.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("job file %.60q: error %v, want one naming %q", c.file, err, c.want)
		}
	}
	if _, err := New(spec(t, 1), time.Unix(0, 0)); err == nil {
		t.Error("a job created in 1970 accepted")
	}
	j, _ := New(spec(t, 1), time.Now())
	j.Stopped = j.Created.Add(-time.Second)
	if _, err := j.Seal(newKey(t)); err == nil {
		t.Error("a job stopped before it was created sealed")
	}
}

// The ID is stable and changes with each of its inputs.
func TestIDOf(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	p1, p2 := peerOf(t, k1), peerOf(t, k2)
	at := time.Unix(1700000000, 123456789)
	s := spec(t, 3)
	id := IDOf(p1, at, s)
	if id != IDOf(p1, time.Unix(0, at.UnixNano()).UTC(), bytes.Clone(s)) {
		t.Fatal("the ID depends on more than its inputs")
	}
	if len(id) != 27 || strings.ToLower(id) != id || strings.ContainsAny(id, "=") {
		t.Fatalf("ID %q", id)
	}
	for name, other := range map[string]string{
		"submitter": IDOf(p2, at, s),
		"created":   IDOf(p1, at.Add(time.Nanosecond), s),
		"spec":      IDOf(p1, at, spec(t, 4)),
	} {
		if other == id {
			t.Errorf("changing the %s left the ID", name)
		}
	}
	// The derivation as documented.
	if got := IDOf("", time.Unix(0, 0), nil); got != "j"+idEncoding.EncodeToString(sha256Prefix(make([]byte, 8))) {
		t.Errorf("IDOf of nothing: %s", got)
	}
}

func sha256Prefix(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:16]
}

func peerOf(t testing.TB, k crypto.PrivKey) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func FuzzOpen(f *testing.F) {
	key := newKey(f)
	j, _ := New(spec(f, 5), time.Unix(1700000000, 1))
	raw, _ := j.Seal(key)
	f.Add(raw)
	j.Stopped = j.Created.Add(time.Minute)
	stopped, _ := j.Seal(key)
	f.Add(stopped)
	f.Add([]byte{})
	f.Add([]byte(`{"spec":"model = 1","created":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p payload
		_ = p.UnmarshalRecord(b)
		got, err := Open(b)
		if err != nil {
			return
		}
		// What opens is a valid job whose ID is derived, and it seals
		// again (with another key) into a job that opens.
		if err := got.check(); err != nil {
			t.Fatalf("opened a job that fails its checks: %v", err)
		}
		if got.ID != IDOf(got.Submitter, got.Created, got.Spec) {
			t.Fatal("opened a job whose ID is not derived")
		}
		if _, err := got.Train(); err != nil {
			t.Fatalf("opened a job whose file does not parse: %v", err)
		}
	})
}
