package p2p

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func testSwarmKey(t testing.TB) []byte {
	t.Helper()
	k, err := NewSwarmKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Nodes of a private swarm reach each other and talk; a node of another
// private swarm, or of the public one, cannot connect to them either way.
func TestPrivateSwarm(t *testing.T) {
	key, other := testSwarmKey(t), testSwarmKey(t)
	a := newTestHost(t, SwarmKey(key))
	b := newTestHost(t, SwarmKey(key))
	stranger := newTestHost(t, SwarmKey(other))
	public := newTestHost(t)
	if got, want := a.PrivateSwarm(), SwarmKeyID(key); got != want || got == "" {
		t.Errorf("PrivateSwarm() = %q, want %q", got, want)
	}
	if public.PrivateSwarm() != "" || stranger.PrivateSwarm() == a.PrivateSwarm() {
		t.Errorf("swarm IDs: public %q, other key %q, ours %q", public.PrivateSwarm(), stranger.PrivateSwarm(), a.PrivateSwarm())
	}

	const proto = protocol.ID("/mycel/test/echo/1")
	b.Libp2p().SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatalf("a node of the private swarm to another: %v", err)
	}
	s, err := a.Libp2p().NewStream(ctx, b.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("within the swarm")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}

	// The dials that fail: each either refused at once or left hanging
	// in the handshake until its deadline; all at once, to bound the time.
	cases := []struct {
		name     string
		from, to *Host
	}{
		{"another private swarm's node to ours", stranger, a},
		{"ours to another private swarm's", a, stranger},
		{"a public node to ours", public, a},
		{"ours to a public node", a, public},
	}
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() {
			dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
			defer dcancel()
			errs[i] = c.from.Connect(dctx, c.to.AddrInfo())
		})
	}
	wg.Wait()
	for i, c := range cases {
		if errs[i] == nil {
			t.Errorf("%s: connected", c.name)
		}
		if n := len(c.to.Libp2p().Network().ConnsToPeer(c.from.ID())); n != 0 {
			t.Errorf("%s: %d connections", c.name, n)
		}
	}
}

// A private swarm runs over TCP only: QUIC cannot carry its key, so the
// default addresses leave it out and a QUIC address given is refused.
func TestPrivateSwarmRefusesQUIC(t *testing.T) {
	key := testSwarmKey(t)
	_, err := New(SwarmKey(key), ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), NoNAT(), NoRelay(), NoMDNS(), MemoryDatastore())
	if err == nil || !strings.Contains(err.Error(), "TCP only") {
		t.Errorf("a QUIC listen address in a private swarm: %v", err)
	}
	h := newTestHost(t, SwarmKey(key))
	for _, a := range h.Addrs() {
		if isQUIC(a) {
			t.Errorf("a private node listens on %s", a)
		}
	}
	if _, err := New(SwarmKey(key[:16])); err == nil {
		t.Error("a 16-byte swarm key taken")
	}
	if got, want := mdnsService(key), "_mycel-"+SwarmKeyID(key)+"._udp"; got != want {
		t.Errorf("mDNS service of a private swarm %q, want %q", got, want)
	}
	if mdnsService(nil) != MDNSServiceName {
		t.Errorf("mDNS service of the public swarm %q", mdnsService(nil))
	}
}

// A key written by EncodeSwarmKey reads back; so do the other encodings of
// the format. Keys cut short, too long, of another format, of zeros, or
// followed by more text are refused, saying what is wrong.
func TestSwarmKeyFile(t *testing.T) {
	key := testSwarmKey(t)
	path := filepath.Join(t.TempDir(), "swarm.key")
	if err := os.WriteFile(path, EncodeSwarmKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSwarmKey(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadSwarmKey: %x, %v; want %x", got, err, key)
	}
	for name, data := range map[string]string{
		"base64":       swarmKeyHeader + "\n/base64/\n" + base64.StdEncoding.EncodeToString(key) + "\n",
		"bin":          swarmKeyHeader + "\n/bin/\n" + string(key),
		"CRLF":         strings.ReplaceAll(string(EncodeSwarmKey(key)), "\n", "\r\n"),
		"no last line": strings.TrimSuffix(string(EncodeSwarmKey(key)), "\n"),
	} {
		got, err := ParseSwarmKey([]byte(data))
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: %x, %v; want %x", name, got, err, key)
		}
	}

	enc := string(EncodeSwarmKey(key))
	for name, c := range map[string]struct{ data, says string }{
		"empty":          {"", "first line"},
		"other header":   {strings.Replace(enc, "1.0.0", "2.0.0", 1), "first line"},
		"other encoding": {strings.Replace(enc, "base16", "base32", 1), "encoding"},
		"cut short":      {enc[:len(enc)-9], "key of 28 bytes"},
		"too long":       {strings.TrimSpace(enc) + "00\n", "key of 33 bytes"},
		"odd digit":      {strings.TrimSpace(enc) + "0\n", "the key"},
		"not hex":        {strings.Replace(enc, enc[len(enc)-3:len(enc)-1], "zz", 1), "the key"},
		"more after":     {enc + "and more\n", "the key"},
		"zeros":          {string(EncodeSwarmKey(make([]byte, SwarmKeySize))), "all zeros"},
		"huge":           {enc + strings.Repeat(" ", maxSwarmKeyFile), "bytes"},
	} {
		_, err := ParseSwarmKey([]byte(c.data))
		if !errors.Is(err, ErrBadSwarmKey) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want ErrBadSwarmKey saying %q", name, err, c.says)
		}
	}
	if _, err := ReadSwarmKey(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("a missing file: %v", err)
	}
}

func FuzzParseSwarmKey(f *testing.F) {
	f.Add(EncodeSwarmKey(bytes.Repeat([]byte{7}, SwarmKeySize)))
	f.Add([]byte(swarmKeyHeader + "\n/base64/\n" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, SwarmKeySize))))
	f.Add([]byte(swarmKeyHeader + "\n/bin/\n" + strings.Repeat("k", SwarmKeySize)))
	f.Add([]byte(swarmKeyHeader + "\n/base16/\nabc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseSwarmKey(data)
		if err != nil {
			if !errors.Is(err, ErrBadSwarmKey) {
				t.Fatalf("error %v does not wrap ErrBadSwarmKey", err)
			}
			return
		}
		if len(key) != SwarmKeySize {
			t.Fatalf("a key of %d bytes", len(key))
		}
		again, err := ParseSwarmKey(EncodeSwarmKey(key))
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("round trip: %x, %v; want %x", again, err, key)
		}
	})
}
