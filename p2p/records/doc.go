// Package records keeps signed, expiring, sequence-numbered records of
// peers, grouped by topic, and spreads them over the network: the
// machinery under swarm's server records (one topic per model) and
// train's job and peer records.
//
// # A record
//
// A kind of record is a Go struct whose pointer implements Record: it
// encodes its own payload (libp2p's lprecord.Record: a domain, a payload
// type, MarshalRecord, and UnmarshalRecord, which decodes and checks what
// arrives), names its Topic, says whether it is Leaving, and exposes the
// fields the machinery reads and fills in as a Stamp (signer, Seq,
// Expires, addresses). The payload keeps its own layout, so the bytes on
// the wire are the kind's alone. A Kind holds the limits (MaxBytes,
// MaxTTL, MaxAddrs) and the two things only the payload knows: Check
// before sealing, and Leave, which turns a peer's last record into its
// withdrawal.
//
// Kind.Seal signs a record into a libp2p signed envelope (the signature
// covers the domain, the payload type and the payload); Kind.Open checks
// one and sets its Peer from the signing key, never from the payload, so a
// record relayed by anyone is still its signer's word. Kind.Valid says
// whether a record may be used now: before its expiry, which may not lie
// more than MaxTTL and a minute ahead.
//
// # A directory
//
// A Directory holds, per topic, the newest valid record of each peer. It
// gathers them three ways, and checks every one the same way on arrival:
//
//   - the DHT: a peer with a record provides ProviderKey(namespace, topic)
//     (at most every ProvideInterval); a lookup asks for the providers;
//   - pubsub: records are published on the topic namespace+topic as they
//     change, and a message is accepted only if it holds a valid record of
//     that topic signed by the message's author;
//   - the pull protocol (Config.Protocol): a node asks a peer for the
//     records it holds for a topic. The request is the topic as a string
//     (at most MaxTopic bytes); the answer a uvarint count (at most
//     MaxRecordsPerAnswer) and that many length-prefixed sealed records,
//     the peer's own first. One answer per stream.
//
// A record replaces the one held for its peer only with a higher Seq (a
// directory stamps its own with the Unix time in nanoseconds, strictly
// increasing); a leaving record removes its peer; expired records are
// dropped when read. A lookup asks the DHT's providers, the peers already
// known, the pubsub topic's peers and the node's neighbours (at most 32,
// 8 at a time); a peer that cannot be reached, or whose answer lacks its
// own record, is forgotten until it announces again.
//
// The caller's duties: Announce again well before RecordTTL ends (a third
// of it is the habit), Withdraw before leaving a topic, and Close the
// directory, which stops its handler, subscriptions and goroutines (it
// does not withdraw).
//
// docs/protocol.md specifies the server records built on this.
package records
