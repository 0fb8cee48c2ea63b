package records

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	kb "github.com/libp2p/go-libp2p-kbucket"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	mh "github.com/multiformats/go-multihash"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/p2p/wire"
)

// log is the package's logger; --log-level info,records=debug turns it up.
var log = logging.Logger("records")

// Defaults of Config.
const (
	DefaultRecordTTL       = 3 * time.Minute
	DefaultLookupInterval  = 30 * time.Second
	DefaultLookupTimeout   = 10 * time.Second
	DefaultProvideInterval = time.Hour
)

// Bounds of the pull protocol and of lookups.
const (
	// MaxTopic bounds a topic's name (a model id, a job id).
	MaxTopic = 128
	// MaxRecordsPerAnswer bounds the records in one answer.
	MaxRecordsPerAnswer = 64
	maxLookupPeers      = 32
	lookupParallel      = 8
)

// ErrClosed is returned by a closed Directory.
var ErrClosed = errors.New("records: directory closed")

// Config configures a Directory. Zero durations take the defaults.
type Config struct {
	// Protocol is the pull protocol: ask a peer for the records it holds
	// for a topic (required).
	Protocol protocol.ID
	// Namespace prefixes the pubsub topic and the DHT key of every topic
	// ("/mycel/servers/"): see TopicName and ProviderKey.
	Namespace string
	// Routing finds the peers that provide a topic's key; nil: only
	// pubsub and the peers already known.
	Routing routing.ContentRouting
	// PubSub carries records as they change, on TopicName(topic); nil:
	// lookups only.
	PubSub *pubsub.PubSub
	// RecordTTL is the life of an announced record (at most the kind's
	// MaxTTL); announce again well before it ends.
	RecordTTL time.Duration
	// LookupInterval is how long Records answers from what it holds
	// before it asks the network again.
	LookupInterval time.Duration
	// LookupTimeout bounds one lookup, and one answer of the pull
	// protocol.
	LookupTimeout time.Duration
	// ProvideInterval is how often Announce provides a topic's key again.
	ProvideInterval time.Duration
}

// Directory holds the signed records of the peers in each of its topics:
// it announces this node's own and gathers the others', from three
// sources: the DHT (a peer with a record provides ProviderKey), the
// topic's pubsub topic (records pushed as they change) and the pull
// protocol (any node answers with the records it holds for a topic). Every
// record is opened and checked on arrival; a record replaces the one held
// for its peer only with a higher Seq; expired ones are dropped, and a
// leaving one removes its peer.
type Directory[T any, P Record[T]] struct {
	h    host.Host
	key  crypto.PrivKey
	kind *Kind[T, P]
	cfg  Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	topics  map[string]*topicDir[T, P]
	latency map[peer.ID]time.Duration
}

type entry[P any] struct {
	rec P
	raw []byte
}

// topicDir is what the directory holds for one topic.
type topicDir[T any, P Record[T]] struct {
	name     string
	topic    *pubsub.Topic
	sub      *pubsub.Subscription
	recs     map[peer.ID]entry[P]
	seqs     map[peer.ID]uint64 // highest Seq seen, leaving records included
	own      []byte             // this node's signed record, if it has one
	ownSeq   uint64
	looked   time.Time     // last lookup
	provided time.Time     // last DHT provide of the topic's key
	provideC chan struct{} // closed when the last provide ended
	watchers map[chan struct{}]struct{}
	greeting chan struct{} // closed when greet has returned
}

// New starts a directory of kind's records on h and registers the pull
// protocol's handler. h's peerstore must hold its private key (libp2p
// hosts do).
func New[T any, P Record[T]](h host.Host, kind *Kind[T, P], cfg Config) (*Directory[T, P], error) {
	key := h.Peerstore().PrivKey(h.ID())
	if key == nil {
		return nil, errors.New("records: directory: the host's private key is not in its peerstore")
	}
	if cfg.Protocol == "" {
		return nil, errors.New("records: directory: no protocol")
	}
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = DefaultRecordTTL
	}
	cfg.RecordTTL = min(cfg.RecordTTL, kind.MaxTTL)
	if cfg.LookupInterval <= 0 {
		cfg.LookupInterval = DefaultLookupInterval
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	if cfg.ProvideInterval <= 0 {
		cfg.ProvideInterval = DefaultProvideInterval
	}
	d := &Directory[T, P]{h: h, key: key, kind: kind, cfg: cfg,
		topics: map[string]*topicDir[T, P]{}, latency: map[peer.ID]time.Duration{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	h.SetStreamHandler(cfg.Protocol, d.handle)
	return d, nil
}

// Config returns the configuration in force.
func (d *Directory[T, P]) Config() Config { return d.cfg }

// ProviderKey is the DHT key under which the peers with a record of topic
// are providers: the CID (raw, sha2-256) of the SHA-256 of namespace and
// topic.
func ProviderKey(namespace, topic string) cid.Cid {
	sum := sha256.Sum256([]byte(namespace + topic))
	m, _ := mh.Encode(sum[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, m)
}

// ProviderKey is the DHT key of topic in this directory's namespace.
func (d *Directory[T, P]) ProviderKey(topic string) cid.Cid {
	return ProviderKey(d.cfg.Namespace, topic)
}

// TopicName is the pubsub topic of topic's records.
func (d *Directory[T, P]) TopicName(topic string) string { return d.cfg.Namespace + topic }

// join returns the topic's entry, creating it (and subscribing to its
// pubsub topic) on first use.
func (d *Directory[T, P]) join(topic string) (*topicDir[T, P], error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if td := d.topics[topic]; td != nil {
		return td, nil
	}
	if topic == "" || len(topic) > MaxTopic {
		return nil, fmt.Errorf("records: directory: bad topic %q", topic)
	}
	td := &topicDir[T, P]{name: topic, recs: map[peer.ID]entry[P]{}, seqs: map[peer.ID]uint64{}, watchers: map[chan struct{}]struct{}{}}
	if ps := d.cfg.PubSub; ps != nil {
		name := d.TopicName(topic)
		if err := ps.RegisterTopicValidator(name, d.validator(topic)); err != nil {
			return nil, fmt.Errorf("records: directory: topic %s: %w", name, err)
		}
		t, err := ps.Join(name)
		if err != nil {
			ps.UnregisterTopicValidator(name)
			return nil, fmt.Errorf("records: directory: join %s: %w", name, err)
		}
		sub, err := t.Subscribe()
		if err != nil {
			t.Close()
			ps.UnregisterTopicValidator(name)
			return nil, fmt.Errorf("records: directory: subscribe %s: %w", name, err)
		}
		evts, err := t.EventHandler()
		if err != nil {
			sub.Cancel()
			t.Close()
			ps.UnregisterTopicValidator(name)
			return nil, fmt.Errorf("records: directory: topic events %s: %w", name, err)
		}
		td.topic, td.sub, td.greeting = t, sub, make(chan struct{})
		d.wg.Go(func() { d.listen(td) })
		d.wg.Go(func() { d.greet(td, evts) })
	}
	d.topics[topic] = td
	return td, nil
}

// validator accepts a pubsub message that carries a well-formed record of
// topic signed by the message's author.
func (d *Directory[T, P]) validator(topic string) pubsub.Validator {
	return func(_ context.Context, _ peer.ID, m *pubsub.Message) bool {
		r, err := d.kind.Open(m.Data)
		if err != nil {
			log.Debug("rejected "+d.kind.Name, "from", m.GetFrom(), "err", err)
			return false
		}
		st := r.Stamp()
		return st.Peer == m.GetFrom() && r.Topic() == topic && st.Expires.Sub(time.Now()) <= d.kind.MaxTTL+time.Minute
	}
}

// listen merges the records that arrive on td's pubsub topic until the
// directory closes.
func (d *Directory[T, P]) listen(td *topicDir[T, P]) {
	for {
		m, err := td.sub.Next(d.ctx)
		if err != nil {
			return
		}
		if r, err := d.kind.Open(m.Data); err == nil {
			d.merge(td, r, m.Data)
		}
	}
}

// greet pulls the records of every peer that joins td's pubsub topic
// from it, until the directory closes. What a node publishes right after
// it joins a topic reaches only the peers whose subscriptions it has
// heard of, and the next announcement may be seconds away: the pull makes
// two nodes that join at the same moment know each other at once.
func (d *Directory[T, P]) greet(td *topicDir[T, P], evts *pubsub.TopicEventHandler) {
	defer close(td.greeting)
	defer evts.Cancel()
	for {
		ev, err := evts.NextPeerEvent(d.ctx)
		if err != nil {
			return
		}
		if ev.Type != pubsub.PeerJoin || ev.Peer == d.h.ID() {
			continue
		}
		d.wg.Go(func() {
			ctx, cancel := context.WithTimeout(d.ctx, d.cfg.LookupTimeout)
			defer cancel()
			raws, err := d.fetch(ctx, ev.Peer, td.name)
			if err != nil {
				log.Debug("pull "+d.kind.Name+"s from a peer that joined", "topic", td.name, "peer", ev.Peer, "err", err)
				return
			}
			for _, raw := range raws {
				if r, err := d.kind.Open(raw); err == nil {
					d.merge(td, r, raw)
				}
			}
		})
	}
}

// merge takes r (signed as raw) into td if it is newer than what td holds
// for its peer, and wakes the watchers when something changed.
func (d *Directory[T, P]) merge(td *topicDir[T, P], r P, raw []byte) bool {
	if r.Topic() != td.name {
		return false
	}
	st := r.Stamp()
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if st.Seq <= td.seqs[st.Peer] {
		return false
	}
	if !r.Leaving() && !d.kind.Valid(st, now) {
		return false
	}
	td.seqs[st.Peer] = st.Seq
	if r.Leaving() {
		delete(td.recs, st.Peer)
	} else {
		td.recs[st.Peer] = entry[P]{rec: r, raw: raw}
		if st.Peer != d.h.ID() && len(st.Addrs) > 0 {
			d.h.Peerstore().AddAddrs(st.Peer, st.Addrs, peerstore.TempAddrTTL)
		}
	}
	td.notify()
	return true
}

// forget drops what td holds from p (records from p's own mouth or a
// newer announcement bring it back).
func (d *Directory[T, P]) forget(td *topicDir[T, P], p peer.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := td.recs[p]; ok {
		delete(td.recs, p)
		td.notify()
	}
}

func (td *topicDir[T, P]) notify() {
	for ch := range td.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Watch returns a channel that receives a value (coalesced) whenever the
// records of topic change, and a function that stops the watch.
func (d *Directory[T, P]) Watch(topic string) (<-chan struct{}, func(), error) {
	td, err := d.join(topic)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	td.watchers[ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(td.watchers, ch)
		d.mu.Unlock()
	}, nil
}

// Known returns copies of the valid records the directory holds for
// topic, without asking the network, sorted by peer.
func (d *Directory[T, P]) Known(topic string) []T {
	d.mu.Lock()
	defer d.mu.Unlock()
	td := d.topics[topic]
	if td == nil {
		return nil
	}
	return d.valid(td, time.Now())
}

// Topics lists the topics the directory holds valid records for, sorted.
func (d *Directory[T, P]) Topics() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	now := time.Now()
	for name, td := range d.topics {
		if len(d.valid(td, now)) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// valid returns td's valid records, sorted by peer, and drops the expired
// ones. The caller holds d.mu.
func (d *Directory[T, P]) valid(td *topicDir[T, P], now time.Time) []T {
	var out []T
	for p, e := range td.recs {
		if !d.kind.Valid(e.rec.Stamp(), now) {
			delete(td.recs, p)
			continue
		}
		out = append(out, *e.rec)
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(P(&a).Stamp().Peer, P(&b).Stamp().Peer) })
	return out
}

// Records returns the valid records of topic. It asks the network
// (Lookup) when its last lookup is older than LookupInterval or it holds
// no record; otherwise it answers from what pubsub has kept up to date.
// looked says whether it asked.
func (d *Directory[T, P]) Records(ctx context.Context, topic string) (recs []T, looked bool, err error) {
	td, err := d.join(topic)
	if err != nil {
		return nil, false, err
	}
	d.mu.Lock()
	stale := time.Since(td.looked) > d.cfg.LookupInterval || len(d.valid(td, time.Now())) == 0
	d.mu.Unlock()
	if stale {
		if err := d.Lookup(ctx, topic); err != nil {
			return nil, false, err
		}
	}
	return d.Known(topic), stale, nil
}

// Lookup asks the network for topic's records: the DHT for the providers
// of its key, then each of them, the peers already known, the pubsub
// topic's peers and this node's neighbours (at most 32 peers, 8 at a time)
// for the records they hold. A peer that cannot be reached, or whose
// answer lacks its own record, is forgotten until it announces again. It
// fails only when the context is canceled; peers that do not answer are
// skipped.
func (d *Directory[T, P]) Lookup(ctx context.Context, topic string) error {
	td, err := d.join(topic)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.LookupTimeout)
	defer cancel()
	ask := map[peer.ID]bool{}
	d.mu.Lock()
	for p := range td.recs {
		ask[p] = true
	}
	d.mu.Unlock()
	if td.topic != nil {
		for _, p := range td.topic.ListPeers() {
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
		for ai := range r.FindProvidersAsync(ctx, d.ProviderKey(topic), maxLookupPeers) {
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
			raws, err := d.fetch(ctx, p, topic)
			if err != nil {
				// A peer that cannot be reached cannot serve: forget it
				// until it announces itself again.
				log.Debug(d.kind.Name+"s", "peer", p, "err", err)
				d.forget(td, p)
				return
			}
			self := false
			for _, raw := range raws {
				if r, err := d.kind.Open(raw); err == nil {
					self = self || r.Stamp().Peer == p
					d.merge(td, r, raw)
				}
			}
			if !self {
				// p speaks for itself: it has no record of the topic.
				d.forget(td, p)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("records: look up %s: %w", topic, err)
	}
	d.mu.Lock()
	td.looked = time.Now()
	d.mu.Unlock()
	return nil
}

// Latency is the last measured round trip to p, from a pull or else from
// the peerstore (0: never measured).
func (d *Directory[T, P]) Latency(p peer.ID) time.Duration {
	d.mu.Lock()
	l := d.latency[p]
	d.mu.Unlock()
	if l == 0 {
		l = d.h.Peerstore().LatencyEWMA(p)
	}
	return l
}

// fetch asks p for the records it holds for topic, and measures the round
// trip on the way. The request is the topic as a string; the answer a
// uvarint count (at most MaxRecordsPerAnswer) and that many records, each
// a uvarint length (at most the kind's MaxBytes) and the sealed bytes.
func (d *Directory[T, P]) fetch(ctx context.Context, p peer.ID, topic string) ([][]byte, error) {
	st, err := d.h.NewStream(ctx, p, d.cfg.Protocol)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	req := wire.AppendString(nil, topic)
	start := time.Now()
	if _, err := st.Write(req); err != nil {
		return nil, err
	}
	if err := st.CloseWrite(); err != nil {
		return nil, err
	}
	br := bufio.NewReader(st)
	n, err := wire.ReadBounded(br, "record count", 0, MaxRecordsPerAnswer)
	if err != nil {
		return nil, err
	}
	rtt := time.Since(start)
	d.mu.Lock()
	d.latency[p] = rtt
	d.mu.Unlock()
	out := make([][]byte, 0, n)
	for range n {
		b, err := wire.ReadFrame(br, d.kind.MaxBytes)
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// handle answers a pull: the records held for the topic asked for, this
// node's own first.
func (d *Directory[T, P]) handle(st network.Stream) {
	defer st.Close()
	st.SetDeadline(time.Now().Add(d.cfg.LookupTimeout))
	br := bufio.NewReader(io.LimitReader(st, MaxTopic+binary.MaxVarintLen64))
	b, err := wire.ReadFrame(br, MaxTopic)
	if err != nil {
		st.Reset()
		return
	}
	var raws [][]byte
	d.mu.Lock()
	if td := d.topics[string(b)]; td != nil {
		now := time.Now()
		if td.own != nil {
			raws = append(raws, td.own)
		}
		for p, e := range td.recs {
			if p != d.h.ID() && d.kind.Valid(e.rec.Stamp(), now) && len(raws) < MaxRecordsPerAnswer {
				raws = append(raws, e.raw)
			}
		}
	}
	d.mu.Unlock()
	out := wire.AppendUvarint(nil, uint64(len(raws)))
	for _, r := range raws {
		out = wire.AppendFrame(out, r)
	}
	if _, err := st.Write(out); err != nil {
		st.Reset()
	}
}

// Announce signs r as this node's record of r.Topic() (the stamp's Peer,
// Addrs, Seq and Expires are filled in), keeps it for the pull protocol,
// publishes it on the pubsub topic and, at most every ProvideInterval,
// provides the topic's key on the DHT. Call it again before RecordTTL
// ends.
func (d *Directory[T, P]) Announce(ctx context.Context, r P) error {
	topic := r.Topic()
	td, err := d.join(topic)
	if err != nil {
		return err
	}
	raw, rec, err := d.sign(td, r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	td.own = raw
	provide := d.cfg.Routing != nil && time.Since(td.provided) > d.cfg.ProvideInterval
	if provide {
		td.provided = time.Now()
	}
	d.mu.Unlock()
	d.merge(td, rec, raw)
	if provide {
		done := make(chan struct{})
		d.mu.Lock()
		td.provideC = done
		d.mu.Unlock()
		d.wg.Go(func() {
			defer close(done)
			pctx, cancel := context.WithTimeout(d.ctx, time.Minute)
			defer cancel()
			if err := d.cfg.Routing.Provide(pctx, d.ProviderKey(topic), true); err != nil && d.ctx.Err() == nil {
				// Alone (no peer in a routing table yet) is no fault:
				// the next announce tries again.
				level := slog.LevelWarn
				if errors.Is(err, kb.ErrLookupFailure) {
					level = slog.LevelDebug
				}
				log.Log(pctx, level, "provide "+d.kind.Name+" key", "topic", topic, "err", err)
				d.mu.Lock()
				td.provided = time.Time{}
				d.mu.Unlock()
			}
		})
	}
	return d.publish(ctx, td, raw)
}

// WaitProvided waits until the last DHT provide of topic's key that
// Announce started has ended (at once if none is under way).
func (d *Directory[T, P]) WaitProvided(ctx context.Context, topic string) error {
	d.mu.Lock()
	var ch chan struct{}
	if td := d.topics[topic]; td != nil {
		ch = td.provideC
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

// Withdraw tells the topic this node no longer has a record there: it
// publishes a leaving record (the kind's Leave of its last one) and stops
// handing out its own. Without an announced record it does nothing.
func (d *Directory[T, P]) Withdraw(ctx context.Context, topic string) error {
	td, err := d.join(topic)
	if err != nil {
		return err
	}
	d.mu.Lock()
	had := td.own != nil
	last := new(T)
	if e, ok := td.recs[d.h.ID()]; ok {
		*last = *e.rec
	}
	td.own = nil
	d.mu.Unlock()
	if !had {
		return nil
	}
	d.kind.Leave(last, topic)
	raw, rec, err := d.sign(td, last)
	if err != nil {
		return err
	}
	d.merge(td, rec, raw)
	return d.publish(ctx, td, raw)
}

// sign stamps a copy of r (the next Seq, an expiry RecordTTL ahead, the
// host's addresses) and seals it.
func (d *Directory[T, P]) sign(td *topicDir[T, P], r P) ([]byte, P, error) {
	now := time.Now()
	d.mu.Lock()
	seq := max(td.ownSeq+1, uint64(now.UnixNano()))
	td.ownSeq = seq
	d.mu.Unlock()
	rec := P(new(T))
	*rec = *r
	st := rec.Stamp()
	st.Seq = seq
	st.Expires = now.Add(d.cfg.RecordTTL)
	st.Addrs = d.h.Addrs()
	if len(st.Addrs) > d.kind.MaxAddrs {
		st.Addrs = st.Addrs[:d.kind.MaxAddrs]
	}
	rec.SetStamp(st)
	raw, err := d.kind.Seal(rec, d.key)
	if err != nil {
		return nil, nil, fmt.Errorf("records: %w", err)
	}
	return raw, rec, nil
}

func (d *Directory[T, P]) publish(ctx context.Context, td *topicDir[T, P], raw []byte) error {
	if td.topic == nil {
		return nil
	}
	if err := td.topic.Publish(ctx, raw); err != nil {
		return fmt.Errorf("records: publish %s: %w", d.kind.Name, err)
	}
	return nil
}

// Close stops the directory: the handler, the subscriptions and every
// goroutine. It does not withdraw records; call Withdraw first for that.
// It may be called more than once.
func (d *Directory[T, P]) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	topics := d.topics
	d.mu.Unlock()
	d.h.RemoveStreamHandler(d.cfg.Protocol)
	d.cancel()
	for _, td := range topics {
		if td.sub != nil {
			td.sub.Cancel()
			<-td.greeting // its event handler must be gone before the topic
			td.topic.Close()
			d.cfg.PubSub.UnregisterTopicValidator(d.TopicName(td.name))
		}
	}
	d.wg.Wait()
	return nil
}
