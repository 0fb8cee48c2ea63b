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
//     ListenAddrs or LoopbackOnly say otherwise; NoQUIC leaves TCP only.
//     libp2p's listeners share ports (SO_REUSEPORT), so New first checks
//     that no other program holds them, and claims them among the nodes of
//     the machine (a lock on a file per port in the temporary directory,
//     so that nodes started at the same moment do not all take the same
//     port): the default addresses then move to ports the system picks,
//     and a listen address given outright is refused;
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
//   - discovery: the DHT, bootstrap peers, and mDNS on the local network;
//   - a private swarm (SwarmKey): libp2p's private network layer keyed by a
//     32-byte key shared by its nodes (ReadSwarmKey reads the key file), so
//     they connect only to each other; TCP only, since QUIC cannot carry it.
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
// A node runs two Kademlia DHTs on one host (type DHT), both
// go-libp2p-kad-dht under ProtocolPrefix, which keeps them apart from the
// public IPFS (Amino) network:
//
//   - the WAN DHT (DHTProtocol, /mycel/kad/1.0.0) takes only peers with a
//     public address into its routing table and hands out only public
//     addresses. In DHTModeAuto it answers queries only while AutoNAT finds
//     the node publicly reachable: a node behind NAT would only waste
//     others' queries, so the public DHT stays free of unreachable servers;
//   - the LAN DHT (LANDHTProtocol, /mycel/lan/kad/1.0.0) takes only peers
//     reached over a private or loopback address and, in DHTModeAuto,
//     always answers their queries. A home network, a lab or one machine
//     forms a working DHT with no flags even when no node is reachable from
//     the internet. Unlike kad-dht's own LAN default it keeps loopback
//     addresses, so nodes on one machine find each other too.
//
// Searches (providers, peers, values) ask both DHTs at once and merge the
// answers; Provide announces on each DHT whose routing table holds a peer.
// ForceDHTMode fixes the mode of both: DHTModeServer answers on both,
// DHTModeClient on neither (such a node asks, and stays out of others'
// routing tables). Records live in a pebble datastore in DataDir/dht, or in
// memory.
//
// A fresh node cannot provide or search until a routing table holds a
// peer: Bootstrap connects to the bootstrap peers and waits (briefly) for
// one to enter a routing table before it refreshes them; WaitRoutable waits
// for the first peer if the next step needs the DHT.
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
//
// # Below the protocols
//
// Two subpackages hold what every protocol above shares: p2p/wire, the
// bounded reads (uvarints and frames whose lengths are checked before
// anything is allocated), a frame decoder, tensors as a header and raw
// little-endian values, and a stream with deadlines; and p2p/records,
// signed expiring records of peers grouped by topic and the directory
// that spreads them over the DHT, pubsub and a pull protocol (swarm's
// server records, train's job and peer records).
package p2p
