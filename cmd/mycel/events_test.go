package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/swarm"
)

func testPeer(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRouteLines: each route event is one line, every peer in it in the
// short form, the error's whole IDs included.
func TestRouteLines(t *testing.T) {
	gone, spare, other := testPeer(t), testPeer(t), testPeer(t)
	short := func(p peer.ID) string { return p.String()[len(p.String())-6:] }
	cause := fmt.Errorf("swarm: hop [2,4) at %s, session 1, step 16: %w: stream reset", gone, swarm.ErrLeft)
	for _, tc := range []struct {
		ev   swarm.Event
		want string
	}{
		{swarm.Event{Kind: swarm.EventRoute, Hop: swarm.Hop{Peer: spare, Span: swarm.Span{First: 0, Last: 2}}},
			"route: " + short(spare) + " layers 0:2"},
		{swarm.Event{Kind: swarm.EventLeft, Hop: swarm.Hop{Peer: spare, Span: swarm.Span{First: 2, Last: 4}}, Replaced: gone, Replayed: 16, Err: cause,
			Chain: []swarm.Hop{{Peer: spare, Span: swarm.Span{First: 2, Last: 4}}}},
			"server " + short(gone) + " left; re-routing layers 2:4 to " + short(spare) + " (16 positions replayed)"},
		{swarm.Event{Kind: swarm.EventLeft, Hop: swarm.Hop{Span: swarm.Span{First: 1, Last: 3}}, Replaced: gone, Replayed: 16, Err: cause,
			Chain: []swarm.Hop{{Peer: spare, Span: swarm.Span{First: 1, Last: 2}}, {Peer: other, Span: swarm.Span{First: 2, Last: 3}}}},
			"server " + short(gone) + " left; re-routing layers 1:3 to " + short(spare) + " (1:2), " + short(other) + " (2:3) (16 positions replayed)"},
		{swarm.Event{Kind: swarm.EventLeft, Hop: swarm.Hop{Span: swarm.Span{First: 2, Last: 4}}, Replaced: gone, Other: other, Err: cause},
			"server " + short(gone) + " left; it was checking layers 2:4 of " + short(other) + ", another is sought"},
		{swarm.Event{Kind: swarm.EventBanned, Hop: swarm.Hop{Peer: gone, Span: swarm.Span{First: 2, Last: 4}},
			Err: fmt.Errorf("%w: hop [2,4): %s disagrees with %s", errors.New("results differ"), gone, other)},
			"banned: " + short(gone) + " layers 2:4: results differ: hop [2,4): " + short(gone) + " disagrees with " + short(other)},
	} {
		got := routeLine(*node.NewRouteInfo(tc.ev))
		if got != tc.want {
			t.Errorf("%s event:\n got %q\nwant %q", tc.ev.Kind, got, tc.want)
		}
		if strings.Contains(got, "\n") {
			t.Errorf("%q is more than one line", got)
		}
	}
}

// TestServingLine: a span set with --layers stays, and mycel node says
// so; only a span the node chose moves.
func TestServingLine(t *testing.T) {
	fixed := servingLine(0, 3, "stories15M", 120, true)
	chosen := servingLine(2, 4, "stories15M", 120, false)
	if !strings.HasPrefix(fixed, "serving layers 0:3 of stories15M (120 tok/s measured)") || !strings.Contains(fixed, "stays") || strings.Contains(fixed, "moves") {
		t.Errorf("fixed span: %q", fixed)
	}
	if !strings.HasPrefix(chosen, "serving layers 2:4 of stories15M") || !strings.Contains(chosen, "moves when the swarm needs it elsewhere") || strings.Contains(chosen, "stays") {
		t.Errorf("chosen span: %q", chosen)
	}
}
