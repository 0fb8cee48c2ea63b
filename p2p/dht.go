package p2p

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/dual"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
)

// LANDHTProtocol is the DHT among peers on private networks: the same
// Kademlia protocol as DHTProtocol under its own ID, so that the two
// routing tables never mix.
const LANDHTProtocol protocol.ID = lanPrefix + "/kad/1.0.0"

// lanPrefix is the LAN DHT's protocol prefix.
const lanPrefix = ProtocolPrefix + dual.LanExtension

// DHT is a node's content and peer routing: two Kademlia DHTs on one host.
//
//   - The WAN DHT (DHTProtocol) admits only peers with a public address to
//     its routing table and hands out only public addresses. In DHTModeAuto
//     it answers queries only while AutoNAT finds the node publicly
//     reachable, so it stays free of servers that others cannot dial.
//   - The LAN DHT (LANDHTProtocol) admits only peers reached over a private
//     or loopback address and answers their queries whatever the
//     reachability (unless the node is forced to client mode). Nodes of one
//     home network, one lab or one machine form a working DHT among
//     themselves with no flags, even when none of them is reachable from
//     the internet.
//
// Searches (providers, peers, values) run on both at once and merge what
// they find; Provide announces on each DHT that has peers.
type DHT struct {
	*dual.DHT
	h host.Host
}

var _ routing.Routing = (*DHT)(nil)

func newDHT(h host.Host, mode DHTMode, dstore ds.Batching, bootstrap []peer.AddrInfo) (*DHT, error) {
	opts := []dual.Option{
		dual.DHTOption(dht.Datastore(dstore), dht.BootstrapPeers(bootstrap...)),
		// Each prefix in full: a prefix given after dual's own LAN extension
		// would replace it, and both DHTs would answer on one protocol.
		dual.WanDHTOption(dht.ProtocolPrefix(ProtocolPrefix)),
		dual.LanDHTOption(dht.ProtocolPrefix(lanPrefix)),
		// Unlike kad-dht's own LAN default, keep loopback addresses: nodes
		// on one machine are a swarm too (a first try, a demo, a test), and
		// a peer elsewhere that dials a loopback address only reaches
		// itself, which the peer ID check refuses at once.
		dual.LanDHTOption(dht.AddressFilter(func(a []ma.Multiaddr) []ma.Multiaddr { return a })),
	}
	switch mode {
	case DHTModeServer:
		opts = append(opts, dual.DHTOption(dht.Mode(dht.ModeServer)))
	case DHTModeClient:
		opts = append(opts, dual.DHTOption(dht.Mode(dht.ModeClient)))
	default:
		// The WAN follows reachability; dual.New then makes the LAN a server.
		opts = append(opts, dual.WanDHTOption(dht.Mode(dht.ModeAuto)))
	}
	d, err := dual.New(h, opts...)
	if err != nil {
		return nil, err
	}
	return &DHT{DHT: d, h: h}, nil
}

// Provide announces key on every DHT whose routing table holds a peer, at
// the same time. It succeeds when one of them took the record; with no
// peer in either table it fails at once with kbucket's ErrLookupFailure
// (the caller retries).
func (d *DHT) Provide(ctx context.Context, key cid.Cid, announce bool) error {
	var targets []*dht.IpfsDHT
	for _, t := range []*dht.IpfsDHT{d.LAN, d.WAN} {
		if t.RoutingTable().Size() > 0 {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("p2p: provide: no peer in either DHT routing table yet: %w", kb.ErrLookupFailure)
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { errs[i] = t.Provide(ctx, key, announce) })
	}
	wg.Wait()
	if slices.Contains(errs, nil) {
		return nil
	}
	return errors.Join(errs...)
}

// Routable reports whether either routing table holds a peer: before that,
// provide and find queries fail at once.
func (d *DHT) Routable() bool {
	return d.LAN.RoutingTable().Size() > 0 || d.WAN.RoutingTable().Size() > 0
}

// refresh refreshes both routing tables and waits for both.
func (d *DHT) refresh(ctx context.Context) error {
	lan, wan := d.LAN.RefreshRoutingTable(), d.WAN.RefreshRoutingTable()
	for _, ch := range []<-chan error{lan, wan} {
		select {
		case err := <-ch:
			if err != nil {
				log.Debug("routing table refresh", "err", err)
			}
		case <-ctx.Done():
			return fmt.Errorf("p2p: refresh DHT routing tables: %w", ctx.Err())
		}
	}
	return nil
}

// DHTTable describes one of the two DHTs.
type DHTTable struct {
	// Mode is "server" while the node answers this DHT's queries, else
	// "client".
	Mode string `json:"mode"`
	// Peers is the number of peers in its routing table.
	Peers int `json:"peers"`
}

// DHTStatus is what the node's two DHTs look like now.
type DHTStatus struct {
	// Setting is the mode the node was started with: "auto", "server" or
	// "client".
	Setting string   `json:"setting"`
	LAN     DHTTable `json:"lan"`
	WAN     DHTTable `json:"wan"`
}

// Status reports each DHT's current mode and routing table size. A DHT is
// a server while its protocol handler is registered on the host, which is
// what other peers see.
func (d *DHT) Status(setting DHTMode) DHTStatus {
	protos := d.h.Mux().Protocols()
	table := func(t *dht.IpfsDHT, id protocol.ID) DHTTable {
		mode := "client"
		if slices.Contains(protos, id) {
			mode = "server"
		}
		return DHTTable{Mode: mode, Peers: t.RoutingTable().Size()}
	}
	return DHTStatus{
		Setting: setting.String(),
		LAN:     table(d.LAN, LANDHTProtocol),
		WAN:     table(d.WAN, DHTProtocol),
	}
}
