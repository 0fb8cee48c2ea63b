package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/work"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// The caps a volunteer sets on what the node may use (Config): compute
// threads, memory for served spans and training, disk for the block
// store, bandwidth up and down, and the bytes sent and received in a day.
//
// Threads bound every backend the node opens (openBackend): a served
// span's, a completion's, a training job's. Memory and disk are checked
// before the node takes a span (Serve) or pulls blocks (download), and
// refused with both numbers when they do not fit. Bandwidth is paced by
// the host (p2p.MaxUpload, p2p.MaxDownload). The daily transfer is
// counted from the host's traffic (transferMeter) and suspends the node's
// work, "over-limit", until local midnight once spent.

// threads is how many compute threads a backend that asks for want (0:
// every core) gets under the node's Threads cap.
func (n *Node) threads(want int) int {
	c := n.cfg.Threads
	if c <= 0 || (want > 0 && want <= c) {
		return want
	}
	return c
}

// openBackend opens a CPU backend for work of the node, with want threads
// bounded by the node's cap.
func (n *Node) openBackend(want int) (kernels.Backend, error) {
	return kernels.Open("cpu", n.threads(want))
}

// caps reports the node's caps and today's transfer.
func (n *Node) caps() api.Caps {
	c := api.Caps{Threads: n.cfg.Threads, Cores: runtime.NumCPU(), ServeMemory: n.cfg.ServeMemory,
		TrainMemory: n.cfg.TrainMemory, MaxUpload: n.cfg.MaxUpload, MaxDownload: n.cfg.MaxDownload,
		DailyTransfer: n.cfg.DailyTransfer}
	if n.transfer != nil {
		c.TransferToday, c.TransferResets = n.transfer.today()
	}
	return c
}

// layersFit is how many layers of a model fit the memory cap, each with
// its weights and a KV cache of the full context, and the block store's
// cap, each with its weights (a cap of 0 is none: math.MaxInt layers). A
// cap that holds no layer is an error that gives both numbers.
func layersFit(name, root string, memCap, storeCap, weights, kv int64) (int, error) {
	what := root
	if name != "" {
		what = name + " (" + root + ")"
	}
	fit := int64(math.MaxInt)
	if memCap > 0 {
		f := memCap / max(weights+kv, 1)
		if f < 1 {
			return 0, fmt.Errorf("a memory cap of %s (%d bytes; --serve-memory) holds no layer of %s: one layer takes %s (%d bytes: %s of weights and %s of KV cache for its full context)",
				units.FormatBytes(memCap), memCap, what, units.FormatBytes(weights+kv), weights+kv, units.FormatBytes(weights), units.FormatBytes(kv))
		}
		fit = min(fit, f)
	}
	if storeCap > 0 {
		f := storeCap / max(weights, 1)
		if f < 1 {
			return 0, fmt.Errorf("%w: the block store's cap of %s (%d bytes; --store-cap) holds no layer of %s: one layer's weights take %s (%d bytes)",
				blocks.ErrStoreFull, units.FormatBytes(storeCap), storeCap, what, units.FormatBytes(weights), weights)
		}
		fit = min(fit, f)
	}
	return int(fit), nil
}

// checkStoreRoom refuses a pull of root that needs more bytes than the
// block store's cap leaves, before it fetches anything.
func (n *Node) checkStoreRoom(root fmt.Stringer, need int64) error {
	limit := n.store.Cap()
	if limit <= 0 {
		return nil
	}
	used := n.store.Size()
	if used+need <= limit {
		return nil
	}
	return fmt.Errorf("pull %s: %w: it needs %s (%d bytes) more, and the block store holds %s of its %s cap (--store-cap), leaving %s (mycel store gc frees the blocks no kept model uses)",
		root, blocks.ErrStoreFull, units.FormatBytes(need), need, units.FormatBytes(used), units.FormatBytes(limit), units.FormatBytes(max(limit-used, 0)))
}

// capText shows a cap for a human: its size, or "none".
func capText(n int64) string {
	if n <= 0 {
		return "none"
	}
	return units.FormatBytes(n)
}

// suspender is what the daily transfer limit needs of the node's work
// state (work.State): to suspend the node's work under a word until a
// time, and to clear the word.
type suspender interface {
	SuspendUntil(word, reason string, until time.Time)
	Clear(word string) bool
}

// TransferFile keeps the bytes the node sent and received today, in the
// data directory, so that a restart goes on counting the same day.
const TransferFile = "transfer-today.json"

// transferCheck is how often the transfer meter reads the traffic.
const transferCheck = time.Second

// transferMeter counts the bytes the node's streams send and receive in
// each local day (midnight to midnight) and, given a limit, suspends the
// node's work once the day's bytes reach it, until the next midnight.
type transferMeter struct {
	limit int64
	total func() int64     // bytes in and out since the host started
	now   func() time.Time // time.Now; tests move it
	gate  suspender        // nil: count only
	path  string           // TransferFile's path; "": not kept

	mu   sync.Mutex
	day  time.Time // the local midnight that began the day counted
	base int64     // total() at the day's start, less the bytes carried from before a restart
	over bool      // the suspension is in force
}

// transferDay is TransferFile's content.
type transferDay struct {
	Day   string `json:"day"` // YYYY-MM-DD, local
	Bytes int64  `json:"bytes"`
}

// newTransferMeter starts counting today at total()'s current value plus
// what path kept of today, if anything.
func newTransferMeter(limit int64, total func() int64, gate suspender, path string, now func() time.Time) *transferMeter {
	if now == nil {
		now = time.Now
	}
	m := &transferMeter{limit: limit, total: total, gate: gate, path: path, now: now}
	m.day = midnight(now())
	m.base = total()
	if path != "" {
		if b, err := os.ReadFile(path); err == nil {
			var d transferDay
			if json.Unmarshal(b, &d) == nil && d.Day == m.day.Format(time.DateOnly) && d.Bytes > 0 {
				m.base -= d.Bytes
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			log.Warn("daily transfer: cannot read today's count; counting from zero", "file", path, "err", err)
		}
	}
	return m
}

// midnight is the local midnight that began t's day.
func midnight(t time.Time) time.Time {
	y, mo, d := t.Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, t.Location())
}

// nextMidnight is the local midnight that ends t's day.
func nextMidnight(t time.Time) time.Time {
	y, mo, d := t.Date()
	return time.Date(y, mo, d+1, 0, 0, 0, 0, t.Location())
}

// today returns the bytes of the day so far and when the day ends.
func (m *transferMeter) today() (int64, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	return m.total() - m.base, nextMidnight(m.day)
}

// rollLocked starts a new day when midnight has passed.
func (m *transferMeter) rollLocked() bool {
	now := m.now()
	if midnight(now).Equal(m.day) {
		return false
	}
	m.day, m.base = midnight(now), m.total()
	return true
}

// check counts the day's bytes and suspends or resumes the node's work.
func (m *transferMeter) check() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rollLocked()
	used := m.total() - m.base
	spent := m.limit > 0 && used >= m.limit
	switch {
	case spent && !m.over && m.gate != nil:
		end := nextMidnight(m.day)
		m.gate.SuspendUntil(work.OverLimit, fmt.Sprintf("the daily transfer limit is spent: %s sent and received since midnight, of %s a day (--daily-transfer); work resumes at midnight, %s (in %s)",
			units.FormatBytes(used), units.FormatBytes(m.limit), end.Format("Mon 15:04 MST"), time.Until(end).Round(time.Minute)), end)
		m.over = true
		log.Warn("daily transfer limit spent: work suspended until midnight", "bytes", used, "limit", m.limit, "resumes", end)
	case !spent && m.over:
		// A new day (the suspension ended at midnight by itself; clear it
		// in case the clock moved otherwise).
		m.gate.Clear(work.OverLimit)
		m.over = false
		log.Info("daily transfer: a new day, work resumes")
	}
}

// save writes the day's bytes to the meter's file.
func (m *transferMeter) save() error {
	if m.path == "" {
		return nil
	}
	m.mu.Lock()
	m.rollLocked()
	d := transferDay{Day: m.day.Format(time.DateOnly), Bytes: m.total() - m.base}
	m.mu.Unlock()
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := writeFileSynced(m.path, b); err != nil {
		return fmt.Errorf("node: keep today's transfer: %w", err)
	}
	return nil
}

// transferSave is how often the meter writes the day's bytes to disk.
const transferSave = time.Minute

// run checks the meter every transferCheck and saves it every
// transferSave, until ctx ends; it saves once more on the way out.
func (m *transferMeter) run(ctx context.Context) {
	check := time.NewTicker(transferCheck)
	defer check.Stop()
	save := time.NewTicker(transferSave)
	defer save.Stop()
	defer func() {
		if err := m.save(); err != nil {
			log.Warn("daily transfer", "err", err)
		}
	}()
	for {
		m.check()
		select {
		case <-ctx.Done():
			return
		case <-check.C:
		case <-save.C:
			if err := m.save(); err != nil {
				log.Warn("daily transfer", "err", err)
			}
		}
	}
}

// startTransferMeter counts the node's daily transfer from its host's
// traffic, suspending gate's work once the day's limit is spent (gate may
// be nil: count only), until the node closes.
func (n *Node) startTransferMeter(gate suspender) {
	t := n.host.Traffic()
	if t == nil {
		return
	}
	total := func() int64 {
		s := t.GetBandwidthTotals()
		return s.TotalIn + s.TotalOut
	}
	n.transfer = newTransferMeter(n.cfg.DailyTransfer, total, gate, filepath.Join(n.cfg.DataDir, TransferFile), nil)
	n.wg.Go(func() { n.transfer.run(n.ctx) })
}
