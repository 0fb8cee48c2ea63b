package p2p

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/mycel-net/mycel/internal/filelock"
)

// libp2p binds its listeners with SO_REUSEPORT (the TCP transport, for hole
// punching). A second node on a machine, started on a port the first one
// already holds, would then share it without a word: the kernel hands each
// incoming connection to either node at random, and both announce the same
// addresses, so each takes the other's for its own ("dial to self"). So the
// ports are checked first, with plain sockets, which the kernel refuses
// where another socket holds the port. Nodes started at the same moment
// would all find the port free before any of them binds it: so each node
// also claims its ports among the nodes of the machine, with an exclusive
// lock on a file named after the port in the system's temporary directory,
// held until the host closes (the system drops it if the process dies).

// checkPorts makes the listen addresses ones no other program on this
// machine holds, and returns the claims taken on them, for the host to
// release when it closes. With the default addresses a held DefaultPort
// gives way to ports the system picks (every address moves, so that TCP and
// QUIC stay together); a listen address given outright on a held port is
// refused.
func (c *config) checkPorts() ([]*os.File, error) {
	claims, err := claimFree(c.listenAddrs)
	switch {
	case err == nil:
		return claims, nil
	case c.defaultListen:
		log.Warn("default port held by another program on this machine (another node?); listening on ports the system picks",
			"port", c.port(), "err", err)
		c.listenAddrs = defaultListenAddrs(c.loopback, !c.noQUIC, 0)
		return nil, nil
	}
	return nil, fmt.Errorf("p2p: listen addresses %v: %w (another node on this machine? give this one another port, or port 0 for one the system picks)", c.listenAddrs, err)
}

// claimFree claims the ports of addrs (claimPorts) and checks that no
// other socket holds them (portHeld); on failure it keeps no claim.
func claimFree(addrs []ma.Multiaddr) ([]*os.File, error) {
	claims, err := claimPorts(addrs)
	for _, a := range addrs {
		if err == nil {
			err = portHeld(a)
		}
	}
	if err != nil {
		release(claims)
		return nil, err
	}
	return claims, nil
}

// claimPorts claims among the nodes of this machine every port addrs name
// (port 0 aside). It fails, releasing what it took, where another node
// holds one; where a claim cannot be taken at all (no temporary directory
// to write in) the port goes unclaimed, left to the socket check.
func claimPorts(addrs []ma.Multiaddr) ([]*os.File, error) {
	var claims []*os.File
	seen := map[string]bool{}
	for _, a := range addrs {
		port, err := a.ValueForProtocol(ma.P_TCP)
		if err != nil {
			if port, err = a.ValueForProtocol(ma.P_UDP); err != nil {
				continue
			}
		}
		if port == "0" || seen[port] {
			continue
		}
		seen[port] = true
		f, err := claimPort(port)
		if errors.Is(err, filelock.ErrLocked) {
			release(claims)
			return nil, fmt.Errorf("port %s is claimed by another mycel node on this machine", port)
		}
		if err != nil {
			log.Debug("port not claimed", "port", port, "err", err)
			continue
		}
		claims = append(claims, f)
	}
	return claims, nil
}

// claimPort locks the claim file of port.
func claimPort(port string) (*os.File, error) {
	path := filepath.Join(os.TempDir(), "mycel-port-"+port+".lock")
	// Readable by all, so that a node run by another user can lock it too
	// (a lock needs no write access).
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := filelock.TryLock(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// release gives up claims.
func release(claims []*os.File) {
	for _, f := range claims {
		f.Close()
	}
}

// port is the port the default listen addresses take.
func (c *config) port() int {
	if c.defaultPort != 0 {
		return c.defaultPort
	}
	return DefaultPort
}

// portHeld returns an error saying so when a's TCP or UDP port is held by
// another socket on this machine. Addresses it cannot check (port 0, no IP,
// an address family the machine lacks) pass.
func portHeld(a ma.Multiaddr) error {
	ip, err := a.ValueForProtocol(ma.P_IP4)
	family := "4"
	if err != nil {
		if ip, err = a.ValueForProtocol(ma.P_IP6); err != nil {
			return nil
		}
		family = "6"
	}
	network, port := "tcp", ""
	if port, err = a.ValueForProtocol(ma.P_TCP); err != nil {
		if port, err = a.ValueForProtocol(ma.P_UDP); err != nil {
			return nil
		}
		network = "udp"
	}
	if port == "0" {
		return nil
	}
	addr := net.JoinHostPort(ip, port)
	if network == "tcp" {
		l, err := net.Listen(network+family, addr)
		if err == nil {
			return l.Close()
		}
		return inUse(network, port, err)
	}
	pc, err := net.ListenPacket(network+family, addr)
	if err == nil {
		return pc.Close()
	}
	return inUse(network, port, err)
}

// inUse is err where it says the port is taken, and nil for any other
// failure of the check (left for libp2p's own listen to report).
func inUse(network, port string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s port %s is held by another program", network, port)
	}
	return nil
}
