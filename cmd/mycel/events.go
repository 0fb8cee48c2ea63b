package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mycel-net/mycel/node/api"
)

// shortPeerLen is how many characters of a peer ID the CLI shows.
const shortPeerLen = 6

// shortPeer is how every line of the CLI shows a peer: the last
// characters of its ID (the first ones are the same for every key of a
// type). JSON output keeps whole IDs.
func shortPeer(id string) string {
	if len(id) <= shortPeerLen {
		return id
	}
	return id[len(id)-shortPeerLen:]
}

// layerRange is how the CLI shows a span of layers, as --layers takes it.
func layerRange(first, last int) string { return fmt.Sprintf("%d:%d", first, last) }

// routeLine is the one line the CLI prints for a route event.
func routeLine(r api.RouteInfo) string {
	p, layers := shortPeer(r.Peer), layerRange(r.First, r.Last)
	switch r.Kind {
	case "route":
		return fmt.Sprintf("route: %s layers %s", p, layers)
	case "left":
		switch len(r.Chain) {
		case 0:
			return fmt.Sprintf("server %s left; it was checking layers %s of %s, another is sought", shortPeer(r.Replaced), layers, shortPeer(r.Other))
		case 1:
			p = shortPeer(r.Chain[0].Peer)
		default:
			parts := make([]string, len(r.Chain))
			for i, h := range r.Chain {
				parts[i] = fmt.Sprintf("%s (%s)", shortPeer(h.Peer), layerRange(h.First, h.Last))
			}
			p = strings.Join(parts, ", ")
		}
		return fmt.Sprintf("server %s left; re-routing layers %s to %s (%d positions replayed)", shortPeer(r.Replaced), layers, p, r.Replayed)
	case "re-route":
		return fmt.Sprintf("re-route: %s layers %s replaces %s (%d positions replayed)", p, layers, shortPeer(r.Replaced), r.Replayed)
	case "shadow":
		return fmt.Sprintf("shadow: %s layers %s checks %s (%d positions replayed)", p, layers, shortPeer(r.Other), r.Replayed)
	}
	return fmt.Sprintf("%s: %s layers %s: %s", r.Kind, p, layers, shortPeersIn(r.Error))
}

// peerIDs matches the peer IDs in a text: Ed25519 keys' (12D3KooW...)
// and RSA or other hashed keys' (Qm...), in base58.
var peerIDs = regexp.MustCompile(`\b(?:12D3KooW|Qm)[1-9A-HJ-NP-Za-km-z]{44}\b`)

// shortPeersIn puts every peer ID in s (an error from the swarm names
// peers by their whole IDs) in the short form.
func shortPeersIn(s string) string { return peerIDs.ReplaceAllStringFunc(s, shortPeer) }

// endNote is the summary's note on a generation that ended at the
// model's end of text.
func endNote(stoppedAtEOS bool) string {
	if stoppedAtEOS {
		return ", stopped at end of sequence"
	}
	return ""
}

// servingLine is what mycel node --serve says of the span it serves: one
// given with --layers stays; one it chose moves when the swarm needs it
// elsewhere.
func servingLine(first, last int, model string, tokPerSec float64, fixed bool) string {
	s := fmt.Sprintf("serving layers %s of %s (%.0f tok/s measured)", layerRange(first, last), model, tokPerSec)
	if fixed {
		return s + "; the span stays as --layers set it"
	}
	return s + ", chosen from what the swarm serves; the span moves when the swarm needs it elsewhere"
}
