// Package work decides when a volunteer's node works. A State is
// working, or suspended for one or more reasons at once, each named by a
// word: the volunteer paused it (Paused), other programs use the CPU and
// the node runs idle-only (Busy), the hour is outside the weekly
// Schedule (OffSchedule), the day's transfer limit is spent (OverLimit).
// Whoever suspends the node with a word clears that word again; the node
// works once no word is left. The node watches the State (Watch) and
// drains or resumes its work as it changes.
//
// A Schedule is the weekly hours the volunteer gives (ParseSchedule), and
// CPU measures the share of the machine's CPU that other programs use
// (Linux only).
package work

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// The words of a State. Working is the state with no suspension; the
// others name why the node does not work. Other words may be used: any
// lower-case word of letters and '-'.
const (
	Working     = "working"
	Paused      = "paused"
	Busy        = "busy"
	OffSchedule = "off-schedule"
	OverLimit   = "over-limit"
)

// Words are the known words, in the order a State reports them when
// several hold at once: the first is the state.
var Words = []string{Working, Paused, OverLimit, OffSchedule, Busy}

// Suspension is one reason the node does not work.
type Suspension struct {
	Word   string
	Reason string // a sentence for a human
	Since  time.Time
	// Until is when the suspension ends by itself (zero: when cleared).
	Until time.Time
}

// Snapshot is a State at one moment.
type Snapshot struct {
	// State is Working, or the word of the first suspension.
	State string
	// Reason says in a sentence why the node works or not, naming every
	// suspension.
	Reason string
	// Since is when the node last started or stopped working.
	Since time.Time
	// Suspensions are the reasons in force, in the order of Words
	// (unknown words last, by name).
	Suspensions []Suspension
}

// Working reports whether the snapshot is of a working node.
func (s Snapshot) Working() bool { return len(s.Suspensions) == 0 }

// State is a node's work state. It is safe for concurrent use; its zero
// value is not: make one with NewState.
type State struct {
	mu       sync.Mutex
	susp     map[string]*Suspension
	timers   map[string]*time.Timer // of the suspensions with an Until
	counts   map[string]int64       // suspensions begun, by word
	since    time.Time
	watchers map[chan struct{}]struct{}
	closed   bool
}

// NewState returns a working State.
func NewState() *State {
	return &State{susp: map[string]*Suspension{}, timers: map[string]*time.Timer{},
		counts: map[string]int64{}, since: time.Now(), watchers: map[chan struct{}]struct{}{}}
}

// validWord panics on a word that is not lower-case letters and '-', or
// is Working: a caller's bug.
func validWord(word string) {
	ok := word != "" && word != Working
	for _, r := range word {
		if (r < 'a' || r > 'z') && r != '-' {
			ok = false
		}
	}
	if !ok {
		panic(fmt.Sprintf("work: %q is not a suspension word", word))
	}
}

// Suspend suspends the node's work for word, with reason, until Clear
// clears word. A word already in force keeps its Since and takes the new
// reason (and loses any Until).
func (s *State) Suspend(word, reason string) { s.SuspendUntil(word, reason, time.Time{}) }

// SuspendUntil is Suspend, ending by itself at until (a zero until: at
// Clear only).
func (s *State) SuspendUntil(word, reason string, until time.Time) {
	validWord(word)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	was := len(s.susp) == 0
	e := s.susp[word]
	if e == nil {
		e = &Suspension{Word: word, Since: time.Now()}
		s.susp[word] = e
		s.counts[word]++
	}
	e.Reason, e.Until = reason, until
	if t := s.timers[word]; t != nil {
		t.Stop()
		delete(s.timers, word)
	}
	if !until.IsZero() {
		var t *time.Timer
		t = time.AfterFunc(time.Until(until), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.timers[word] == t { // not replaced meanwhile
				s.clearLocked(word)
			}
		})
		s.timers[word] = t
	}
	if was {
		s.since = e.Since
	}
	s.notifyLocked()
}

// Clear ends the suspension for word; it reports whether there was one.
func (s *State) Clear(word string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clearLocked(word)
}

func (s *State) clearLocked(word string) bool {
	if _, ok := s.susp[word]; !ok {
		return false
	}
	delete(s.susp, word)
	if t := s.timers[word]; t != nil {
		t.Stop()
		delete(s.timers, word)
	}
	if len(s.susp) == 0 {
		s.since = time.Now()
	}
	s.notifyLocked()
	return true
}

// Working reports whether no suspension is in force.
func (s *State) Working() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.susp) == 0
}

// Has reports whether word is in force.
func (s *State) Has(word string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.susp[word] != nil
}

// Snapshot returns the state as it is now.
func (s *State) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{State: Working, Since: s.since}
	for _, e := range s.susp {
		snap.Suspensions = append(snap.Suspensions, *e)
	}
	slices.SortFunc(snap.Suspensions, func(a, b Suspension) int {
		ra, rb := rank(a.Word), rank(b.Word)
		if ra != rb {
			return ra - rb
		}
		return strings.Compare(a.Word, b.Word)
	})
	if len(snap.Suspensions) == 0 {
		snap.Reason = "nothing holds the node back"
		return snap
	}
	snap.State = snap.Suspensions[0].Word
	var parts []string
	for _, e := range snap.Suspensions {
		parts = append(parts, e.Reason)
	}
	snap.Reason = strings.Join(parts, "; ")
	return snap
}

func rank(word string) int {
	if i := slices.Index(Words, word); i >= 0 {
		return i
	}
	return len(Words)
}

// Counts returns how many suspensions began, by word (a word suspended
// again while in force counts once).
func (s *State) Counts() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.counts))
	for w, n := range s.counts {
		out[w] = n
	}
	return out
}

// CountedWords are the words Counts knows, sorted, with the known Words
// (but Working) among them even before their first suspension.
func (s *State) CountedWords() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for _, w := range Words[1:] {
		set[w] = true
	}
	for w := range s.counts {
		set[w] = true
	}
	out := make([]string, 0, len(set))
	for w := range set {
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

// Watch returns a channel that receives after every change (changes
// that come together may arrive as one), and a function that stops the
// watch.
func (s *State) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}
}

func (s *State) notifyLocked() {
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Close stops the timers of the suspensions with an end; the State
// changes no more.
func (s *State) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for w, t := range s.timers {
		t.Stop()
		delete(s.timers, w)
	}
}
