package p2p

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Traffic counts the bytes a host's streams carry, by protocol: the
// block streams, bitswap, inference sessions, the DHT, pubsub... It keeps
// nothing by peer, so it grows with the protocols the host speaks only.
// Bytes read before a stream's protocol is agreed count under "".
type Traffic struct {
	by sync.Map // protocol.ID → *protoBytes
}

type protoBytes struct{ in, out atomic.Uint64 }

var _ metrics.Reporter = (*Traffic)(nil)

func (t *Traffic) counts(p protocol.ID) *protoBytes {
	if v, ok := t.by.Load(p); ok {
		return v.(*protoBytes)
	}
	v, _ := t.by.LoadOrStore(p, &protoBytes{})
	return v.(*protoBytes)
}

// ProtocolBytes are the bytes one protocol's streams carried.
type ProtocolBytes struct {
	Protocol protocol.ID
	In, Out  uint64
}

// ByProtocol returns the bytes of every protocol that carried any, in
// no particular order.
func (t *Traffic) ByProtocol() []ProtocolBytes {
	var out []ProtocolBytes
	t.by.Range(func(k, v any) bool {
		c := v.(*protoBytes)
		out = append(out, ProtocolBytes{Protocol: k.(protocol.ID), In: c.in.Load(), Out: c.out.Load()})
		return true
	})
	return out
}

// The metrics.Reporter that libp2p calls on every stream read and write.

func (t *Traffic) LogSentMessage(int64) {}
func (t *Traffic) LogRecvMessage(int64) {}

func (t *Traffic) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	t.counts(p).out.Add(uint64(n))
}

func (t *Traffic) LogRecvMessageStream(n int64, p protocol.ID, _ peer.ID) {
	t.counts(p).in.Add(uint64(n))
}

func (t *Traffic) GetBandwidthForPeer(peer.ID) metrics.Stats { return metrics.Stats{} }

func (t *Traffic) GetBandwidthForProtocol(p protocol.ID) metrics.Stats {
	v, ok := t.by.Load(p)
	if !ok {
		return metrics.Stats{}
	}
	c := v.(*protoBytes)
	return metrics.Stats{TotalIn: int64(c.in.Load()), TotalOut: int64(c.out.Load())}
}

func (t *Traffic) GetBandwidthTotals() metrics.Stats {
	var s metrics.Stats
	for _, b := range t.ByProtocol() {
		s.TotalIn += int64(b.In)
		s.TotalOut += int64(b.Out)
	}
	return s
}

func (t *Traffic) GetBandwidthByPeer() map[peer.ID]metrics.Stats { return nil }

func (t *Traffic) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	m := map[protocol.ID]metrics.Stats{}
	for _, b := range t.ByProtocol() {
		m[b.Protocol] = metrics.Stats{TotalIn: int64(b.In), TotalOut: int64(b.Out)}
	}
	return m
}

func (t *Traffic) Reset() { t.by.Clear() }

func (t *Traffic) TrimIdle(time.Time) {}
