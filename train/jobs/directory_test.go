package jobs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p"
)

// Short lives, so that a node gone is forgotten within the test.
const (
	testTTL      = 2 * time.Second
	testAnnounce = 300 * time.Millisecond
)

// node is a host on loopback and its directory.
type node struct {
	h    *p2p.Host
	dir  *Directory
	once sync.Once
}

func newNode(t *testing.T) *node {
	t.Helper()
	h, err := p2p.New(p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(), p2p.MemoryDatastore())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := NewDirectory(h.Libp2p(), DirectoryConfig{PubSub: h.PubSub(), Routing: h.Routing(), RecordTTL: testTTL, Announce: testAnnounce})
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	n := &node{h: h, dir: dir}
	t.Cleanup(n.close)
	return n
}

// close takes the node off the network.
func (n *node) close() {
	n.once.Do(func() {
		n.dir.Close()
		n.h.Close()
	})
}

func (n *node) key() crypto.PrivKey { return n.h.Libp2p().Peerstore().PrivKey(n.h.ID()) }

func connect(t *testing.T, nodes ...*node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if err := a.h.Connect(ctx, b.h.AddrInfo()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// eventually waits up to 15 s for ok.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submit makes a job at n, sealed with n's key, and carries it.
func submit(t *testing.T, n *node, steps int) (*Job, []byte) {
	t.Helper()
	j, err := New(spec(t, steps), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := j.Seal(n.key())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.dir.Carry(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	return j, raw
}

// knows says whether n knows job id, stopped or running as asked.
func knows(n *node, id string, stopped bool) bool {
	j, _, ok := n.dir.Job(id)
	return ok && j.Stopped.IsZero() != stopped
}

// heardFrom says whether n holds a valid record of p.
func heardFrom(n *node, p peer.ID) bool {
	for _, r := range n.dir.dir.Known(jobsTopic) {
		if r.Peer == p {
			return true
		}
	}
	return false
}

// A job submitted by A reaches B and C; B carries it too, and once A is
// gone (its record expired), a node started afterwards still learns the
// job from B.
func TestJobOutlivesSubmitter(t *testing.T) {
	a, b := newNode(t), newNode(t)
	connect(t, a, b)
	j, _ := submit(t, a, 10)
	eventually(t, "B learns A's job", func() bool { return knows(b, j.ID, false) })
	got, raw, _ := b.dir.Job(j.ID)
	if got.Submitter != a.h.ID() || got.Created.UnixNano() != j.Created.UnixNano() {
		t.Fatalf("B heard %+v", got)
	}
	if _, err := b.dir.Carry(context.Background(), raw); err != nil {
		t.Fatal(err)
	}

	a.close()
	eventually(t, "A's record expires at B", func() bool { return !heardFrom(b, a.h.ID()) })
	if !knows(b, j.ID, false) {
		t.Fatal("B forgot the job it carries")
	}

	c := newNode(t)
	connect(t, b, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.dir.Lookup(ctx); err != nil {
		t.Fatal(err)
	}
	jobs := c.dir.Jobs()
	if len(jobs) != 1 || jobs[0].ID != j.ID || jobs[0].Submitter != a.h.ID() {
		t.Fatalf("C knows %+v, want A's job %s", jobs, j.ID)
	}
	tj, err := jobs[0].Train()
	if err != nil || tj.Steps != 10 {
		t.Fatalf("C's job file: %+v, %v", tj, err)
	}
}

// The submitter's stop reaches the others and replaces the running
// version, also where another node carries the job; a stop sealed by
// another key is another job and stops nothing.
func TestStopSpreads(t *testing.T) {
	a, b, c := newNode(t), newNode(t), newNode(t)
	connect(t, a, b, c)
	j, _ := submit(t, a, 20)
	eventually(t, "B and C learn A's job", func() bool { return knows(b, j.ID, false) && knows(c, j.ID, false) })
	_, raw, _ := b.dir.Job(j.ID)
	if _, err := b.dir.Carry(context.Background(), raw); err != nil {
		t.Fatal(err)
	}

	// B seals a stopped copy with its own key: another job, B's.
	forged, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	forged.Stopped = time.Now()
	fraw, err := forged.Seal(b.key())
	if err != nil {
		t.Fatal(err)
	}
	if forged.ID == j.ID || forged.Submitter != b.h.ID() {
		t.Fatalf("a stop sealed by B kept A's job's ID")
	}
	if _, err := b.dir.Carry(context.Background(), fraw); err != nil {
		t.Fatal(err)
	}
	eventually(t, "C learns B's job", func() bool { return knows(c, forged.ID, true) })
	if !knows(c, j.ID, false) || !knows(a, j.ID, false) || !knows(b, j.ID, false) {
		t.Fatal("a stop sealed by another key stopped A's job")
	}
	if n := len(c.dir.Jobs()); n != 2 {
		t.Fatalf("C knows %d jobs, want 2", n)
	}
	b.dir.Drop(forged.ID)
	eventually(t, "C forgets B's job", func() bool { return len(c.dir.Jobs()) == 1 })

	// A stops its job.
	stop, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	stop.Stopped = time.Now()
	sraw, err := stop.Seal(a.key())
	if err != nil {
		t.Fatal(err)
	}
	if stop.ID != j.ID {
		t.Fatal("the stopped job has another ID")
	}
	got, err := a.dir.Carry(context.Background(), sraw)
	if err != nil || got.Stopped.IsZero() {
		t.Fatalf("carry the stop: %+v, %v", got, err)
	}
	eventually(t, "the stop reaches B and C", func() bool { return knows(b, j.ID, true) && knows(c, j.ID, true) })
	eventually(t, "B carries the stopped version", func() bool {
		b.dir.mu.Lock()
		defer b.dir.mu.Unlock()
		return !b.dir.carried[j.ID].job.Stopped.IsZero()
	})
	// Carrying the running version again does not undo the stop.
	if got, err := b.dir.Carry(context.Background(), raw); err != nil || got.Stopped.IsZero() {
		t.Fatalf("carry the running version over the stopped: %+v, %v", got, err)
	}

	// With A gone, the stop lives on in B's record.
	a.close()
	eventually(t, "A's record expires at C", func() bool { return !heardFrom(c, a.h.ID()) })
	if !knows(c, j.ID, true) {
		t.Fatal("C lost the stop with A")
	}
	if jobs := c.dir.Jobs(); len(jobs) != 1 || jobs[0].ID != j.ID || jobs[0].Stopped.IsZero() {
		t.Fatalf("C knows %+v", jobs)
	}
}

// A node carries at most MaxCarried jobs; Drop frees room, and Close may
// be called twice.
func TestCarryLimits(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	for i, raw := range sealed(t, MaxCarried+1) {
		_, err := n.dir.Carry(ctx, raw)
		switch {
		case i < MaxCarried && err != nil:
			t.Fatalf("job %d: %v", i, err)
		case i == MaxCarried && err != ErrFull:
			t.Fatalf("job %d of %d: %v, want ErrFull", i+1, MaxCarried, err)
		}
	}
	if got := len(n.dir.Jobs()); got != MaxCarried {
		t.Fatalf("%d jobs known, want %d", got, MaxCarried)
	}
	first := n.dir.Jobs()[0]
	n.dir.Drop(first.ID)
	if _, ok := n.dir.Carry(ctx, sealed(t, 1)[0]); ok != nil {
		t.Fatalf("carry after a drop: %v", ok)
	}
	if _, err := n.dir.Carry(ctx, []byte("not a job")); err == nil {
		t.Error("carried bytes that are not a job")
	}
	if err := n.dir.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.dir.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.dir.Carry(ctx, sealed(t, 1)[0]); err == nil {
		t.Error("a closed directory carried a job")
	}
}
