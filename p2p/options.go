package p2p

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPort is the TCP and UDP (QUIC) port a node listens on unless told
// otherwise. A fixed port lets volunteers forward it on their router.
const DefaultPort = 4747

// Defaults for the caps. A volunteer sets the real values in the node config.
const (
	DefaultMaxConns  = 512
	DefaultConnLow   = 64
	DefaultConnHigh  = 192
	DefaultConnGrace = time.Minute
)

// DHTMode selects whether the node answers DHT queries from other peers.
type DHTMode int

const (
	// DHTModeAuto runs the DHT as a server while the node is publicly
	// reachable (as AutoNAT reports it) and as a client otherwise.
	DHTModeAuto DHTMode = iota
	// DHTModeServer always answers DHT queries.
	DHTModeServer
	// DHTModeClient never answers DHT queries; it only asks.
	DHTModeClient
)

func (m DHTMode) String() string {
	switch m {
	case DHTModeAuto:
		return "auto"
	case DHTModeServer:
		return "server"
	case DHTModeClient:
		return "client"
	}
	return fmt.Sprintf("DHTMode(%d)", int(m))
}

// Option configures New. Options return an error for bad values and for
// conflicts with options given earlier; nil options are skipped. Defaults are
// applied after all options, and only to what the options left unset.
type Option func(*config) error

// config is what the options build. Zero values mean "unset".
type config struct {
	dataDir string

	identity      crypto.PrivKey
	listenAddrs   []ma.Multiaddr
	defaultListen bool // listenAddrs are the defaults
	defaultPort   int  // the port they take; 0: DefaultPort
	loopback      bool
	noQUIC        bool
	psk           pnet.PSK // a private swarm's key; nil: the public swarm
	noNAT         bool
	noRelay       bool
	noMDNS        bool
	noPubSub      bool
	userAgent     string
	metrics       prometheus.Registerer
	maxUp         int64 // bytes a second; 0: no cap
	maxDown       int64

	maxConns  int
	maxMemory int64
	connLow   int
	connHigh  int

	bootstrap []peer.AddrInfo

	dhtMode    DHTMode
	dhtModeSet bool
	memDHT     bool

	host host.Host

	tcpDialer tcp.DialerForAddr

	// hostOpts names the options that shape a host New builds itself; they
	// conflict with WithHost.
	hostOpts []string
}

func (c *config) apply(opts ...Option) error {
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return err
		}
	}
	return nil
}

func (c *config) markHostOpt(name string) error {
	if c.host != nil {
		return fmt.Errorf("p2p: option %s conflicts with WithHost", name)
	}
	if !slices.Contains(c.hostOpts, name) {
		c.hostOpts = append(c.hostOpts, name)
	}
	return nil
}

// fallbacks fills in what no option set, then checks the combination.
func (c *config) fallbacks() error {
	if c.host == nil {
		if c.listenAddrs == nil {
			c.listenAddrs = defaultListenAddrs(c.loopback, !c.noQUIC, c.port())
			c.defaultListen = !c.loopback
		}
		if c.noQUIC {
			for _, a := range c.listenAddrs {
				if isQUIC(a) && c.psk != nil {
					return fmt.Errorf("p2p: listen address %s: a private swarm runs over TCP only (QUIC cannot carry its key)", a)
				}
				if isQUIC(a) {
					return fmt.Errorf("p2p: NoQUIC conflicts with listen address %s", a)
				}
			}
		}
		if c.maxConns == 0 {
			c.maxConns = DefaultMaxConns
		}
		if c.connLow == 0 && c.connHigh == 0 {
			c.connLow, c.connHigh = DefaultConnLow, DefaultConnHigh
			if c.connHigh >= c.maxConns {
				c.connHigh = c.maxConns * 3 / 4
				c.connLow = c.connHigh / 3
			}
		}
		if c.connHigh >= c.maxConns {
			return fmt.Errorf("p2p: connection manager high water %d must be below max connections %d", c.connHigh, c.maxConns)
		}
	}
	if c.userAgent == "" {
		c.userAgent = "mycel"
	}
	return nil
}

// defaultListenAddrs are TCP and QUIC on port, on all interfaces (IPv4 and
// IPv6), or with loopback on 127.0.0.1 and ports the system picks.
func defaultListenAddrs(loopback, quic bool, port int) []ma.Multiaddr {
	ip4, ip6 := "0.0.0.0", "::"
	if loopback {
		port = 0
		ip4, ip6 = "127.0.0.1", ""
	}
	var s []string
	s = append(s, fmt.Sprintf("/ip4/%s/tcp/%d", ip4, port))
	if quic {
		s = append(s, fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", ip4, port))
	}
	if ip6 != "" {
		s = append(s, fmt.Sprintf("/ip6/%s/tcp/%d", ip6, port))
		if quic {
			s = append(s, fmt.Sprintf("/ip6/%s/udp/%d/quic-v1", ip6, port))
		}
	}
	out := make([]ma.Multiaddr, len(s))
	for i, a := range s {
		out[i] = ma.StringCast(a)
	}
	return out
}

// DataDir keeps the node's persistent state in dir: the identity key
// (identity.key, created on first start) and the DHT datastore (dht/).
// Without DataDir the identity is ephemeral and the DHT lives in memory.
func DataDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("p2p: DataDir: empty path")
		}
		if c.dataDir != "" {
			return fmt.Errorf("p2p: DataDir given twice (%q and %q)", c.dataDir, dir)
		}
		c.dataDir = dir
		return nil
	}
}

// Identity sets the private key of the node. It conflicts with a key kept in
// DataDir only in the sense that it wins: the key file is then not read.
func Identity(key crypto.PrivKey) Option {
	return func(c *config) error {
		if key == nil {
			return errors.New("p2p: Identity: nil key")
		}
		if c.identity != nil {
			return errors.New("p2p: cannot specify multiple identities")
		}
		c.identity = key
		return c.markHostOpt("Identity")
	}
}

// ListenAddrs sets the addresses to listen on, replacing the defaults
// (TCP and QUIC on DefaultPort, IPv4 and IPv6, all interfaces).
func ListenAddrs(addrs ...ma.Multiaddr) Option {
	return func(c *config) error {
		if c.listenAddrs != nil {
			return errors.New("p2p: listen addresses given twice")
		}
		if c.loopback {
			return errors.New("p2p: ListenAddrs conflicts with LoopbackOnly")
		}
		c.listenAddrs = append([]ma.Multiaddr{}, addrs...)
		return c.markHostOpt("ListenAddrs")
	}
}

// ListenAddrStrings is ListenAddrs for multiaddr strings.
func ListenAddrStrings(addrs ...string) Option {
	return func(c *config) error {
		parsed := make([]ma.Multiaddr, 0, len(addrs))
		for _, s := range addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return fmt.Errorf("p2p: listen address %q: %w", s, err)
			}
			parsed = append(parsed, a)
		}
		return ListenAddrs(parsed...)(c)
	}
}

// LoopbackOnly listens on 127.0.0.1 only, on ports the OS picks. For tests
// and benchmarks.
func LoopbackOnly() Option {
	return func(c *config) error {
		if c.listenAddrs != nil {
			return errors.New("p2p: LoopbackOnly conflicts with ListenAddrs")
		}
		c.loopback = true
		return c.markHostOpt("LoopbackOnly")
	}
}

// NoQUIC turns the QUIC transport off; only TCP is used.
func NoQUIC() Option {
	return func(c *config) error {
		c.noQUIC = true
		return c.markHostOpt("NoQUIC")
	}
}

// NoNAT turns off AutoNAT (both the client probes and the service for other
// peers), UPnP/NAT-PMP port mapping and hole punching.
func NoNAT() Option {
	return func(c *config) error {
		c.noNAT = true
		return c.markHostOpt("NoNAT")
	}
}

// NoRelay turns off circuit relay v2: the client, auto-relay reservations,
// the relay service a public node offers, and hole punching (which needs a
// relayed connection to start from).
func NoRelay() Option {
	return func(c *config) error {
		c.noRelay = true
		return c.markHostOpt("NoRelay")
	}
}

// TCPDialer makes the host dial its TCP connections through d instead of
// the operating system's dialer: benchmarks put emulated links (delay,
// rates; internal/netem) under real hosts this way.
func TCPDialer(d tcp.DialerForAddr) Option {
	return func(c *config) error {
		if d == nil {
			return errors.New("p2p: nil TCP dialer")
		}
		c.tcpDialer = d
		return c.markHostOpt("TCPDialer")
	}
}

// NoMDNS turns off local-network discovery by multicast DNS.
func NoMDNS() Option {
	return func(c *config) error {
		c.noMDNS = true
		return nil
	}
}

// NoPubSub turns off the gossipsub router; Host.PubSub returns nil.
func NoPubSub() Option {
	return func(c *config) error {
		c.noPubSub = true
		return nil
	}
}

// UserAgent sets the agent string that identify sends to peers.
func UserAgent(s string) Option {
	return func(c *config) error {
		if c.userAgent != "" {
			return errors.New("p2p: user agent given twice")
		}
		c.userAgent = s
		return c.markHostOpt("UserAgent")
	}
}

// MaxUpload caps the bytes a second the host's streams send, all of them
// together (see ratelimit.go for which streams); 0 is no cap.
func MaxUpload(bytesPerSecond int64) Option {
	return func(c *config) error {
		if bytesPerSecond < 0 {
			return fmt.Errorf("p2p: MaxUpload: negative rate %d", bytesPerSecond)
		}
		c.maxUp = bytesPerSecond
		return nil
	}
}

// MaxDownload caps the bytes a second the host's streams receive, all of
// them together (see ratelimit.go for which streams); 0 is no cap.
func MaxDownload(bytesPerSecond int64) Option {
	return func(c *config) error {
		if bytesPerSecond < 0 {
			return fmt.Errorf("p2p: MaxDownload: negative rate %d", bytesPerSecond)
		}
		c.maxDown = bytesPerSecond
		return nil
	}
}

// Metrics makes the host register libp2p's own metrics (connections,
// streams, the resource manager, identify, relay, hole punching...) with
// reg. Without it libp2p registers them with prometheus.DefaultRegisterer.
// Its collectors are libp2p's package variables: hosts of one process
// that register with different registries share their values.
func Metrics(reg prometheus.Registerer) Option {
	return func(c *config) error {
		if reg == nil {
			return errors.New("p2p: Metrics: nil registerer")
		}
		if c.metrics != nil {
			return errors.New("p2p: Metrics given twice")
		}
		c.metrics = reg
		return c.markHostOpt("Metrics")
	}
}

// Limits caps the whole node: at most maxConns connections and maxMemory
// bytes of buffers held by the libp2p resource manager. Zero leaves a cap at
// its default (DefaultMaxConns; memory scaled from the machine).
func Limits(maxConns int, maxMemory int64) Option {
	return func(c *config) error {
		if maxConns < 0 || maxMemory < 0 {
			return fmt.Errorf("p2p: Limits(%d, %d): negative cap", maxConns, maxMemory)
		}
		if maxMemory != 0 && maxMemory < 64<<20 {
			return fmt.Errorf("p2p: Limits: memory cap %d bytes is below 64 MiB", maxMemory)
		}
		if c.maxConns != 0 || c.maxMemory != 0 {
			return errors.New("p2p: Limits given twice")
		}
		c.maxConns, c.maxMemory = maxConns, maxMemory
		return c.markHostOpt("Limits")
	}
}

// ConnManager sets the connection manager's water marks: above high
// connections it trims back to low, sparing connections younger than a minute.
func ConnManager(low, high int) Option {
	return func(c *config) error {
		if low <= 0 || high <= low {
			return fmt.Errorf("p2p: ConnManager(%d, %d): need 0 < low < high", low, high)
		}
		if c.connHigh != 0 {
			return errors.New("p2p: ConnManager given twice")
		}
		c.connLow, c.connHigh = low, high
		return c.markHostOpt("ConnManager")
	}
}

// Bootstrap adds peers to connect to when joining the network. The DHT also
// falls back to them whenever its routing table runs empty.
func Bootstrap(peers ...peer.AddrInfo) Option {
	return func(c *config) error {
		for _, p := range peers {
			if p.ID == "" {
				return errors.New("p2p: bootstrap peer without ID")
			}
		}
		c.bootstrap = append(c.bootstrap, peers...)
		return nil
	}
}

// BootstrapStrings is Bootstrap for /p2p/-terminated multiaddr strings.
func BootstrapStrings(addrs ...string) Option {
	return func(c *config) error {
		for _, s := range addrs {
			ai, err := peer.AddrInfoFromString(s)
			if err != nil {
				return fmt.Errorf("p2p: bootstrap address %q: %w", s, err)
			}
			if err := Bootstrap(*ai)(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// ForceDHTMode fixes the DHT mode instead of following reachability.
func ForceDHTMode(m DHTMode) Option {
	return func(c *config) error {
		if m < DHTModeAuto || m > DHTModeClient {
			return fmt.Errorf("p2p: unknown DHT mode %d", int(m))
		}
		if c.dhtModeSet && c.dhtMode != m {
			return fmt.Errorf("p2p: DHT mode given twice (%s and %s)", c.dhtMode, m)
		}
		c.dhtMode, c.dhtModeSet = m, true
		return nil
	}
}

// MemoryDatastore keeps the DHT's records in memory even when DataDir is set.
func MemoryDatastore() Option {
	return func(c *config) error {
		c.memDHT = true
		return nil
	}
}

// WithHost uses an existing libp2p host (for example one from mocknet)
// instead of building one. The Host does not close it. Options that shape a
// built host (Identity, ListenAddrs, LoopbackOnly, NoQUIC, NoNAT, NoRelay,
// UserAgent, Limits, ConnManager) conflict with it.
func WithHost(h host.Host) Option {
	return func(c *config) error {
		if h == nil {
			return errors.New("p2p: WithHost: nil host")
		}
		if c.host != nil {
			return errors.New("p2p: WithHost given twice")
		}
		if len(c.hostOpts) > 0 {
			return fmt.Errorf("p2p: WithHost conflicts with %s", strings.Join(c.hostOpts, ", "))
		}
		c.host = h
		return nil
	}
}

func isQUIC(a ma.Multiaddr) bool {
	for _, comp := range a {
		if comp.Protocol().Code == ma.P_QUIC_V1 || comp.Protocol().Code == ma.P_QUIC {
			return true
		}
	}
	return false
}
