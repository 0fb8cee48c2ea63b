package swarm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"
	mh "github.com/multiformats/go-multihash"

	"github.com/mycel-net/mycel/p2p"
)

// Defaults of DirectoryConfig.
const (
	DefaultRecordTTL      = 3 * time.Minute
	DefaultLookupInterval = 30 * time.Second
	DefaultLookupTimeout  = 10 * time.Second
	// DefaultProvideInterval is how often a server provides its model's
	// servers key again on the DHT.
	DefaultProvideInterval = time.Hour
)

// Bounds of the servers protocol.
const (
	maxRecordsPerAnswer = 64
	maxLookupPeers      = 32
	lookupParallel      = 8
)

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
type Directory struct {
	h   host.Host
	key crypto.PrivKey
	cfg DirectoryConfig

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	models  map[string]*modelDir
	latency map[peer.ID]time.Duration
}

type entry struct {
	rec *ServerRecord
	raw []byte
}

// modelDir is what the directory holds for one model.
type modelDir struct {
	model    string
	topic    *pubsub.Topic
	sub      *pubsub.Subscription
	recs     map[peer.ID]entry
	seqs     map[peer.ID]uint64 // highest Seq seen, leaving records included
	own      []byte             // this node's signed record, if it serves
	ownSeq   uint64
	looked   time.Time     // last lookup
	provided time.Time     // last DHT provide of ServersKey
	provideC chan struct{} // closed when the last provide ended
	watchers map[chan struct{}]struct{}
}

// NewDirectory starts a directory on h and registers the servers
// protocol handler. h's peerstore must hold its private key (libp2p hosts
// do).
func NewDirectory(h host.Host, cfg DirectoryConfig) (*Directory, error) {
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("swarm: directory: the host's private key is not in its peerstore")
	}
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = DefaultRecordTTL
	}
	cfg.RecordTTL = min(cfg.RecordTTL, MaxRecordTTL)
	if cfg.LookupInterval <= 0 {
		cfg.LookupInterval = DefaultLookupInterval
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	if cfg.ProvideInterval <= 0 {
		cfg.ProvideInterval = DefaultProvideInterval
	}
	d := &Directory{h: h, key: key, cfg: cfg, models: map[string]*modelDir{}, latency: map[peer.ID]time.Duration{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(p2p.ServersProtocol, d.handle)
	return d, nil
}

// Config returns the configuration in force.
func (d *Directory) Config() DirectoryConfig { return d.cfg }

// ServersKey is the DHT key under which the servers of model are
// providers: the CID of a SHA-256 of a fixed prefix and the model id.
func ServersKey(model string) cid.Cid {
	sum := sha256.Sum256([]byte("/mycel/servers/" + model))
	m, _ := mh.Encode(sum[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, m)
}

// TopicFor is the pubsub topic of model's server records.
func TopicFor(model string) string { return "/mycel/servers/" + model }

// join returns the model's entry, creating it (and subscribing to its
// topic) on first use.
func (d *Directory) join(model string) (*modelDir, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if md := d.models[model]; md != nil {
		return md, nil
	}
	if model == "" || len(model) > maxModelID {
		return nil, fmt.Errorf("swarm: directory: bad model id %q", model)
	}
	md := &modelDir{model: model, recs: map[peer.ID]entry{}, seqs: map[peer.ID]uint64{}, watchers: map[chan struct{}]struct{}{}}
	if ps := d.cfg.PubSub; ps != nil {
		name := TopicFor(model)
		if err := ps.RegisterTopicValidator(name, d.validator(model)); err != nil {
			return nil, fmt.Errorf("swarm: directory: topic %s: %w", name, err)
		}
		t, err := ps.Join(name)
		if err != nil {
			ps.UnregisterTopicValidator(name)
			return nil, fmt.Errorf("swarm: directory: join %s: %w", name, err)
		}
		sub, err := t.Subscribe()
		if err != nil {
			t.Close()
			ps.UnregisterTopicValidator(name)
			return nil, fmt.Errorf("swarm: directory: subscribe %s: %w", name, err)
		}
		md.topic, md.sub = t, sub
		d.wg.Go(func() { d.listen(md) })
	}
	d.models[model] = md
	return md, nil
}

// validator accepts a pubsub message that carries a well-formed record of
// model signed by the message's author.
func (d *Directory) validator(model string) pubsub.Validator {
	return func(_ context.Context, _ peer.ID, m *pubsub.Message) bool {
		r, err := OpenRecord(m.Data)
		if err != nil {
			log.Debug("rejected server record", "from", m.GetFrom(), "err", err)
			return false
		}
		return r.Peer == m.GetFrom() && r.Model == model && r.Expires.Sub(time.Now()) <= MaxRecordTTL+time.Minute
	}
}

// listen merges the records that arrive on md's topic until the
// directory closes.
func (d *Directory) listen(md *modelDir) {
	for {
		m, err := md.sub.Next(d.ctx)
		if err != nil {
			return
		}
		if r, err := OpenRecord(m.Data); err == nil {
			d.merge(md, r, m.Data)
		}
	}
}

// merge takes r (signed as raw) into md if it is newer than what md holds
// for its peer, and wakes the watchers when something changed.
func (d *Directory) merge(md *modelDir, r *ServerRecord, raw []byte) bool {
	if r.Model != md.model {
		return false
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Seq <= md.seqs[r.Peer] {
		return false
	}
	if r.State != StateLeaving && !r.Valid(now) {
		return false
	}
	md.seqs[r.Peer] = r.Seq
	if r.State == StateLeaving {
		delete(md.recs, r.Peer)
	} else {
		md.recs[r.Peer] = entry{rec: r, raw: raw}
		if r.Peer != d.h.ID() && len(r.Addrs) > 0 {
			d.h.Peerstore().AddAddrs(r.Peer, r.Addrs, peerstore.TempAddrTTL)
		}
	}
	md.notify()
	return true
}

// forget drops what md holds from p (records from p's own mouth or a
// newer announcement bring it back).
func (d *Directory) forget(md *modelDir, p peer.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := md.recs[p]; ok {
		delete(md.recs, p)
		md.notify()
	}
}

func (md *modelDir) notify() {
	for ch := range md.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Watch returns a channel that receives a value (coalesced) whenever the
// records of model change, and a function that stops the watch.
func (d *Directory) Watch(model string) (<-chan struct{}, func(), error) {
	md, err := d.join(model)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	md.watchers[ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(md.watchers, ch)
		d.mu.Unlock()
	}, nil
}

// Known returns the valid records the directory holds for model, without
// asking the network, sorted by first layer then peer.
func (d *Directory) Known(model string) []ServerRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	md := d.models[model]
	if md == nil {
		return nil
	}
	return md.valid(time.Now())
}

// Models lists the models the directory holds valid records for, sorted.
func (d *Directory) Models() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	now := time.Now()
	for m, md := range d.models {
		if len(md.valid(now)) > 0 {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func (md *modelDir) valid(now time.Time) []ServerRecord {
	var out []ServerRecord
	for p, e := range md.recs {
		if !e.rec.Valid(now) {
			delete(md.recs, p)
			continue
		}
		out = append(out, *e.rec)
	}
	slices.SortFunc(out, func(a, b ServerRecord) int {
		if a.Span.First != b.Span.First {
			return a.Span.First - b.Span.First
		}
		return cmpPeer(a.Peer, b.Peer)
	})
	return out
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
	md, err := d.join(model)
	if err != nil {
		return nil, false, err
	}
	d.mu.Lock()
	stale := time.Since(md.looked) > d.cfg.LookupInterval || len(md.valid(time.Now())) == 0
	d.mu.Unlock()
	if stale {
		if err := d.Lookup(ctx, model); err != nil {
			return nil, false, err
		}
	}
	return d.Known(model), stale, nil
}

// Lookup asks the network for model's servers: the DHT for the providers
// of ServersKey(model), then each of them, the servers already known and
// the topic's peers for the records they hold. It fails only when the
// context ends; peers that do not answer are skipped.
func (d *Directory) Lookup(ctx context.Context, model string) error {
	md, err := d.join(model)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.LookupTimeout)
	defer cancel()
	ask := map[peer.ID]bool{}
	d.mu.Lock()
	for p := range md.recs {
		ask[p] = true
	}
	d.mu.Unlock()
	if md.topic != nil {
		for _, p := range md.topic.ListPeers() {
			ask[p] = true
		}
	}
	// Neighbours hold what they heard: right after joining, before the
	// DHT or the topic has anything to say, they are the quickest source.
	for _, p := range d.h.Network().Peers() {
		if len(ask) >= maxLookupPeers {
			break
		}
		ask[p] = true
	}
	if r := d.cfg.Routing; r != nil {
		for ai := range r.FindProvidersAsync(ctx, ServersKey(model), maxLookupPeers) {
			if ai.ID == d.h.ID() {
				continue
			}
			if len(ai.Addrs) > 0 {
				d.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
			}
			ask[ai.ID] = true
		}
	}
	delete(ask, d.h.ID())
	sem := make(chan struct{}, lookupParallel)
	var wg sync.WaitGroup
	for p := range ask {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			raws, err := d.fetch(ctx, p, model)
			if err != nil {
				// A server that cannot be reached cannot serve: forget
				// it until it announces itself again.
				log.Debug("server records", "peer", p, "err", err)
				d.forget(md, p)
				return
			}
			self := false
			for _, raw := range raws {
				if r, err := OpenRecord(raw); err == nil {
					self = self || r.Peer == p
					d.merge(md, r, raw)
				}
			}
			if !self {
				// p speaks for itself: it no longer serves the model.
				d.forget(md, p)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("swarm: look up servers of %s: %w", model, err)
	}
	d.mu.Lock()
	md.looked = time.Now()
	d.mu.Unlock()
	return nil
}

// Latency is the last measured round trip to p (0: never measured).
func (d *Directory) Latency(p peer.ID) time.Duration {
	d.mu.Lock()
	l := d.latency[p]
	d.mu.Unlock()
	if l == 0 {
		l = d.h.Peerstore().LatencyEWMA(p)
	}
	return l
}

// fetch asks p for the records it holds for model, and measures the
// round trip on the way.
func (d *Directory) fetch(ctx context.Context, p peer.ID, model string) ([][]byte, error) {
	st, err := d.h.NewStream(ctx, p, p2p.ServersProtocol)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	req := binary.AppendUvarint(nil, uint64(len(model)))
	req = append(req, model...)
	start := time.Now()
	if _, err := st.Write(req); err != nil {
		return nil, err
	}
	if err := st.CloseWrite(); err != nil {
		return nil, err
	}
	br := bufio.NewReader(st)
	n, err := readBounded(br, "record count", maxRecordsPerAnswer)
	if err != nil {
		return nil, err
	}
	rtt := time.Since(start)
	d.mu.Lock()
	d.latency[p] = rtt
	d.mu.Unlock()
	out := make([][]byte, 0, n)
	for range n {
		size, err := readBounded(br, "record length", MaxRecordBytes)
		if err != nil {
			return nil, err
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

func readBounded(r io.ByteReader, what string, max uint64) (uint64, error) {
	v, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if v > max {
		return 0, fmt.Errorf("%s %d over the limit of %d", what, v, max)
	}
	return v, nil
}

// handle answers a servers request: the records held for the model asked
// for, this node's own first.
func (d *Directory) handle(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(d.cfg.LookupTimeout))
	br := bufio.NewReader(io.LimitReader(st, maxModelID+binary.MaxVarintLen64))
	n, err := readBounded(br, "model id length", maxModelID)
	if err != nil {
		st.Reset()
		return
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		st.Reset()
		return
	}
	var raws [][]byte
	d.mu.Lock()
	if md := d.models[string(b)]; md != nil {
		now := time.Now()
		if md.own != nil {
			raws = append(raws, md.own)
		}
		for p, e := range md.recs {
			if p != d.h.ID() && e.rec.Valid(now) && len(raws) < maxRecordsPerAnswer {
				raws = append(raws, e.raw)
			}
		}
	}
	d.mu.Unlock()
	out := binary.AppendUvarint(nil, uint64(len(raws)))
	for _, r := range raws {
		out = binary.AppendUvarint(out, uint64(len(r)))
		out = append(out, r...)
	}
	if _, err := st.Write(out); err != nil {
		st.Reset()
	}
}

// Announce signs r as this node's record for r.Model (Peer, Addrs, Seq
// and Expires are filled in), keeps it for the servers protocol,
// publishes it on the model's topic and, at most every ProvideInterval,
// provides ServersKey on the DHT. Call it again before RecordTTL ends.
func (d *Directory) Announce(ctx context.Context, r ServerRecord) error {
	md, err := d.join(r.Model)
	if err != nil {
		return err
	}
	raw, rec, err := d.sign(md, r, d.cfg.RecordTTL)
	if err != nil {
		return err
	}
	d.mu.Lock()
	md.own = raw
	provide := d.cfg.Routing != nil && time.Since(md.provided) > d.cfg.ProvideInterval
	if provide {
		md.provided = time.Now()
	}
	d.mu.Unlock()
	d.merge(md, rec, raw)
	if provide {
		done := make(chan struct{})
		d.mu.Lock()
		md.provideC = done
		d.mu.Unlock()
		d.wg.Go(func() {
			defer close(done)
			pctx, cancel := context.WithTimeout(d.ctx, time.Minute)
			defer cancel()
			if err := d.cfg.Routing.Provide(pctx, ServersKey(r.Model), true); err != nil && d.ctx.Err() == nil {
				log.Warn("provide servers key", "model", r.Model, "err", err)
				d.mu.Lock()
				md.provided = time.Time{}
				d.mu.Unlock()
			}
		})
	}
	return d.publish(ctx, md, raw)
}

// WaitProvided waits until the last DHT provide of model's servers key
// that Announce started has ended (at once if none is under way).
func (d *Directory) WaitProvided(ctx context.Context, model string) error {
	d.mu.Lock()
	var ch chan struct{}
	if md := d.models[model]; md != nil {
		ch = md.provideC
	}
	d.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Withdraw tells the swarm this node no longer serves model: it
// publishes a leaving record and stops handing out its own.
func (d *Directory) Withdraw(ctx context.Context, model string) error {
	md, err := d.join(model)
	if err != nil {
		return err
	}
	d.mu.Lock()
	had := md.own != nil
	var last ServerRecord
	if e, ok := md.recs[d.h.ID()]; ok {
		last = *e.rec
	}
	md.own = nil
	d.mu.Unlock()
	if !had {
		return nil
	}
	last.Model, last.State = model, StateLeaving
	if last.Span.Len() <= 0 {
		last.Span = Span{0, 1}
	}
	raw, rec, err := d.sign(md, last, d.cfg.RecordTTL)
	if err != nil {
		return err
	}
	d.merge(md, rec, raw)
	return d.publish(ctx, md, raw)
}

func (d *Directory) sign(md *modelDir, r ServerRecord, ttl time.Duration) ([]byte, *ServerRecord, error) {
	now := time.Now()
	d.mu.Lock()
	seq := max(md.ownSeq+1, uint64(now.UnixNano()))
	md.ownSeq = seq
	d.mu.Unlock()
	r.Seq = seq
	r.Expires = now.Add(ttl)
	r.Addrs = d.h.Addrs()
	if len(r.Addrs) > maxRecordAddrs {
		r.Addrs = r.Addrs[:maxRecordAddrs]
	}
	raw, err := SignRecord(&r, d.key)
	if err != nil {
		return nil, nil, err
	}
	return raw, &r, nil
}

func (d *Directory) publish(ctx context.Context, md *modelDir, raw []byte) error {
	if md.topic == nil {
		return nil
	}
	if err := md.topic.Publish(ctx, raw); err != nil {
		return fmt.Errorf("swarm: publish server record: %w", err)
	}
	return nil
}

// Close stops the directory: the handler, the subscriptions and every
// goroutine. It does not withdraw records; call Withdraw first for that.
func (d *Directory) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	models := d.models
	d.mu.Unlock()
	d.h.RemoveStreamHandler(p2p.ServersProtocol)
	d.cancel()
	for _, md := range models {
		if md.sub != nil {
			md.sub.Cancel()
			md.topic.Close()
			d.cfg.PubSub.UnregisterTopicValidator(TopicFor(md.model))
		}
	}
	d.wg.Wait()
	return nil
}
