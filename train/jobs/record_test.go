package jobs

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// sealed returns n jobs sealed by one key.
func sealed(t testing.TB, n int) [][]byte {
	t.Helper()
	key := newKey(t)
	var out [][]byte
	for i := range n {
		j, err := New(spec(t, i+1), time.Unix(1700000000, int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := j.Seal(key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// A node record signs, travels and opens with its jobs, its signer taken
// from the key.
func TestNodeRecordRoundTrip(t *testing.T) {
	key := newKey(t)
	jobs := sealed(t, 3)
	r := nodeRecord{Peer: "someone else", Scope: jobsTopic, Jobs: jobs, Seq: 5, Expires: time.Now().Add(time.Minute).Truncate(time.Second)}
	raw, err := nodes.Seal(&r, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := nodes.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != peerOf(t, key) || got.Seq != 5 || !got.Expires.Equal(r.Expires) || len(got.Jobs) != 3 || len(got.opened) != 3 {
		t.Fatalf("opened %+v", got)
	}
	for i, j := range got.opened {
		if !bytes.Equal(got.Jobs[i], jobs[i]) || j.ID == "" {
			t.Errorf("job %d: %+v", i, j)
		}
	}
	raw[len(raw)/2] ^= 1
	if _, err := nodes.Open(raw); err == nil {
		t.Error("a record with a flipped bit opened")
	}
}

// A record is checked whole: one job that does not open, a job twice,
// too many jobs or another topic refuse it.
func TestNodeRecordChecks(t *testing.T) {
	jobs := sealed(t, MaxCarried+1)
	tampered := bytes.Clone(jobs[1])
	tampered[len(tampered)/2] ^= 1
	for name, r := range map[string]nodeRecord{
		"tampered job":   {Scope: jobsTopic, Jobs: [][]byte{jobs[0], tampered}},
		"job twice":      {Scope: jobsTopic, Jobs: [][]byte{jobs[0], jobs[0]}},
		"too many":       {Scope: jobsTopic, Jobs: jobs},
		"another topic":  {Scope: "some", Jobs: jobs[:1]},
		"leaving, jobs":  {Scope: jobsTopic, Jobs: jobs[:1], Left: true},
		"not a job":      {Scope: jobsTopic, Jobs: [][]byte{[]byte("job")}},
		"an empty entry": {Scope: jobsTopic, Jobs: [][]byte{{}}},
	} {
		if err := r.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := nodes.Seal(&r, newKey(t)); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
	good := nodeRecord{Scope: jobsTopic, Jobs: jobs[:MaxCarried]}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	var r nodeRecord
	if err := r.UnmarshalRecord([]byte(`{"topic":"all","seq":1,"expires":0,"addrs":[],"extra":1}`)); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Errorf("a payload with an unknown field: %v", err)
	}
}

func FuzzNodeRecord(f *testing.F) {
	key := newKey(f)
	r := nodeRecord{Scope: jobsTopic, Jobs: sealed(f, 2), Expires: time.Now().Add(time.Minute)}
	raw, _ := nodes.Seal(&r, key)
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte(`{"topic":"all","jobs":["AAAA"],"seq":1,"expires":1,"addrs":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r nodeRecord
		if err := r.UnmarshalRecord(b); err == nil {
			if len(r.opened) != len(r.Jobs) {
				t.Fatalf("decoded %d jobs, opened %d", len(r.Jobs), len(r.opened))
			}
			if err := r.check(); err != nil {
				t.Fatalf("decoded a payload that fails its checks: %v", err)
			}
		}
		got, err := nodes.Open(b)
		if err != nil {
			return
		}
		if err := got.check(); err != nil {
			t.Fatalf("opened a record that fails its checks: %v", err)
		}
	})
}
