package p2p

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/internal/logging"
)

var log = logging.Logger("p2p")

// MDNSServiceName is the DNS-SD service name nodes announce on the LAN.
const MDNSServiceName = "_mycel._udp"

// DHTDir is the name of the DHT datastore directory inside the data dir.
const DHTDir = "dht"

// Host is a Mycel node's network endpoint: a libp2p host plus the Kademlia
// DHT and local discovery. It owns everything it started and stops it all in
// Close.
type Host struct {
	h        host.Host
	lh       host.Host // h, its streams paced when a bandwidth cap is set (ratelimit.go)
	ownsHost bool
	dht      *DHT
	dhtMode  DHTMode
	dstore   ds.Batching
	mdns     mdns.Service
	ps       *pubsub.PubSub
	traffic  *Traffic  // nil with WithHost
	autoNAT  bool      // the host New built runs AutoNAT
	nat      *natWatch // the NAT types identify saw (reach.go)
	swarmID  string    // SwarmKeyID of a private swarm's key; "": public

	portClaims []*os.File // its listen ports, claimed among the machine's nodes (ports.go)

	bootstrap []peer.AddrInfo

	ctx    context.Context // cancelled by Close; parent of background work
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Go against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup // background goroutines

	closeOnce sync.Once
	closeErr  error
}

// New builds and starts a node from opts: it listens, runs the DHT and, unless
// turned off, mDNS. It dials nobody; call Bootstrap to join the network.
//
// New takes no context: the Host lives until Close, whatever happens to the
// caller's context. On error everything started so far is stopped again.
func New(opts ...Option) (_ *Host, err error) {
	var cfg config
	if err := cfg.apply(opts...); err != nil {
		return nil, err
	}
	if err := cfg.fallbacks(); err != nil {
		return nil, err
	}
	var claims []*os.File
	if cfg.host == nil {
		if claims, err = cfg.checkPorts(); err != nil {
			return nil, err
		}
	}

	n := &Host{bootstrap: cfg.bootstrap, dhtMode: cfg.dhtMode, portClaims: claims}
	if cfg.psk != nil {
		n.swarmID = SwarmKeyID(cfg.psk)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	if cfg.dataDir != "" {
		if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("p2p: create data dir: %w", err)
		}
	}

	relays := &relaySource{}
	if cfg.host != nil {
		n.h = cfg.host
	} else {
		key := cfg.identity
		if key == nil && cfg.dataDir != "" {
			if key, err = LoadOrCreateIdentity(cfg.dataDir); err != nil {
				return nil, err
			}
		}
		n.traffic = &Traffic{}
		lopts, err := libp2pOptions(&cfg, key, relays, n.traffic)
		if err != nil {
			return nil, err
		}
		if n.h, err = libp2p.New(lopts...); err != nil {
			return nil, fmt.Errorf("p2p: start libp2p host: %w", err)
		}
		n.ownsHost = true
		n.autoNAT = !cfg.noNAT
	}
	if err := n.watchNAT(); err != nil {
		return nil, err
	}

	n.lh = n.h
	if cfg.maxUp > 0 || cfg.maxDown > 0 {
		n.lh = &limitedHost{Host: n.h, l: &rateLimits{up: newBucket(cfg.maxUp), down: newBucket(cfg.maxDown), ctx: n.ctx}}
	}

	if cfg.dataDir != "" && !cfg.memDHT {
		dir := filepath.Join(cfg.dataDir, DHTDir)
		pds, err := pebbleds.NewDatastore(dir)
		if err != nil {
			return nil, fmt.Errorf("p2p: open DHT datastore %s: %w", dir, err)
		}
		n.dstore = pds
	} else {
		n.dstore = dssync.MutexWrap(ds.NewMapDatastore())
	}

	if n.dht, err = newDHT(n.h, cfg.dhtMode, n.dstore, cfg.bootstrap); err != nil {
		return nil, fmt.Errorf("p2p: start DHT: %w", err)
	}
	relays.dht.Store(n.dht.WAN)

	if !cfg.noPubSub {
		n.ps, err = pubsub.NewGossipSub(n.ctx, n.h,
			pubsub.WithGossipSubProtocols([]protocol.ID{PubSubProtocol}, pubsubFeatures),
			pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
			// Our topics carry small signed records, announced when they
			// change: a node's own record goes to every peer of the topic
			// at once, not only to its mesh, which a node that has just
			// joined the topic does not have yet (it forms at the next
			// heartbeat, and until then what the node says is lost).
			pubsub.WithFloodPublish(true),
		)
		if err != nil {
			return nil, fmt.Errorf("p2p: start pubsub: %w", err)
		}
	}

	if !cfg.noMDNS {
		// A machine without multicast still makes a good node: mDNS only
		// finds neighbours faster, so its failure is logged, not fatal.
		m := mdns.NewMdnsService(n.h, mdnsService(cfg.psk), (*mdnsNotifee)(n))
		if err := m.Start(); err != nil {
			log.Warn("mDNS discovery off", "err", err)
			m.Close()
		} else {
			n.mdns = m
		}
	}
	log.Info("host started", "peer", n.h.ID(), "addrs", n.h.Addrs(), "dht", cfg.dhtMode, "swarm", cmp.Or(n.swarmID, "public"))
	return n, nil
}

// tcpTransport is the TCP transport, dialing through cfg's dialer if set.
func tcpTransport(cfg *config) libp2p.Option {
	if cfg.tcpDialer != nil {
		return libp2p.Transport(tcp.NewTCPTransport, tcp.WithDialerForAddr(cfg.tcpDialer))
	}
	return libp2p.Transport(tcp.NewTCPTransport)
}

func libp2pOptions(cfg *config, key crypto.PrivKey, relays *relaySource, traffic *Traffic) ([]libp2p.Option, error) {
	rm, err := newResourceManager(cfg.maxConns, cfg.maxMemory, cfg.metrics != nil)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.connLow, cfg.connHigh, connmgr.WithGracePeriod(DefaultConnGrace))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.ListenAddrs(cfg.listenAddrs...),
		tcpTransport(cfg),
		// TLS first: AES-GCM with AES-NI moves bulk data about 1.7x faster
		// than Noise's ChaCha20-Poly1305. Noise stays for peers without TLS.
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.UserAgent(cfg.userAgent),
		libp2p.BandwidthReporter(traffic),
	}
	if cfg.metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.metrics))
	}
	if key != nil {
		opts = append(opts, libp2p.Identity(key))
	}
	if !cfg.noQUIC {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	if cfg.psk != nil {
		opts = append(opts, libp2p.PrivateNetwork(cfg.psk))
	}
	if !cfg.noNAT {
		opts = append(opts,
			libp2p.EnableNATService(),
			libp2p.EnableAutoNATv2(),
			libp2p.NATPortMap(),
		)
	}
	if cfg.noRelay {
		opts = append(opts, libp2p.DisableRelay())
	} else {
		opts = append(opts,
			libp2p.EnableRelay(),
			libp2p.EnableRelayService(),
			libp2p.EnableAutoRelayWithPeerSource(relays.peers),
		)
		if !cfg.noNAT {
			opts = append(opts, libp2p.EnableHolePunching())
		}
	}
	return opts, nil
}

// PrivateSwarm is the ID (SwarmKeyID) of the private swarm the node is a
// member of, or "" for the public swarm.
func (n *Host) PrivateSwarm() string { return n.swarmID }

// ID is the node's peer ID.
func (n *Host) ID() peer.ID { return n.h.ID() }

// Addrs are the addresses the node currently announces.
func (n *Host) Addrs() []ma.Multiaddr { return n.h.Addrs() }

// AddrInfo is the node's ID with its announced addresses, as another node
// would need it to dial this one.
func (n *Host) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()}
}

// Libp2p is the underlying libp2p host, for registering stream handlers and
// opening streams. With MaxUpload or MaxDownload its streams are paced to
// the caps.
func (n *Host) Libp2p() host.Host { return n.lh }

// DHT is the node's pair of Kademlia DHTs (LAN and WAN).
func (n *Host) DHT() *DHT { return n.dht }

// DHTStatus reports the mode and routing table size of each DHT.
func (n *Host) DHTStatus() DHTStatus { return n.dht.Status(n.dhtMode) }

// Traffic counts the bytes of the host's streams by protocol; nil for a
// host given with WithHost.
func (n *Host) Traffic() *Traffic { return n.traffic }

// PubSub is the node's gossipsub router (nil with NoPubSub). Topics
// carry fast, signed updates such as the servers of a model.
func (n *Host) PubSub() *pubsub.PubSub { return n.ps }

// pubsubFeatures says what PubSubProtocol supports: the gossipsub v1.1
// mesh and peer exchange.
func pubsubFeatures(f pubsub.GossipSubFeature, p protocol.ID) bool {
	return p == PubSubProtocol && (f == pubsub.GossipSubFeatureMesh || f == pubsub.GossipSubFeaturePX)
}

// Routing is the DHTs seen as content routing (provide, find providers).
func (n *Host) Routing() routing.Routing { return n.dht }

// Connect dials p (if not already connected) and remembers its addresses.
// A connect is asked for now: an address that failed a dial a moment ago
// (libp2p then refuses to dial it again for some seconds, "dial backoff")
// is dialed again. So is a dial that failed otherwise, after a short
// random pause, up to connectRetries times, each pause drawn from a range
// twice as wide as the last: two peers that dial each other at the same
// moment (mDNS finds both sides at once) can meet on one TCP connection on
// which both start the TLS handshake as its client, and both fail; the
// pauses take them apart.
func (n *Host) Connect(ctx context.Context, p peer.AddrInfo) error {
	err := n.h.Connect(ctx, p)
	for try := 0; try < connectRetries && err != nil && ctx.Err() == nil && n.h.Network().Connectedness(p.ID) != network.Connected; try++ {
		if !errors.Is(err, swarm.ErrDialBackoff) {
			select {
			case <-time.After(time.Duration(10+rand.IntN(50<<try)) * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if s, ok := n.h.Network().(*swarm.Swarm); ok {
			s.Backoff().Clear(p.ID)
		}
		err = n.h.Connect(ctx, p)
	}
	if err != nil && n.h.Network().Connectedness(p.ID) == network.Connected {
		err = nil // the other side's dial won
	}
	if err != nil {
		return fmt.Errorf("p2p: connect to %s: %w", p.ID, err)
	}
	return nil
}

// connectRetries bounds the dials Connect makes again after one failed.
const connectRetries = 3

// bootstrapIdentifyWait bounds how long Bootstrap waits for a connected
// bootstrap peer to enter a DHT routing table.
const bootstrapIdentifyWait = 5 * time.Second

// ErrNoBootstrap means none of the bootstrap peers could be reached.
var ErrNoBootstrap = errors.New("p2p: no bootstrap peer reachable")

// Bootstrap connects to the bootstrap peers in parallel and refreshes the
// DHT routing tables. It fails only if there were bootstrap peers and none of
// them answered. With no bootstrap peers it returns at once: such a node is
// the first of its network and waits to be dialed (or found by mDNS).
func (n *Host) Bootstrap(ctx context.Context) error {
	if len(n.bootstrap) == 0 {
		return nil
	}
	var (
		mu        sync.Mutex
		errs      []error
		ok        int
		wg        sync.WaitGroup
		connected []peer.ID
	)
	for _, p := range n.bootstrap {
		if p.ID == n.h.ID() {
			continue
		}
		wg.Go(func() {
			err := n.Connect(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				ok++
				connected = append(connected, p.ID)
			}
		})
	}
	wg.Wait()
	if ok == 0 && len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrNoBootstrap, errors.Join(errs...))
	}
	// A connected peer enters the routing tables once identify has told
	// which DHTs it serves; a refresh before that finds nobody to ask.
	wctx, cancel := context.WithTimeout(ctx, bootstrapIdentifyWait)
	err := n.waitDHTPeer(wctx, connected)
	cancel()
	if err != nil && ctx.Err() == nil {
		log.Debug("no bootstrap peer entered a DHT routing table", "err", err)
	}
	if err := n.dht.refresh(ctx); err != nil {
		return fmt.Errorf("p2p: bootstrap: %w", err)
	}
	return nil
}

// waitDHTPeer waits until a routing table holds a peer, or until every
// peer in ps has been identified and none of them serves a DHT (such peers
// never enter a routing table, so there is nothing to wait for).
func (n *Host) waitDHTPeer(ctx context.Context, ps []peer.ID) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !n.dht.Routable() {
		identified, servers := 0, 0
		for _, p := range ps {
			protos, err := n.h.Peerstore().GetProtocols(p)
			if err != nil || len(protos) == 0 {
				continue
			}
			identified++
			if slices.Contains(protos, DHTProtocol) || slices.Contains(protos, LANDHTProtocol) {
				servers++
			}
		}
		if identified == len(ps) && servers == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("p2p: wait for a DHT peer: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// WaitRoutable blocks until a DHT routing table (LAN or WAN) holds at least
// one peer: before that, provide and find queries fail at once.
func (n *Host) WaitRoutable(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !n.dht.Routable() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("p2p: wait for DHT routing table: %w", ctx.Err())
		case <-n.ctx.Done():
			return errors.New("p2p: wait for DHT routing table: host closed")
		case <-t.C:
		}
	}
	return nil
}

// Close stops mDNS, the DHT, the libp2p host (unless it came from WithHost)
// and closes the DHT datastore, in that order. It is safe to call more than
// once; later calls return the first call's result.
func (n *Host) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		var errs []error
		if n.mdns != nil {
			if err := n.mdns.Close(); err != nil {
				errs = append(errs, fmt.Errorf("p2p: close mDNS: %w", err))
			}
		}
		n.wg.Wait()
		if n.dht != nil {
			if !n.ownsHost {
				// The host lives on; stop it handing streams to a closed DHT.
				n.h.RemoveStreamHandler(DHTProtocol)
				n.h.RemoveStreamHandler(LANDHTProtocol)
			}
			if err := n.dht.Close(); err != nil {
				errs = append(errs, fmt.Errorf("p2p: close DHT: %w", err))
			}
		}
		// The host goes before the datastore: in-flight DHT handlers may
		// still read from it until the host is down.
		if n.h != nil && n.ownsHost {
			if err := n.h.Close(); err != nil {
				errs = append(errs, fmt.Errorf("p2p: close libp2p host: %w", err))
			}
		}
		if n.dstore != nil {
			if err := n.dstore.Close(); err != nil {
				errs = append(errs, fmt.Errorf("p2p: close DHT datastore: %w", err))
			}
		}
		release(n.portClaims)
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// mdnsNotifee connects to peers found on the local network.
type mdnsNotifee Host

func (m *mdnsNotifee) HandlePeerFound(p peer.AddrInfo) {
	n := (*Host)(m)
	if p.ID == n.h.ID() {
		return
	}
	// mDNS calls this on goroutines of its own that its Close does not
	// wait for; count the dial in wg so that Close waits for it.
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()

	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if err := n.h.Connect(ctx, p); err != nil {
		log.Debug("mDNS peer unreachable", "peer", p.ID, "err", err)
	}
}
