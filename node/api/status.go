package api

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Reach is how other peers reach the node, as libp2p's AutoNAT and
// identify see it (p2p.Reach).
type Reach struct {
	// AutoNAT says whether the node asks its peers to dial it back
	// (--no-nat turns it off; Reachability then stays "unknown").
	AutoNAT bool `json:"autonat"`
	// Reachability is "public" (peers dial the node directly), "private"
	// (behind a NAT or firewall: peers reach it through a relay or a
	// punched hole) or "unknown" (not decided yet).
	Reachability string `json:"reachability"`
	// RelayAddrs are the addresses the node announces through relays.
	RelayAddrs []string `json:"relay_addrs"`
	// NATTCP and NATUDP are the NAT in front of the node, per transport:
	// "unknown", "endpoint-independent" (hole punching can reach it) or
	// "endpoint-dependent" (only relays can).
	NATTCP string `json:"nat_tcp"`
	NATUDP string `json:"nat_udp"`
	// Reachable and Unreachable are the public addresses AutoNAT v2
	// confirmed peers can and cannot dial.
	Reachable   []string `json:"reachable"`
	Unreachable []string `json:"unreachable"`
}

// Serving is a span of a model the node serves to the swarm.
type Serving struct {
	Model string `json:"model"` // CID
	Name  string `json:"name,omitempty"`
	// First and Last are the layers served, [First, Last) of Layers.
	First  int `json:"first"`
	Last   int `json:"last"`
	Layers int `json:"layers"`
	// Throughput is the span's measured decode rate, tokens/s.
	Throughput float64 `json:"throughput"`
	// Sessions are the inference sessions it holds open; ReservedBytes
	// the KV cache they reserved of MemoryBudget.
	Sessions      int   `json:"sessions"`
	ReservedBytes int64 `json:"reserved_bytes"`
	MemoryBudget  int64 `json:"memory_budget"`
	// Steps are the steps its server ran since it took the span.
	Steps int64 `json:"steps"`
}

// Counters are running totals of the node's work since it started, as
// /metrics counts them: a reader's rates are their differences over time.
type Counters struct {
	// SwarmTokens are the positions the node's served layers computed for
	// the swarm (mycel_swarm_tokens_total); SwarmPasses the forward
	// passes that took.
	SwarmTokens int64 `json:"swarm_tokens"`
	SwarmPasses int64 `json:"swarm_passes"`
	// Sessions opened, open now and refused for lack of memory.
	Sessions        int64 `json:"sessions"`
	SessionsOpen    int64 `json:"sessions_open"`
	SessionsRefused int64 `json:"sessions_refused"`
	// PromptTokens and CompletionTokens are those of the completions
	// the node's APIs answered (mycel_tokens_total).
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// BytesReceived and BytesSent are what the node's libp2p streams
	// carried, every protocol's (mycel_stream_bytes_total); Protocols
	// the same by protocol, most first.
	BytesReceived int64           `json:"bytes_received"`
	BytesSent     int64           `json:"bytes_sent"`
	Protocols     []ProtocolBytes `json:"protocols"`
	// BlockBytesReceived and BlockBytesSent are the bytes of the blocks
	// the block exchange moved (mycel_block_bytes_total).
	BlockBytesReceived int64 `json:"block_bytes_received"`
	BlockBytesSent     int64 `json:"block_bytes_sent"`
}

// ProtocolBytes are the bytes one protocol's streams carried.
type ProtocolBytes struct {
	Protocol string `json:"protocol"`
	Received int64  `json:"received"`
	Sent     int64  `json:"sent"`
}

// PageURL is the address of the node's status page. Where the node wants
// its token (it refuses a status request without one), the address
// carries c's token in its fragment, #token=..., which the browser keeps
// from the network and the page sends with its calls.
func (c *Client) PageURL(ctx context.Context) (string, error) {
	page := c.base + "/"
	_, err := c.WithToken("").Status(ctx)
	switch {
	case err == nil:
		return page, nil
	case !errors.Is(err, ErrUnauthorized):
		return "", err
	case c.token == "":
		return "", fmt.Errorf("the node at %s wants its API token, and there is none here: give it in $%s, or run this on the node's machine", c.base, EnvToken)
	}
	if _, err := c.Status(ctx); err != nil {
		return "", err
	}
	return page + "#token=" + url.QueryEscape(c.token), nil
}
