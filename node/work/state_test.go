package work

import (
	"strings"
	"testing"
	"time"
)

// Several reasons at once: the state is the first by Words' order, the
// reason names them all, and the node works once the last is cleared.
func TestStateReasons(t *testing.T) {
	s := NewState()
	defer s.Close()
	ch, stop := s.Watch()
	defer stop()
	if snap := s.Snapshot(); snap.State != Working || !snap.Working() || snap.Reason == "" {
		t.Fatalf("new state: %+v", snap)
	}
	s.Suspend(Busy, "others use the CPU")
	<-ch
	s.Suspend(Paused, "paused by the volunteer")
	<-ch
	snap := s.Snapshot()
	if snap.State != Paused || len(snap.Suspensions) != 2 || snap.Suspensions[1].Word != Busy ||
		!strings.Contains(snap.Reason, "paused by the volunteer") || !strings.Contains(snap.Reason, "others use the CPU") {
		t.Fatalf("paused and busy: %+v", snap)
	}
	s.Suspend(Busy, "others use more") // again: a new reason, not a new suspension
	if !s.Clear(Paused) || s.Clear(Paused) {
		t.Fatal("Clear reports wrongly")
	}
	if snap := s.Snapshot(); snap.State != Busy || snap.Reason != "others use more" {
		t.Fatalf("busy alone: %+v", snap)
	}
	s.Clear(Busy)
	if !s.Working() {
		t.Fatal("not working with no reason left")
	}
	if c := s.Counts(); c[Busy] != 1 || c[Paused] != 1 {
		t.Fatalf("counts %v", c)
	}
	if w := s.CountedWords(); strings.Join(w, ",") != "busy,off-schedule,over-limit,paused" {
		t.Fatalf("counted words %v", w)
	}
}

// A suspension with an end clears itself then; suspending the word again
// without an end keeps it.
func TestStateUntil(t *testing.T) {
	s := NewState()
	defer s.Close()
	ch, stop := s.Watch()
	defer stop()
	s.SuspendUntil(Paused, "for a while", time.Now().Add(50*time.Millisecond))
	<-ch
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the pause did not end by itself")
	}
	if !s.Working() {
		t.Fatalf("after its end: %+v", s.Snapshot())
	}
	s.SuspendUntil(Paused, "for a while", time.Now().Add(50*time.Millisecond))
	s.Suspend(Paused, "until resumed")
	time.Sleep(150 * time.Millisecond)
	if s.Working() {
		t.Fatal("a pause made endless ended")
	}
}

func TestStateBadWord(t *testing.T) {
	for _, w := range []string{"", Working, "Paused", "over limit"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Suspend(%q) did not panic", w)
				}
			}()
			NewState().Suspend(w, "x")
		}()
	}
}
