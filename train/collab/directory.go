package collab

import (
	"context"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/records"
)

// membersNamespace prefixes the pubsub topic and the DHT key of a job's
// member records.
const membersNamespace = "/mycel/train/members/"

// DefaultRecordTTL is the life of a member record: a member that stops
// announcing (it crashed, or lost its network) is forgotten within it.
// Members announce again every DefaultHeartbeat.
const (
	DefaultRecordTTL = 10 * time.Second
	DefaultHeartbeat = 2 * time.Second
)

// Directory knows the members of training jobs: one topic per job, over
// the host's pubsub (records pushed as they change), the members protocol
// (any node answers with the records it holds for a job) and the DHT
// (members provide the job's key). One node has one Directory, shared by
// the jobs it trains.
type Directory struct {
	dir *records.Directory[Member, *Member]
}

// DirectoryConfig configures a Directory; zero fields take the defaults.
type DirectoryConfig struct {
	// Routing finds a job's members on the DHT; nil: pubsub and the
	// peers already known only.
	Routing routing.ContentRouting
	// PubSub carries records as they change; nil: lookups only.
	PubSub *pubsub.PubSub
	// RecordTTL is the life of a member record (DefaultRecordTTL).
	RecordTTL time.Duration
	// LookupInterval is how long Members answers from what it holds
	// before it asks the network again.
	LookupInterval time.Duration
}

// NewDirectory starts a directory on h and registers the members
// protocol's handler.
func NewDirectory(h host.Host, cfg DirectoryConfig) (*Directory, error) {
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = DefaultRecordTTL
	}
	if cfg.LookupInterval <= 0 {
		cfg.LookupInterval = 5 * time.Second
	}
	dir, err := records.New(h, members, records.Config{
		Protocol:       p2p.MembersProtocol,
		Namespace:      membersNamespace,
		Routing:        cfg.Routing,
		PubSub:         cfg.PubSub,
		RecordTTL:      cfg.RecordTTL,
		LookupInterval: cfg.LookupInterval,
		LookupTimeout:  5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("collab: %w", err)
	}
	return &Directory{dir: dir}, nil
}

// Members returns the valid member records of job, asking the network
// when the last lookup is older than the lookup interval.
func (d *Directory) Members(ctx context.Context, job string) ([]Member, error) {
	recs, _, err := d.dir.Records(ctx, job)
	return recs, err
}

// Known returns the valid member records held for job, without asking
// the network, sorted by peer.
func (d *Directory) Known(job string) []Member { return d.dir.Known(job) }

// Watch returns a channel that receives when job's records change, and a
// function that stops it.
func (d *Directory) Watch(job string) (<-chan struct{}, func(), error) { return d.dir.Watch(job) }

// announce signs and publishes this node's record for m.Job.
func (d *Directory) announce(ctx context.Context, m *Member) error { return d.dir.Announce(ctx, m) }

// withdraw publishes that this node left job.
func (d *Directory) withdraw(ctx context.Context, job string) error {
	return d.dir.Withdraw(ctx, job)
}

// Close stops the directory.
func (d *Directory) Close() error { return d.dir.Close() }
