package p2p

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// A private swarm is a set of nodes that share a 32-byte key: every
// connection among them is encrypted with it beneath the security handshake
// (libp2p's private networks, XSalsa20 keyed by the shared key), so a node
// without the key cannot connect to them at all, nor they to it. Their DHT,
// pubsub, models and jobs are then theirs alone. The key file is libp2p's
// (and IPFS's) swarm key format:
//
//	/key/swarm/psk/1.0.0/
//	/base16/
//	64 hex digits
//
// QUIC encrypts its packets itself and cannot carry the key: a private
// swarm runs over TCP only.

// SwarmKeySize is the length in bytes of a private swarm's key.
const SwarmKeySize = 32

// swarmKeyHeader is the first line of a swarm key file.
const swarmKeyHeader = "/key/swarm/psk/1.0.0/"

// maxSwarmKeyFile bounds the bytes read from a swarm key file: the format
// takes about a hundred.
const maxSwarmKeyFile = 4 << 10

// ErrBadSwarmKey is wrapped by the errors of a swarm key that does not parse.
var ErrBadSwarmKey = errors.New("not a swarm key")

// NewSwarmKey returns a fresh random key for a private swarm.
func NewSwarmKey() ([]byte, error) {
	key := make([]byte, SwarmKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("p2p: swarm key: %w", err)
	}
	return key, nil
}

// EncodeSwarmKey is key in the swarm key file format (base16).
func EncodeSwarmKey(key []byte) []byte {
	return fmt.Appendf(nil, "%s\n/base16/\n%s\n", swarmKeyHeader, hex.EncodeToString(key))
}

// ParseSwarmKey reads a key in the swarm key file format: the header line,
// the encoding line (/base16/, /base64/ or /bin/), then the key, which must
// be exactly 32 bytes; in the text encodings only white space may follow,
// so a file cut or pasted wrong does not pass as another key.
func ParseSwarmKey(data []byte) ([]byte, error) {
	bad := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("%w: %s (want the three lines %s, /base16/ and 64 hex digits, as mycel swarm key writes them)",
			ErrBadSwarmKey, fmt.Sprintf(format, args...), swarmKeyHeader)
	}
	if len(data) > maxSwarmKeyFile {
		return bad("%d bytes, where a swarm key file holds about 100", len(data))
	}
	header, rest, _ := bytes.Cut(data, []byte("\n"))
	if h := string(bytes.TrimRight(header, "\r")); h != swarmKeyHeader {
		return bad("first line %.40q", h)
	}
	enc, rest, _ := bytes.Cut(rest, []byte("\n"))
	var key []byte
	var err error
	switch e := string(bytes.TrimRight(enc, "\r")); e {
	case "/base16/":
		key, err = hex.DecodeString(string(bytes.TrimSpace(rest)))
	case "/base64/":
		key, err = base64.StdEncoding.DecodeString(string(bytes.TrimSpace(rest)))
	case "/bin/":
		key = rest
	default:
		return bad("encoding %.40q", e)
	}
	switch {
	case err != nil:
		return bad("the key: %v", err)
	case len(key) != SwarmKeySize:
		return bad("a key of %d bytes, not %d", len(key), SwarmKeySize)
	case bytes.Equal(key, make([]byte, SwarmKeySize)):
		return bad("the key is all zeros")
	}
	return bytes.Clone(key), nil
}

// ReadSwarmKey reads a private swarm's key from the file at path.
func ReadSwarmKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: swarm key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSwarmKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("p2p: swarm key %s: %w", path, err)
	}
	key, err := ParseSwarmKey(data)
	if err != nil {
		return nil, fmt.Errorf("p2p: swarm key %s: %w", path, err)
	}
	return key, nil
}

// SwarmKeyID names a private swarm without giving its key away: the first
// 8 bytes of SHA-256 over a tag and the key, in hex. Nodes show it so that
// their owners can see that they share a key.
func SwarmKeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("mycel-swarm-key\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// SwarmKey makes the node a member of the private swarm of key (32 bytes,
// as ReadSwarmKey returns it): it connects only to nodes that hold the same
// key. QUIC is off (it cannot carry the key); a QUIC listen address is
// refused. The node announces itself on the LAN under a service name of the
// swarm's own, so that it does not try the public swarm's nodes there.
func SwarmKey(key []byte) Option {
	return func(c *config) error {
		if len(key) != SwarmKeySize {
			return fmt.Errorf("p2p: swarm key of %d bytes, want %d", len(key), SwarmKeySize)
		}
		c.psk = pnet.PSK(bytes.Clone(key))
		c.noQUIC = true
		return c.markHostOpt("SwarmKey")
	}
}

// mdnsService is the DNS-SD service name the node announces on the LAN:
// MDNSServiceName, or in a private swarm one named after its key's ID.
func mdnsService(psk pnet.PSK) string {
	if psk == nil {
		return MDNSServiceName
	}
	return "_mycel-" + SwarmKeyID(psk) + "._udp"
}
