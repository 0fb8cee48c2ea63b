package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// statusState reads the work state of the node at addr with mycel status
// --json.
func statusState(t *testing.T, addr, data string) (state, reason string) {
	t.Helper()
	out, _, err := mycel(t, "--api", addr, "--data", data, "status", "--json")
	if err != nil {
		t.Fatalf("status --json: %v", err)
	}
	var st struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %q: %v", out, err)
	}
	return st.State, st.Reason
}

// mycel node pause and resume act on a running node, which mycel status
// shows; a pause --for ends by itself; bad durations are refused, named.
func TestNodePauseResume(t *testing.T) {
	addr, data := startNodeOn(t, freeAddr(t))
	if st, _ := statusState(t, addr, data); st != "working" {
		t.Fatalf("a new node's state is %q, want working", st)
	}
	out, _, err := mycel(t, "--api", addr, "--data", data, "node", "pause")
	if err != nil || !strings.HasPrefix(out, "paused\n") || !strings.Contains(out, "mycel node resume") {
		t.Fatalf("node pause: %q (%v)", out, err)
	}
	st, reason := statusState(t, addr, data)
	if st != "paused" || !strings.Contains(reason, "paused by the volunteer") {
		t.Fatalf("after pause: %q, %q", st, reason)
	}
	text, _, err := mycel(t, "--api", addr, "--data", data, "status")
	if err != nil || !strings.Contains(text, "work      paused: paused by the volunteer") {
		t.Errorf("status: %q (%v)", text, err)
	}
	out, _, err = mycel(t, "--api", addr, "--data", data, "node", "resume")
	if err != nil || out != "working\n" {
		t.Fatalf("node resume: %q (%v)", out, err)
	}
	if st, _ := statusState(t, addr, data); st != "working" {
		t.Fatalf("after resume: %q", st)
	}

	// --for: paused, then working again by itself.
	start := time.Now()
	out, _, err = mycel(t, "--api", addr, "--data", data, "node", "pause", "--for", "1s")
	if err != nil || !strings.HasPrefix(out, "paused\n") || !strings.Contains(out, "until") {
		t.Fatalf("node pause --for 1s: %q (%v)", out, err)
	}
	if st, _ := statusState(t, addr, data); st != "paused" && time.Since(start) < time.Second {
		t.Fatalf("right after pause --for 1s: %q", st)
	}
	for st, _ := statusState(t, addr, data); st != "working"; st, _ = statusState(t, addr, data) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the pause --for 1s still holds after %s: %q", time.Since(start), st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("the pause --for 1s ended after %s", d)
	}

	if _, _, err := mycel(t, "--api", addr, "--data", data, "node", "pause", "--for", "soon"); err == nil || !strings.Contains(err.Error(), "soon") {
		t.Errorf("pause --for soon: %v", err)
	}
	if _, _, err := mycel(t, "--api", addr, "--data", data, "node", "pause", "--for", "-1h"); err == nil || !strings.Contains(err.Error(), "--for") {
		t.Errorf("pause --for -1h: %v", err)
	}
}

// A node started --paused stays paused until resumed; a bad --schedule
// stops it from starting, with the part that is wrong named.
func TestNodeStartsPaused(t *testing.T) {
	addr, data := startNodeOn(t, freeAddr(t), "--paused")
	if st, reason := statusState(t, addr, data); st != "paused" || !strings.Contains(reason, "--paused") {
		t.Fatalf("a node started --paused: %q, %q", st, reason)
	}
	if out, _, err := mycel(t, "--api", addr, "--data", data, "node", "resume"); err != nil || out != "working\n" {
		t.Fatalf("node resume: %q (%v)", out, err)
	}
	_, _, err := mycel(t, "node", "--api", freeAddr(t), "--data", t.TempDir(), "--no-mdns", "--schedule", "mon-fri 18:00-8")
	if err == nil || !strings.Contains(err.Error(), `"8" is not a time HH:MM`) {
		t.Fatalf("a bad --schedule: %v", err)
	}
}
