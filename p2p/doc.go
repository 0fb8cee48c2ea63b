// Package p2p is a Mycel node's network endpoint: a libp2p host set up the
// way a volunteer on the open internet needs it, and the Kademlia DHT that
// lets nodes find each other and each other's content. It knows nothing of
// models; packages above it (the block exchange in p2p/blocks, inference,
// training) register their protocols on the host it builds.
//
// # The host
//
// New assembles, from functional options:
//
//   - transports: TCP and QUIC (v1), on DefaultPort on all interfaces unless
//     ListenAddrs or LoopbackOnly say otherwise; NoQUIC leaves TCP only;
//   - security: TLS 1.3 first, then Noise. Both ends pick the first
//     protocol they share, so two Mycel nodes use TLS, whose AES-GCM is
//     about 1.7x faster than Noise's ChaCha20 for bulk weight transfer;
//   - identity: a persistent Ed25519 key in DataDir/identity.key, made on
//     first start with mode 0600 and reused after. A file that does not parse
//     is ErrCorruptIdentity, never replaced, since a new key is a new peer ID;
//   - caps: the libp2p resource manager, with its default limits scaled to
//     the memory cap and the system connection limit set from Limits, and a
//     connection manager trimming between the ConnManager water marks;
//   - NAT traversal: AutoNAT (v1 service and v2), UPnP/NAT-PMP port mapping,
//     circuit relay v2 (client with auto-relay over DHT peers, and a relay
//     service that only runs while the node is publicly reachable), and
//     hole punching (DCUtR) to upgrade relayed connections to direct ones;
//   - discovery: the DHT, bootstrap peers, and mDNS on the local network.
//
// Every piece can be turned off (NoQUIC, NoNAT, NoRelay, NoMDNS) and
// WithHost takes an existing host instead, such as one from mocknet, so tests
// run many nodes in one process without touching the real network.
//
// # Options
//
// An Option is a function that may fail. Options reject bad values and
// conflicts with options seen before them (two identities, ListenAddrs with
// LoopbackOnly, WithHost with any option that shapes a built host); after all
// of them, defaults fill only what is still unset, and the combination is
// checked once more (the high water mark must stay below the connection cap).
//
// # The DHT
//
// The DHT is go-libp2p-kad-dht under ProtocolPrefix, which gives
// DHTProtocol (/mycel/kad/1.0.0) and keeps Mycel's routing table free of
// public IPFS nodes. In DHTModeAuto a node answers queries only while
// AutoNAT finds it publicly reachable: a node behind NAT would only waste
// others' queries. ForceDHTMode fixes the mode (tests use DHTModeServer).
// Records live in a pebble datastore in DataDir/dht, or in memory.
//
// A fresh node cannot provide or search until its routing table holds a
// peer: call Bootstrap, then WaitRoutable if the next step needs the DHT.
//
// # Lifecycle
//
// New starts only what Close stops: the host's listeners and services, the
// DHT's maintenance loops, mDNS and the dials mDNS triggers (counted in a
// WaitGroup). New dials nobody and takes no context: a Host lives until
// Close, which stops mDNS, the DHT, the host (unless it was given with
// WithHost) and the datastore, in that order, and may be called any number
// of times.
//
// Protocol IDs are in protocols.go and specified in docs/protocol.md.
package p2p
