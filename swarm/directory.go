package swarm

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/records"
)

// Defaults of DirectoryConfig.
const (
	DefaultRecordTTL      = records.DefaultRecordTTL
	DefaultLookupInterval = records.DefaultLookupInterval
	DefaultLookupTimeout  = records.DefaultLookupTimeout
	// DefaultProvideInterval is how often a server provides its model's
	// servers key again on the DHT.
	DefaultProvideInterval = records.DefaultProvideInterval
)

// serversNamespace prefixes the pubsub topic and the DHT key of a model's
// server records.
const serversNamespace = "/mycel/servers/"

// DirectoryConfig configures a Directory. Zero fields take the defaults.
type DirectoryConfig struct {
	// Routing finds the servers of a model (DHT provider records under
	// ServersKey); nil: only pubsub and the peers already known.
	Routing routing.ContentRouting
	// PubSub carries records as they change, on TopicFor(model); nil:
	// lookups only.
	PubSub *pubsub.PubSub
	// RecordTTL is the life of an announced record; servers announce
	// again well before it ends.
	RecordTTL time.Duration
	// LookupInterval is how long Servers answers from what it holds
	// before it asks the network again.
	LookupInterval time.Duration
	// LookupTimeout bounds one lookup.
	LookupTimeout time.Duration
	// ProvideInterval is how often Announce provides ServersKey again.
	ProvideInterval time.Duration
}

// Directory knows the servers of models: it announces this node's own
// records and gathers the others', from three sources: the DHT (servers
// provide ServersKey(model)), the model's pubsub topic (records pushed as
// they change: joins, moves, departures) and the servers protocol (any
// node answers with the records it holds for a model). Every record is
// signed by its server and checked on arrival; expired ones are dropped.
// It is a records.Directory of ServerRecords, one topic per model, over
// p2p.ServersProtocol.
type Directory struct {
	h   host.Host
	dir *records.Directory[ServerRecord, *ServerRecord]
}

// NewDirectory starts a directory on h and registers the servers
// protocol handler. h's peerstore must hold its private key (libp2p hosts
// do).
func NewDirectory(h host.Host, cfg DirectoryConfig) (*Directory, error) {
	dir, err := records.New(h, serverRecords, records.Config{
		Protocol:        p2p.ServersProtocol,
		Namespace:       serversNamespace,
		Routing:         cfg.Routing,
		PubSub:          cfg.PubSub,
		RecordTTL:       cfg.RecordTTL,
		LookupInterval:  cfg.LookupInterval,
		LookupTimeout:   cfg.LookupTimeout,
		ProvideInterval: cfg.ProvideInterval,
	})
	if err != nil {
		return nil, err
	}
	return &Directory{h: h, dir: dir}, nil
}

// Config returns the configuration in force.
func (d *Directory) Config() DirectoryConfig {
	c := d.dir.Config()
	return DirectoryConfig{Routing: c.Routing, PubSub: c.PubSub, RecordTTL: c.RecordTTL,
		LookupInterval: c.LookupInterval, LookupTimeout: c.LookupTimeout, ProvideInterval: c.ProvideInterval}
}

// ServersKey is the DHT key under which the servers of model are
// providers: the CID of a SHA-256 of a fixed prefix and the model id.
func ServersKey(model string) cid.Cid { return records.ProviderKey(serversNamespace, model) }

// TopicFor is the pubsub topic of model's server records.
func TopicFor(model string) string { return serversNamespace + model }

// dirErr maps the record directory's ErrClosed to the package's.
func dirErr(err error) error {
	if errors.Is(err, records.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Watch returns a channel that receives a value (coalesced) whenever the
// records of model change, and a function that stops the watch.
func (d *Directory) Watch(model string) (<-chan struct{}, func(), error) {
	ch, stop, err := d.dir.Watch(model)
	return ch, stop, dirErr(err)
}

// Known returns the valid records the directory holds for model, without
// asking the network, sorted by first layer then peer.
func (d *Directory) Known(model string) []ServerRecord { return sortRecords(d.dir.Known(model)) }

// Models lists the models the directory holds valid records for, sorted.
func (d *Directory) Models() []string { return d.dir.Topics() }

func sortRecords(recs []ServerRecord) []ServerRecord {
	slices.SortFunc(recs, func(a, b ServerRecord) int {
		if a.Span.First != b.Span.First {
			return a.Span.First - b.Span.First
		}
		return cmpPeer(a.Peer, b.Peer)
	})
	return recs
}

func cmpPeer(a, b peer.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Servers returns the valid records of model's servers. It asks the
// network (Lookup) when its last lookup is older than LookupInterval or
// it knows no server; otherwise it answers from what pubsub has kept up
// to date.
func (d *Directory) Servers(ctx context.Context, model string) ([]ServerRecord, error) {
	recs, _, err := d.servers(ctx, model)
	return recs, err
}

// servers is Servers, saying whether it asked the network.
func (d *Directory) servers(ctx context.Context, model string) (recs []ServerRecord, looked bool, err error) {
	recs, looked, err = d.dir.Records(ctx, model)
	if err != nil {
		return nil, false, dirErr(err)
	}
	return sortRecords(recs), looked, nil
}

// Lookup asks the network for model's servers: the DHT for the providers
// of ServersKey(model), then each of them, the servers already known and
// the topic's peers for the records they hold. It fails only when the
// context ends; peers that do not answer are skipped.
func (d *Directory) Lookup(ctx context.Context, model string) error {
	return dirErr(d.dir.Lookup(ctx, model))
}

// Latency is the last measured round trip to p (0: never measured).
func (d *Directory) Latency(p peer.ID) time.Duration { return d.dir.Latency(p) }

// Announce signs r as this node's record for r.Model (Peer, Addrs, Seq
// and Expires are filled in), keeps it for the servers protocol,
// publishes it on the model's topic and, at most every ProvideInterval,
// provides ServersKey on the DHT. Call it again before RecordTTL ends.
func (d *Directory) Announce(ctx context.Context, r ServerRecord) error {
	return dirErr(d.dir.Announce(ctx, &r))
}

// WaitProvided waits until the last DHT provide of model's servers key
// that Announce started has ended (at once if none is under way).
func (d *Directory) WaitProvided(ctx context.Context, model string) error {
	return d.dir.WaitProvided(ctx, model)
}

// Withdraw tells the swarm this node no longer serves model: it
// publishes a leaving record and stops handing out its own.
func (d *Directory) Withdraw(ctx context.Context, model string) error {
	return dirErr(d.dir.Withdraw(ctx, model))
}

// Close stops the directory: the handler, the subscriptions and every
// goroutine. It does not withdraw records; call Withdraw first for that.
func (d *Directory) Close() error { return d.dir.Close() }
