package logging

import (
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
	"unicode/utf8"
)

// Record is a log record as the ring keeps it: its attributes turned
// into values that JSON encodes (strings, numbers, booleans, and maps
// for groups).
type Record struct {
	// Seq numbers the process's records from 1, in the order they were
	// written.
	Seq   uint64
	Time  time.Time
	Level slog.Level
	Sys   string // the subsystem ("" for slog.Default's records)
	Msg   string
	Attrs map[string]any
}

// maxValue bounds a string value kept in the ring, in bytes.
const maxValue = 1024

// Ring keeps the last records written, for a status page to show. It is
// safe for concurrent use.
type Ring struct {
	mu   sync.Mutex
	buf  []Record
	next uint64 // the Seq of the next record
}

// NewRing returns a ring that keeps the last n records (n ≥ 1).
func NewRing(n int) *Ring {
	return &Ring{buf: make([]Record, max(n, 1)), next: 1}
}

// Cap is how many records the ring keeps.
func (r *Ring) Cap() int { return len(r.buf) }

func (r *Ring) add(t time.Time, l slog.Level, sys, msg string, attrs []slog.Attr) {
	rec := Record{Time: t, Level: l, Sys: sys, Msg: clip(msg)}
	if len(attrs) > 0 {
		rec.Attrs = make(map[string]any, len(attrs))
		addAttrs(rec.Attrs, attrs)
	}
	r.mu.Lock()
	rec.Seq = r.next
	r.next++
	r.buf[(rec.Seq-1)%uint64(len(r.buf))] = rec
	r.mu.Unlock()
}

// Since returns the records kept whose Seq is above seq, oldest first. A
// reader that passes the last Seq it saw gets what came since; a gap
// before the first Seq returned means records fell out of the ring
// before it asked.
func (r *Ring) Since(seq uint64) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := uint64(1)
	if n := uint64(len(r.buf)); r.next > n {
		first = r.next - n
	}
	if seq >= r.next-1 {
		return nil // nothing after seq yet (seq+1 would overflow at the top)
	}
	first = max(first, seq+1)
	out := make([]Record, 0, r.next-first)
	for s := first; s < r.next; s++ {
		out = append(out, r.buf[(s-1)%uint64(len(r.buf))])
	}
	return out
}

func addAttrs(m map[string]any, attrs []slog.Attr) {
	for _, a := range attrs {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			g := v.Group()
			if len(g) == 0 {
				continue
			}
			if a.Key == "" { // inlined, as slog does
				addAttrs(m, g)
				continue
			}
			sub := make(map[string]any, len(g))
			addAttrs(sub, g)
			m[a.Key] = sub
			continue
		}
		if a.Key == "" {
			continue
		}
		m[a.Key] = value(v)
	}
}

// value is v as JSON encodes it; anything but a number or a boolean
// becomes its text, so that the ring holds no reference to what a caller
// may change.
func value(v slog.Value) any {
	switch v.Kind() {
	case slog.KindString:
		return clip(v.String())
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		if f := v.Float64(); !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
	case slog.KindBool:
		return v.Bool()
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		return clip(fmt.Sprint(v.Any())) // errors by Error, Stringers by String
	}
	return clip(v.String())
}

func clip(s string) string {
	if len(s) <= maxValue {
		return s
	}
	n := maxValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
