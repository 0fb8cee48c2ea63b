package p2p

import (
	"context"
	"sync/atomic"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
)

// relaySource offers auto-relay candidate relays: the peers in the DHT
// routing table. libp2p wants the source before the host exists, and the DHT
// needs the host, so the DHT is filled in once it is built.
type relaySource struct {
	dht atomic.Pointer[dht.IpfsDHT]
}

// peers is an autorelay.PeerSource. It hands out up to num candidates from a
// snapshot of the routing table through a buffered channel it has already
// closed, so it starts no goroutine.
func (r *relaySource) peers(ctx context.Context, num int) <-chan peer.AddrInfo {
	d := r.dht.Load()
	var ids []peer.ID
	if d != nil && ctx.Err() == nil {
		ids = d.RoutingTable().ListPeers()
	}
	if len(ids) > num {
		ids = ids[:num]
	}
	ch := make(chan peer.AddrInfo, len(ids))
	for _, id := range ids {
		ch <- d.Host().Peerstore().PeerInfo(id)
	}
	close(ch)
	return ch
}
