package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestNodeAndStatus runs `mycel node` until cancelled and asks it for its
// status, as JSON and as text, through --api.
func TestNodeAndStatus(t *testing.T) {
	api := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var nodeErr bytes.Buffer
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"node", "--api", api, "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--dht", "server"})
		cmd.SetErr(&nodeErr)
		cmd.SetOut(&bytes.Buffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	var out string
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if out, _, err = mycel(t, "--api", api, "status", "--json"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st struct {
		ID    string   `json:"id"`
		Addrs []string `json:"addrs"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ID == "" || len(st.Addrs) == 0 {
		t.Fatalf("status --json: %q (%v)", out, err)
	}
	if !strings.HasSuffix(st.Addrs[0], "/p2p/"+st.ID) {
		t.Errorf("address %q does not end in /p2p/%s", st.Addrs[0], st.ID)
	}
	text, _, err := mycel(t, "--api", api, "status")
	if err != nil || !strings.Contains(text, st.ID) || !strings.Contains(text, "server mode") {
		t.Errorf("status: %q (%v)", text, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("node exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not stop after its context was cancelled")
	}
	if !strings.Contains(nodeErr.String(), "shutting down") {
		t.Errorf("node output: %q", nodeErr.String())
	}
	// With the node gone, status says how to start one.
	if _, _, err := mycel(t, "--api", api, "status"); err == nil || !strings.Contains(err.Error(), "mycel node") {
		t.Errorf("status without a node: %v", err)
	}
}
