package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/credit"
	"github.com/mycel-net/mycel/node/openai"
	"github.com/mycel-net/mycel/node/server"
	"github.com/mycel-net/mycel/node/work"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/swarm"
)

var log = logging.Logger("node")

// BlocksDir is the block store's directory inside the data directory.
const BlocksDir = "blocks"

// Node is a running Mycel daemon.
type Node struct {
	cfg    Config
	lock   *dirLock // the data directory's, held until Close
	host   *p2p.Host
	store  *blocks.Store
	ex     *blocks.Exchange
	models *registry
	data   *registry // the data sets kept (data.go)
	ckpts  *registry // the training checkpoints kept (checkpoints.go)

	// blockOps: imports and pulls hold it shared, store GC exclusively;
	// pulls, dataPulls and ckptPulls list the pulls begun and not
	// completed (gc.go).
	blockOps  sync.RWMutex
	pulls     *registry
	dataPulls *registry
	ckptPulls *registry

	api   *http.Server
	apiLn net.Listener
	guard *server.Guard // the API's Host, Origin and token checks
	token string        // the API token (api.TokenFile)

	metrics  *metrics       // served at /metrics (metrics.go)
	transfer *transferMeter // the day's bytes sent and received (caps.go); set by Start

	work     *work.State    // whether the node works, and why not (work.go)
	sched    *work.Schedule // Config.Schedule, parsed
	workKick chan struct{}  // wakes workLoop

	compMu     sync.Mutex
	completers map[string]openai.Completer // by name, for the OpenAI API

	dir         *swarm.Directory
	train       *training       // swarm fine-tuning (training.go)
	credit      *credit.Service // signed receipts of the work done (credit.go)
	swarmMu     sync.Mutex
	closing     bool
	servings    []servingEntry
	swarmModels map[string]*SwarmModel // by CID
	blockModels map[string]*LocalModel // by CID: whole models from blocks
	started     time.Time
	joined      chan struct{} // closed once the first bootstrap has ended

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New opens the node's stores and starts its libp2p host; it dials nobody
// and serves nothing until Start. On error everything opened is closed.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data directory: %w", err)
	}
	n := &Node{cfg: cfg, started: time.Now(), joined: make(chan struct{}),
		swarmModels: map[string]*SwarmModel{}, blockModels: map[string]*LocalModel{}}
	n.work, n.workKick = work.NewState(), make(chan struct{}, 1)
	if n.sched, err = work.ParseSchedule(cfg.Schedule); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.metrics = newMetrics(n)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if n.token, err = apiToken(cfg.DataDir); err != nil {
		return nil, err
	}
	if n.guard, err = server.NewGuard(server.GuardConfig{
		Addr: cfg.APIAddr, AllowedHosts: cfg.AllowedHosts, CORSOrigins: cfg.CORSOrigins,
		Token: n.token, TokenFile: n.APITokenFile(),
	}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.models, err = openRegistry(cfg.DataDir); err != nil {
		return nil, err
	}
	var sopts []blocks.StoreOption
	if cfg.StoreCap > 0 {
		sopts = append(sopts, blocks.Cap(cfg.StoreCap))
	}
	if n.store, err = blocks.OpenStore(filepath.Join(cfg.DataDir, BlocksDir), sopts...); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.pulls, err = openList(filepath.Join(cfg.DataDir, pullsFile)); err != nil {
		return nil, err
	}
	if n.data, err = openList(filepath.Join(cfg.DataDir, dataFile)); err != nil {
		return nil, err
	}
	if n.dataPulls, err = openList(filepath.Join(cfg.DataDir, dataPullsFile)); err != nil {
		return nil, err
	}
	if n.ckpts, err = openList(filepath.Join(cfg.DataDir, checkpointsFile)); err != nil {
		return nil, err
	}
	if n.ckptPulls, err = openList(filepath.Join(cfg.DataDir, checkpointPullsFile)); err != nil {
		return nil, err
	}
	n.collectAtStart()
	popts, err := cfg.p2pOptions()
	if err != nil {
		return nil, err
	}
	popts = append(popts, p2p.Metrics(n.metrics.reg))
	if n.host, err = p2p.New(popts...); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var xopts []blocks.ExchangeOption
	if cfg.FetchStall > 0 {
		xopts = append(xopts, blocks.StallTimeout(cfg.FetchStall))
	}
	if n.ex, err = blocks.NewExchange(n.host.Libp2p(), n.host.Routing(), n.store, xopts...); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.dir, err = swarm.NewDirectory(n.host.Libp2p(), swarm.DirectoryConfig{
		Routing: n.host.Routing(), PubSub: n.host.PubSub(), LookupInterval: cfg.LookupInterval,
	}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := n.openTraining(); err != nil {
		return nil, err
	}
	if err := n.openCredit(); err != nil {
		return nil, err
	}
	return n, nil
}

// Start binds the control API and joins the network in the background
// (bootstrap peers, then the DHT). It returns once the API is listening.
func (n *Node) Start(ctx context.Context) error {
	n.startTransferMeter(n.work) // before the API, whose status reads it
	if err := n.credit.Start(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("node: control API on %s: %w (is another node running? stop it, or pick another address with --api)", n.cfg.APIAddr, err)
	}
	n.apiLn = ln
	n.api = &http.Server{Handler: n.guard.Wrap(server.Handler(apiBackend{n})), ReadHeaderTimeout: 10 * time.Second}
	n.wg.Go(func() {
		if err := n.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control API stopped", "err", err)
		}
	})
	n.wg.Go(func() {
		bctx, cancel := context.WithTimeout(n.ctx, time.Minute)
		err := n.host.Bootstrap(bctx)
		cancel()
		close(n.joined)
		if err != nil {
			log.Warn("bootstrap", "err", err)
		}
		n.reprovideLoop()
	})
	if n.cfg.Train {
		n.wg.Go(func() { n.trainLoop(n.ctx) })
	}
	return n.startWork()
}

// waitJoined waits (until ctx ends) for the node's first bootstrap to end,
// so that a lookup made right after start sees the network the node was
// told to join rather than an empty routing table. A node with no bootstrap
// peers waits for nothing: it is the first of its network.
func (n *Node) waitJoined(ctx context.Context) {
	if len(n.cfg.Bootstrap) == 0 {
		return
	}
	select {
	case <-n.joined:
	case <-ctx.Done():
	}
}

// ReprovideInterval is how often a node announces again what it holds:
// well within the DHT's 48-hour provider record lifetime.
const ReprovideInterval = 12 * time.Hour

// routableCheck is how often the reprovide loop looks whether the node
// has found its first DHT peer (or found one again after losing all).
const routableCheck = time.Second

// reprovideLoop announces every kept model (its root and the parts held
// here), data set and checkpoint as soon as the DHT has a peer, so a restarted node is found again
// and a model imported on a node that was alone is announced once the
// others arrive; then every ReprovideInterval, and again whenever the node
// finds a peer after having none, until the node closes.
func (n *Node) reprovideLoop() {
	t := time.NewTicker(ReprovideInterval)
	defer t.Stop()
	check := time.NewTicker(routableCheck)
	defer check.Stop()
	routable := false
	for {
		for !routable {
			select {
			case <-n.ctx.Done():
				return
			case <-check.C:
				routable = n.host.DHT().Routable()
			}
		}
		n.reprovide()
		for routable {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
				n.reprovide()
			case <-check.C:
				routable = n.host.DHT().Routable()
			}
		}
	}
}

// reprovide announces every kept model (its root and the parts held
// here) and every kept data set and checkpoint (its root).
func (n *Node) reprovide() {
	for _, e := range n.models.entries() {
		c, err := cid.Decode(e.CID)
		if err != nil {
			continue
		}
		info, err := n.Inspect(n.ctx, c)
		if err != nil {
			continue
		}
		cids := []cid.Cid{c}
		for _, p := range info.Parts {
			if pc, err := cid.Decode(p.CID); err == nil && p.Local {
				cids = append(cids, pc)
			}
		}
		if err := n.ex.Provide(n.ctx, cids...); err != nil && n.ctx.Err() == nil {
			log.Warn("reprovide", "model", e.CID, "err", err)
		}
	}
	for _, e := range append(n.data.entries(), n.ckpts.entries()...) {
		c, err := cid.Decode(e.CID)
		if err != nil {
			continue
		}
		if err := n.ex.Provide(n.ctx, c); err != nil && n.ctx.Err() == nil {
			log.Warn("reprovide", "root", e.CID, "err", err)
		}
	}
}

// APIURL is the base URL of the control API (valid after Start).
func (n *Node) APIURL() string {
	if n.apiLn == nil {
		return ""
	}
	return "http://" + n.apiLn.Addr().String()
}

// APITokenFile is the file that keeps the API token.
func (n *Node) APITokenFile() string { return api.TokenPath(n.cfg.DataDir) }

// APITokenRequired says whether the API refuses requests without the
// token: whether it listens on more than loopback.
func (n *Node) APITokenRequired() bool { return n.guard.TokenRequired() }

// Host is the node's network endpoint.
func (n *Node) Host() *p2p.Host { return n.host }

// Store is the node's block store.
func (n *Node) Store() *blocks.Store { return n.store }

// Exchange is the node's bitswap exchange.
func (n *Node) Exchange() *blocks.Exchange { return n.ex }

// Close stops the API, the exchange, the host and the store, in that order,
// and lets the data directory go.
// Safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		var errs []error
		if n.api != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := n.api.Shutdown(sctx); err != nil {
				errs = append(errs, fmt.Errorf("node: stop control API: %w", err))
			}
			cancel()
		}
		n.wg.Wait()
		n.work.Close()
		n.closeTraining()
		errs = append(errs, n.closeSwarm())
		// After the servers: a session they ended is a receipt to issue.
		errs = append(errs, n.closeCredit())
		if n.ex != nil {
			errs = append(errs, n.ex.Close())
		}
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		errs = append(errs, n.lock.release())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// dhtStatus is d as the API reports it.
func dhtStatus(d p2p.DHTStatus) api.DHTStatus {
	return api.DHTStatus{Setting: d.Setting,
		LAN: api.DHTTable{Mode: d.LAN.Mode, Peers: d.LAN.Peers},
		WAN: api.DHTTable{Mode: d.WAN.Mode, Peers: d.WAN.Peers}}
}

// Status reports the node's identity, addresses, peers and stores.
func (n *Node) Status() api.Status {
	h := n.host.Libp2p()
	st := api.Status{
		ID:           h.ID().String(),
		PrivateSwarm: n.host.PrivateSwarm(),
		DHT:          dhtStatus(n.host.DHTStatus()),
		StoreBytes:   n.store.Size(),
		StoreCap:     n.store.Cap(),
		DataDir:      n.cfg.DataDir,
		Addrs:        []string{},
		Peers:        []string{},
	}
	self, _ := ma.NewComponent("p2p", h.ID().String())
	for _, a := range h.Addrs() {
		st.Addrs = append(st.Addrs, a.Encapsulate(self).String())
	}
	for _, p := range h.Network().Peers() {
		st.Peers = append(st.Peers, p.String())
	}
	st.UnreferencedBytes = n.unreferencedBytes(n.ctx)
	st.WorkState = n.WorkState()
	st.Caps = n.caps()
	n.activity(&st)
	return st
}
