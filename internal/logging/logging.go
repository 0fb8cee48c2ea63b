// Package logging is the one structured logger of a Mycel process.
//
// Every record Mycel writes goes through one slog handler: those of its
// packages (Logger("swarm"), Logger("p2p"), ...), those of slog.Default
// and the standard log package, and those of the libraries it runs on:
// go-libp2p's subsystems (which log through gologshim) and kad-dht,
// bitswap and the datastores (which log through ipfs/go-log's zap
// loggers). The handler writes text or JSON lines to stderr and keeps the
// last records in a ring (Recent) that the node serves over its API.
//
// Levels are one setting (Setup, ParseLevels): a default level for
// Mycel's subsystems (info unless told), which the libraries' subsystems
// follow from error up only (LibraryFloor, their own default), so that
// their chatter stays out of a volunteer's terminal, and levels by
// subsystem that override both: "info,swarm=debug,dht=debug".
// MYCEL_LOG_LEVEL and MYCEL_LOG_FORMAT set them when the process starts;
// the mycel command's --log-level and --log-format set them again.
//
// Importing the package wires the libraries in (its init); it imports
// nothing of Mycel, so any package may import it.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// The environment variables read when the process starts.
const (
	EnvLevel  = "MYCEL_LOG_LEVEL"
	EnvFormat = "MYCEL_LOG_FORMAT"
)

// The formats of Config.Format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// SysKey is the attribute that names a record's subsystem.
const SysKey = "sys"

// RingSize is how many records Recent keeps.
const RingSize = 500

// LibraryFloor is the least level the libraries' subsystems write unless
// Levels.Sys names them: error, as go-libp2p and go-log do by default.
const LibraryFloor = slog.LevelError

// Levels say which records are written: those at or above the level of
// their subsystem. A subsystem of Mycel's takes Default; one of the
// libraries' takes Default, but never below LibraryFloor; Sys overrides
// both.
type Levels struct {
	Default slog.Level
	Sys     map[string]slog.Level
}

// level is the least level written for subsystem sys.
func (l *Levels) level(sys string, foreign bool) slog.Level {
	if v, ok := l.Sys[sys]; ok {
		return v
	}
	if foreign {
		return max(l.Default, LibraryFloor)
	}
	return l.Default
}

// foreignFloor is the least level any library subsystem writes.
func (l *Levels) foreignFloor() slog.Level {
	f := max(l.Default, LibraryFloor)
	for _, v := range l.Sys {
		f = min(f, v)
	}
	return f
}

// String is l as ParseLevels reads it.
func (l Levels) String() string {
	parts := []string{levelName(l.Default)}
	names := make([]string, 0, len(l.Sys))
	for s := range l.Sys {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		parts = append(parts, s+"="+levelName(l.Sys[s]))
	}
	return strings.Join(parts, ",")
}

// ParseLevel reads debug, info, warn (or warning) or error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

// ParseLevels reads LEVEL[,SYS=LEVEL...] ("info,swarm=debug"); the
// first LEVEL may be left out ("swarm=debug": info for the others). An
// empty s is info.
func ParseLevels(s string) (Levels, error) {
	l := Levels{Default: slog.LevelInfo}
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	for i, part := range strings.Split(s, ",") {
		sys, lv, ok := strings.Cut(part, "=")
		if !ok {
			if i > 0 {
				return l, fmt.Errorf("log level %q: only the first part may be a bare level; give the others as SUBSYSTEM=LEVEL", s)
			}
			v, err := ParseLevel(part)
			if err != nil {
				return l, err
			}
			l.Default = v
			continue
		}
		sys = strings.TrimSpace(sys)
		if sys == "" {
			return l, fmt.Errorf("log level %q: a subsystem's name is empty", s)
		}
		v, err := ParseLevel(lv)
		if err != nil {
			return l, fmt.Errorf("log level of %s: %w", sys, err)
		}
		if l.Sys == nil {
			l.Sys = map[string]slog.Level{}
		}
		l.Sys[sys] = v
	}
	return l, nil
}

// levelName is a level as ParseLevel reads it.
func levelName(l slog.Level) string {
	switch {
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warn"
	}
	return "error"
}

// Config is what Setup sets.
type Config struct {
	Levels Levels
	// Format is FormatText (key=value lines, the default) or FormatJSON
	// (one object a line).
	Format string
}

// root is the process's handler state, shared by every logger.
type root struct {
	mu     sync.Mutex // serializes Setup and SetOutput
	levels atomic.Pointer[Levels]
	floor  atomic.Int64 // Levels.foreignFloor
	format string       // under mu
	out    io.Writer    // under mu
	sink   atomic.Pointer[slog.Handler]
	ring   *Ring
}

var std = newRoot()

func newRoot() *root {
	r := &root{format: FormatText, out: os.Stderr, ring: NewRing(RingSize)}
	r.setLevels(Levels{Default: slog.LevelInfo})
	r.setSink()
	return r
}

func (r *root) setLevels(l Levels) {
	r.levels.Store(&l)
	r.floor.Store(int64(l.foreignFloor()))
}

// setSink makes the handler that writes r.out in r.format; r.mu is held
// (or r is not shared yet).
func (r *root) setSink() {
	// Levels are checked before the sink sees a record.
	opts := &slog.HandlerOptions{Level: slog.Level(-1 << 20)}
	var h slog.Handler
	if r.format == FormatJSON {
		h = slog.NewJSONHandler(r.out, opts)
	} else {
		h = slog.NewTextHandler(r.out, opts)
	}
	r.sink.Store(&h)
}

func (r *root) enabled(sys string, foreign bool, l slog.Level) bool {
	return l >= r.levels.Load().level(sys, foreign)
}

// Setup sets the levels and the format of every logger of the process,
// those made before included.
func Setup(c Config) error {
	switch c.Format {
	case "", FormatText, FormatJSON:
	default:
		return fmt.Errorf("log format %q: want text or json", c.Format)
	}
	std.mu.Lock()
	defer std.mu.Unlock()
	std.setLevels(c.Levels)
	setGologLevels(c.Levels)
	if c.Format == "" {
		c.Format = FormatText
	}
	std.format = c.Format
	std.setSink()
	return nil
}

// Current is the configuration in force.
func Current() Config {
	std.mu.Lock()
	defer std.mu.Unlock()
	return Config{Levels: *std.levels.Load(), Format: std.format}
}

// SetOutput makes the records go to w (os.Stderr until then) and returns
// where they went before. Writes to w are serialized.
func SetOutput(w io.Writer) io.Writer {
	std.mu.Lock()
	defer std.mu.Unlock()
	old := std.out
	std.out = w
	std.setSink()
	return old
}

// Recent is the ring of the process's last records.
func Recent() *Ring { return std.ring }

// Logger returns the logger of one of Mycel's subsystems: its records
// carry sys=name.
func Logger(sys string) *slog.Logger {
	return slog.New(&handler{r: std, sys: sys})
}

// handler is the slog.Handler of every logger: it checks the level of
// its subsystem, keeps the record in the ring and writes it out.
type handler struct {
	r       *root
	sys     string
	foreign bool        // a library's subsystem
	attrs   []slog.Attr // bound outside any group
	groups  []group     // open groups, outermost first
}

type group struct {
	name  string
	attrs []slog.Attr
}

var _ slog.Handler = (*handler)(nil)

func (h *handler) Enabled(_ context.Context, l slog.Level) bool {
	return h.r.enabled(h.sys, h.foreign, l)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	if c.foreign && len(c.groups) == 0 {
		// gologshim names the subsystem "logger".
		as = slices.DeleteFunc(slices.Clone(as), func(a slog.Attr) bool {
			if a.Key == "logger" {
				c.sys = a.Value.String()
				return true
			}
			return false
		})
	}
	if len(c.groups) == 0 {
		c.attrs = append(slices.Clip(c.attrs), as...)
		return &c
	}
	c.groups = slices.Clone(c.groups)
	last := &c.groups[len(c.groups)-1]
	last.attrs = append(slices.Clip(last.attrs), as...)
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(slices.Clip(c.groups), group{name: name})
	return &c
}

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	// The record's own attributes sit in the innermost open group.
	var inner []slog.Attr
	rec.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		inner = append(slices.Clone(g.attrs), inner...)
		if len(inner) > 0 {
			inner = []slog.Attr{{Key: g.name, Value: slog.GroupValue(inner...)}}
		}
	}
	attrs := make([]slog.Attr, 1, 1+len(h.attrs)+len(inner))
	attrs[0] = slog.String(SysKey, h.sys)
	attrs = append(attrs, h.attrs...)
	attrs = append(attrs, inner...)
	h.r.ring.add(rec.Time, rec.Level, h.sys, rec.Message, attrs[1:])
	if h.sys == "" {
		attrs = attrs[1:]
	}
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	out.AddAttrs(attrs...)
	return (*h.r.sink.Load()).Handle(ctx, out)
}
