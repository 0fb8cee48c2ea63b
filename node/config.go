package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p"
)

// EnvData names the environment variable for the default data directory.
const EnvData = "MYCEL_DATA"

// Config is what a node needs to start. The zero value of each field means
// its default.
type Config struct {
	// DataDir holds the identity key, the block store, the DHT datastore
	// and the lists of models and data sets. Default: $MYCEL_DATA or ~/.mycel.
	DataDir string
	// Listen are libp2p multiaddrs (default: TCP and QUIC on
	// p2p.DefaultPort, all interfaces).
	Listen []string
	// APIAddr is host:port of the control API (default 127.0.0.1:5150;
	// port 0 picks a free one). On a loopback address the API answers the
	// programs of this machine; on any other, only requests that carry the
	// API token, which the node keeps in DataDir (api.TokenFile).
	APIAddr string
	// AllowedHosts are the names and addresses, besides localhost, the
	// loopback addresses and APIAddr's host, that the API accepts in a
	// request's Host header: a name such as mybox.lan, .lan for every name
	// ending so, or "*" for any (server.GuardConfig). Default: none.
	AllowedHosts []string
	// CORSOrigins are the web origins (scheme://host[:port]) whose pages
	// may call the API, besides pages on localhost, a loopback address or
	// an allowed host; "*" allows any. Default: none.
	CORSOrigins []string
	// Bootstrap are /p2p/ multiaddrs of peers to join through.
	Bootstrap []string
	// SwarmKey is the path of a private swarm's key file (p2p.ReadSwarmKey;
	// mycel swarm key writes one): the node connects only to nodes that
	// hold the same key, over TCP. Empty: DataDir/swarm.key (SwarmKeyFile)
	// when there is one, as IPFS keeps it, else the public swarm.
	SwarmKey string
	// StoreCap is the most bytes the block store may hold (0: no cap).
	StoreCap int64
	// FetchStall is how long a pull waits without receiving any block
	// before it reports the missing ones not found (default 30 s).
	FetchStall time.Duration
	// LookupInterval is how long the swarm directory answers from what it
	// holds before it asks the network again (0: the default).
	LookupInterval time.Duration
	// DHTMode is "auto" (server when reachable), "server" or "client".
	DHTMode string
	// Train makes the node a volunteer for fine-tuning jobs on the
	// swarm: it takes jobs that fit, one at a time, and trains them with
	// the others. TrainMemory bounds the memory a job may take (0: no
	// bound); TrainThreads the threads it trains with (0: every core; at
	// most Threads).
	Train        bool
	TrainMemory  int64
	TrainThreads int
	// Threads bounds the compute threads of everything the node runs:
	// the spans it serves, the models it completes with and the jobs it
	// trains each compute on at most this many (0: every core). A
	// ServeRequest, LocalModelConfig or TrainThreads that asks for more
	// (or for every core) gets Threads.
	Threads int
	// ServeMemory bounds the weights and KV caches of the spans Serve
	// serves when the request gives no MemoryCap (0: no bound).
	ServeMemory int64
	// MaxUpload and MaxDownload cap the bytes a second the node's streams
	// send and receive, all together (0: no cap; p2p.MaxUpload).
	MaxUpload, MaxDownload int64
	// DailyTransfer caps the bytes the node sends and receives in a day,
	// from local midnight to the next (0: no cap). Once they are spent the
	// node's work is suspended ("over-limit") until midnight.
	DailyTransfer int64
	// IdleOnly makes the node work only while the machine is otherwise
	// idle: it suspends its work ("busy") while programs other than the
	// node use more than IdleThreshold percent of the machine's CPU (all
	// cores; default DefaultIdleThreshold), and works again once they
	// have used less for IdleWait (default DefaultIdleWait). Linux only.
	IdleOnly      bool
	IdleThreshold float64
	IdleWait      time.Duration
	// Schedule is the weekly hours the node works, in the local time
	// zone (work.Schedule: "mon-fri 18:00-08:00, sat-sun all"); outside
	// them its work is suspended ("off-schedule"). Empty: every hour.
	Schedule string
	// Paused starts the node paused, until mycel node resume. A pause
	// does not outlive the node: without Paused a node starts working
	// (as its schedule and idle-only allow).
	Paused bool
	// DrainGrace bounds how long a suspension waits for the sessions of
	// the node's servers to re-route before it resets those left
	// (default DefaultDrainGrace).
	DrainGrace time.Duration
	// LoopbackOnly, NoMDNS, NoNAT, NoQUIC and NoRelay turn pieces off
	// (tests, private deployments).
	LoopbackOnly, NoMDNS, NoNAT, NoQUIC, NoRelay bool
}

// SwarmKeyFile is the name of the private swarm key a node takes from its
// data directory when Config.SwarmKey names none.
const SwarmKeyFile = "swarm.key"

// fileExists says whether path names something (a file, most likely).
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// DefaultDataDir is $MYCEL_DATA, or .mycel in the home directory.
func DefaultDataDir() string {
	if d := os.Getenv(EnvData); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".mycel"
	}
	return filepath.Join(home, ".mycel")
}

func (c *Config) fill() error {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.APIAddr == "" {
		c.APIAddr = api.DefaultAddr
	}
	if _, _, err := net.SplitHostPort(c.APIAddr); err != nil {
		return fmt.Errorf("node: API address %q: %w", c.APIAddr, err)
	}
	if c.StoreCap < 0 {
		return errors.New("node: negative store cap")
	}
	if err := c.fillWork(); err != nil {
		return err
	}
	for _, v := range []struct {
		what string
		n    int64
	}{{"serve memory", c.ServeMemory}, {"train memory", c.TrainMemory}, {"upload rate", c.MaxUpload},
		{"download rate", c.MaxDownload}, {"daily transfer", c.DailyTransfer}} {
		if v.n < 0 {
			return fmt.Errorf("node: negative %s cap %d", v.what, v.n)
		}
	}
	if err := kernels.CheckThreads(c.Threads); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

func (c *Config) p2pOptions() ([]p2p.Option, error) {
	opts := []p2p.Option{p2p.DataDir(c.DataDir)}
	if len(c.Listen) > 0 {
		opts = append(opts, p2p.ListenAddrStrings(c.Listen...))
	}
	if len(c.Bootstrap) > 0 {
		opts = append(opts, p2p.BootstrapStrings(c.Bootstrap...))
	}
	if c.SwarmKey == "" {
		if p := filepath.Join(c.DataDir, SwarmKeyFile); fileExists(p) {
			c.SwarmKey = p
		}
	}
	if c.SwarmKey != "" {
		key, err := p2p.ReadSwarmKey(c.SwarmKey)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		if fi, err := os.Stat(c.SwarmKey); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the swarm key can be read by other users of this machine, who could join the swarm with it; chmod 600 it",
				"file", c.SwarmKey, "mode", fi.Mode().Perm())
		}
		opts = append(opts, p2p.SwarmKey(key))
	}
	if c.LoopbackOnly {
		opts = append(opts, p2p.LoopbackOnly())
	}
	if c.NoMDNS {
		opts = append(opts, p2p.NoMDNS())
	}
	if c.NoNAT {
		opts = append(opts, p2p.NoNAT())
	}
	if c.NoQUIC {
		opts = append(opts, p2p.NoQUIC())
	}
	if c.NoRelay {
		opts = append(opts, p2p.NoRelay())
	}
	if c.MaxUpload > 0 {
		opts = append(opts, p2p.MaxUpload(c.MaxUpload))
	}
	if c.MaxDownload > 0 {
		opts = append(opts, p2p.MaxDownload(c.MaxDownload))
	}
	switch c.DHTMode {
	case "", "auto":
	case "server":
		opts = append(opts, p2p.ForceDHTMode(p2p.DHTModeServer))
	case "client":
		opts = append(opts, p2p.ForceDHTMode(p2p.DHTModeClient))
	default:
		return nil, fmt.Errorf("node: DHT mode %q: want auto, server or client", c.DHTMode)
	}
	return opts, nil
}
