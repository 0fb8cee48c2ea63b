package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/p2p"
)

// A private swarm as its users make one: mycel swarm key writes a key
// file, two nodes started with it join each other and show the swarm's
// ID, and a node without the key, told to join through them, connects to
// neither. A key file that does not parse stops the node, naming it.
func TestPrivateSwarmNodes(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "swarm.key")
	_, stderr, err := mycel(t, "swarm", "key", "-o", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := p2p.ReadSwarmKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	id := p2p.SwarmKeyID(key)
	if !strings.Contains(stderr, id) {
		t.Errorf("swarm key printed %q, want the swarm's ID %s", stderr, id)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if _, _, err := mycel(t, "swarm", "key", "-o", keyFile); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a second key over the first: %v", err)
	}
	if again, _ := p2p.ReadSwarmKey(keyFile); !slices.Equal(again, key) {
		t.Error("the key file changed")
	}
	out, _, err := mycel(t, "swarm", "key")
	if k, perr := p2p.ParseSwarmKey([]byte(out)); err != nil || perr != nil || slices.Equal(k, key) {
		t.Errorf("swarm key to stdout: %v, %v (same key as before: %v)", err, perr, slices.Equal(k, key))
	}

	a := startNodeCmd(t, "--swarm-key", keyFile)
	sa := statusOf(t, a)
	if sa.PrivateSwarm != id {
		t.Errorf("status: private swarm %q, want %q", sa.PrivateSwarm, id)
	}
	if text, _, err := mycel(t, "--api", a, "status"); err != nil || !strings.Contains(text, "private "+id) {
		t.Errorf("status: %q, %v; want the private swarm named", text, err)
	}
	b := startNodeCmd(t, "--swarm-key", keyFile, "--bootstrap", sa.Addrs[0])
	public := startNodeCmd(t, "--bootstrap", sa.Addrs[0])
	sb := statusOf(t, b)
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(sb.Peers, sa.ID); sb = statusOf(t, b) {
		if time.Now().After(deadline) {
			t.Fatalf("the second node of the private swarm has peers %v, not the first %s", sb.Peers, sa.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sb.PrivateSwarm != id {
		t.Errorf("second node: private swarm %q, want %q", sb.PrivateSwarm, id)
	}
	// The public node tried its bootstrap peer at start; give it a moment
	// more, then neither side may have the other.
	time.Sleep(time.Second)
	if sp := statusOf(t, public); len(sp.Peers) != 0 || sp.PrivateSwarm != "" {
		t.Errorf("the node without the key: peers %v, private swarm %q", sp.Peers, sp.PrivateSwarm)
	}
	if sa := statusOf(t, a); slices.Contains(sa.Peers, statusOf(t, public).ID) {
		t.Error("the first node of the private swarm has the node without the key as a peer")
	}

	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("/key/swarm/psk/1.0.0/\n/base16/\n1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = mycel(t, "node", "--api", freeAddr(t), "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--swarm-key", bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "not a swarm key") {
		t.Errorf("a node with a bad key file: %v", err)
	}
}
