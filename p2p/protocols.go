package p2p

import "github.com/libp2p/go-libp2p/core/protocol"

// Protocol IDs spoken by Mycel nodes. Every ID is versioned; a change to a
// wire format gets a new version, and docs/protocol.md specifies each one.
const (
	// ProtocolPrefix namespaces every Mycel protocol. It keeps Mycel's DHT
	// and block exchange apart from the public IPFS (Amino) network.
	ProtocolPrefix protocol.ID = "/mycel"

	// DHTProtocol is the Kademlia DHT used for peer routing and provider
	// records (go-libp2p-kad-dht under ProtocolPrefix).
	DHTProtocol protocol.ID = ProtocolPrefix + "/kad/1.0.0"

	// BitswapProtocol is the block exchange: bitswap 1.2.0 under
	// ProtocolPrefix. It is the only bitswap version Mycel speaks.
	BitswapProtocol protocol.ID = ProtocolPrefix + bitswapSuffix

	// BlocksProtocol streams blocks between peers: a client keeps a
	// stream per peer and sends requests on it, HAVE (which of these CIDs
	// do you have?) and GET (send me these blocks), each answered in
	// order; many blocks travel on one stream, without a message per
	// block (package p2p/blocks). Bitswap stays for discovery and as the
	// fallback.
	BlocksProtocol protocol.ID = ProtocolPrefix + "/blocks/1"

	// InferProtocol is the inference session with a server for a span of
	// a model's layers (package swarm): hidden states in, hidden states
	// out, the KV cache kept on the server per session.
	InferProtocol protocol.ID = ProtocolPrefix + "/infer/1"

	// ExpertsProtocol asks a server holding some routed experts of a
	// layer to run them on rows another server routed (package swarm):
	// rows and their experts' weights in, one weighted sum per row out,
	// no state kept between requests.
	ExpertsProtocol protocol.ID = ProtocolPrefix + "/experts/1"

	// ServersProtocol asks a peer for the signed server records it holds
	// for a model (its own and those it heard): the pull side of server
	// discovery, next to the model's pubsub topic (package swarm).
	ServersProtocol protocol.ID = ProtocolPrefix + "/servers/1"

	// AllReduceProtocol averages a vector among the members of a training
	// group, every member ending with bitwise the same weighted average
	// (package train/allreduce): contributions to each part's reducer,
	// averaged parts back, recovery of a part whose reducer failed.
	AllReduceProtocol protocol.ID = ProtocolPrefix + "/allreduce/2"

	// MembersProtocol asks a peer for the signed member records it holds
	// for a training job: which peers train it, at which round, with
	// which state and checkpoint (package train/collab), the pull side
	// of the job's pubsub topic.
	MembersProtocol protocol.ID = ProtocolPrefix + "/train/members/1"

	// JobsProtocol asks a peer for the signed job records it holds: each
	// node's list of the sealed fine-tuning jobs it carries (package
	// train/jobs), the pull side of the jobs' pubsub topic.
	JobsProtocol protocol.ID = ProtocolPrefix + "/train/jobs/1"

	// CreditProtocol exchanges signed receipts of work done for others
	// (package credit): a server's receipt for an inference session and
	// its client's countersignature, a training round's summary and its
	// members' signatures.
	CreditProtocol protocol.ID = ProtocolPrefix + "/credit/1"

	// PubSubProtocol is gossipsub v1.1 under ProtocolPrefix, so Mycel's
	// topics stay apart from other libp2p networks.
	PubSubProtocol protocol.ID = ProtocolPrefix + "/meshsub/1.1.0"

	// bitswapSuffix is the upstream bitswap ID that BitswapProtocol prefixes.
	bitswapSuffix = "/ipfs/bitswap/1.2.0"
)

// BitswapProtocolSuffix is the part of BitswapProtocol after ProtocolPrefix,
// as the bitswap network layer wants it (prefix and suffix are set apart).
const BitswapProtocolSuffix protocol.ID = bitswapSuffix
