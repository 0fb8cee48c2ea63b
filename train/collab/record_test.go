package collab

import (
	"crypto/rand"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

const someState = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// A member record signs, travels and opens with every field, its signer
// taken from the key.
func TestMemberRecordRoundTrip(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	start := []peer.ID{id, otherPeer(t)}
	slices.Sort(start)
	m := Member{Peer: "someone else", Job: "job-1", Round: 7, Attempt: 2, State: someState, Start: start,
		Checkpoint: "bafkqaaa", CheckpointRound: 6, Rate: 1234.5, Seq: 9, Expires: time.Now().Add(time.Minute).Truncate(time.Second),
		Verdicts: []Verdict{{Round: 7, Attempt: 2, Peer: start[0]}, {Round: 7, Attempt: 2, Check: 1, Peer: start[1], Wrong: "recomputed: far off"}}}
	raw, err := members.Seal(&m, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := members.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != id || got.Job != m.Job || got.Round != 7 || got.Attempt != 2 || got.State != someState ||
		!slices.Equal(got.Start, start) || got.Checkpoint != m.Checkpoint || got.CheckpointRound != 6 || got.Rate != m.Rate || got.Seq != 9 || !got.Expires.Equal(m.Expires) ||
		!slices.Equal(got.Verdicts, m.Verdicts) {
		t.Fatalf("opened %+v from %+v", got, m)
	}
	if _, err := members.Open(raw[:len(raw)-1]); err == nil {
		t.Error("a truncated record opened")
	}
	raw[len(raw)/2] ^= 1
	if _, err := members.Open(raw); err == nil {
		t.Error("a record with a flipped bit opened")
	}
}

// A member record from the network is checked field by field.
func TestMemberRecordChecks(t *testing.T) {
	a, b := otherPeer(t), otherPeer(t)
	good := Member{Job: "j", Round: 3, State: someState, Start: []peer.ID{min(a, b), max(a, b)}}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]Member{
		"no job":          {},
		"long job":        {Job: strings.Repeat("j", 200)},
		"negative round":  {Job: "j", Round: -1},
		"short state":     {Job: "j", State: "0011"},
		"bad checkpoint":  {Job: "j", Checkpoint: "not-a-cid"},
		"NaN rate":        {Job: "j", Rate: math.NaN()},
		"huge attempt":    {Job: "j", Attempt: maxRound + 1},
		"negative join":   {Job: "j", Joining: -2},
		"start, no state": {Job: "j", Start: []peer.ID{a}},
		"start unsorted":  {Job: "j", State: someState, Start: []peer.ID{max(a, b), min(a, b)}},
		"start twice":     {Job: "j", State: someState, Start: []peer.ID{a, a}},
		"start empty id":  {Job: "j", State: someState, Start: []peer.ID{""}},
		"start too large": {Job: "j", State: someState, Start: make([]peer.ID, MaxRoundMembers+1)},
		"loss NaN":        {Job: "j", Loss: [][2]float64{{1, math.NaN()}}},
		"loss back":       {Job: "j", Loss: [][2]float64{{2, 1}, {1, 1}}},
		"loss half step":  {Job: "j", Loss: [][2]float64{{1.5, 1}}},
		"loss too long":   {Job: "j", Loss: make([][2]float64, MaxLossPoints+1)},
		"verdicts":        {Job: "j", Verdicts: make([]Verdict, maxVerdicts+1)},
		"verdict no peer": {Job: "j", Verdicts: []Verdict{{Round: 1}}},
		"verdict check":   {Job: "j", Verdicts: []Verdict{{Round: 1, Peer: a, Check: 2}}},
		"verdict reason":  {Job: "j", Verdicts: []Verdict{{Round: 1, Peer: a, Wrong: strings.Repeat("x", maxVerdictReason+1)}}},
		"verdict round":   {Job: "j", Verdicts: []Verdict{{Round: -1, Peer: a}}},
	} {
		if err := m.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var m Member
	if err := m.UnmarshalRecord([]byte(`{"job":"j","seq":1,"expires":0,"addrs":[],"extra":1}`)); err == nil {
		t.Error("a payload with an unknown field decoded")
	}
}

func otherPeer(t *testing.T) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Opening never panics, and what opens passes the record's checks.
func FuzzMemberRecord(f *testing.F) {
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	m := Member{Job: "j", Round: 1, State: someState, Expires: time.Now().Add(time.Minute)}
	raw, _ := members.Seal(&m, key)
	f.Add(raw)
	m.Inner, m.InnerRound, m.InnerAttempt = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", 1, 2
	raw, _ = members.Seal(&m, key)
	f.Add(raw)
	f.Add([]byte(`{"job":"j","round":1,"inner":"x","inner_round":-1,"seq":1,"expires":1,"addrs":null}`))
	f.Add([]byte(`{"job":"j","round":1,"verdicts":[{"round":1,"check":1,"peer":"12D3KooWA","wrong":"x"}],"seq":1,"expires":1,"addrs":null}`))
	f.Add([]byte{})
	f.Add([]byte(`{"job":"j","round":1,"seq":1,"expires":1,"addrs":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Member
		if err := m.UnmarshalRecord(b); err == nil {
			if err := m.check(); err != nil {
				t.Fatalf("decoded a payload that fails its checks: %v", err)
			}
		}
		got, err := members.Open(b)
		if err != nil {
			return
		}
		if err := got.check(); err != nil {
			t.Fatalf("opened a record that fails its checks: %v", err)
		}
	})
}

// The loss curve a record carries stays within MaxLossPoints, keeps the
// first and the latest point, and its steps rise.
func TestThinLoss(t *testing.T) {
	var pts [][2]float64
	for step := 1; step <= 1000; step++ {
		pts = thin(append(pts, [2]float64{float64(step), 1 / float64(step)}), MaxLossPoints)
		if len(pts) > MaxLossPoints || pts[0][0] != 1 || pts[len(pts)-1][0] != float64(step) {
			t.Fatalf("after step %d: %d points from %v to %v", step, len(pts), pts[0], pts[len(pts)-1])
		}
	}
	m := Member{Job: "j", Loss: pts}
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	if len(pts) < MaxLossPoints/2 {
		t.Errorf("%d points kept of at most %d", len(pts), MaxLossPoints)
	}
}
