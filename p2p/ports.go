package p2p

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"
)

// libp2p binds its listeners with SO_REUSEPORT (the TCP transport, for hole
// punching). A second node on a machine, started on a port the first one
// already holds, would then share it without a word: the kernel hands each
// incoming connection to either node at random, and both announce the same
// addresses, so each takes the other's for its own ("dial to self"). So the
// ports are checked first, with plain sockets, which the kernel refuses
// where another socket holds the port.

// checkPorts makes the listen addresses ones no other program on this
// machine holds. With the default addresses a held DefaultPort gives way to
// ports the system picks (every address moves, so that TCP and QUIC stay
// together); a listen address given outright on a held port is refused.
func (c *config) checkPorts() error {
	if c.defaultListen {
		for _, a := range c.listenAddrs {
			if err := portHeld(a); err != nil {
				log.Warn("default port held by another program on this machine (another node?); listening on ports the system picks",
					"port", c.port(), "err", err)
				c.listenAddrs = defaultListenAddrs(c.loopback, !c.noQUIC, 0)
				return nil
			}
		}
		return nil
	}
	for _, a := range c.listenAddrs {
		if err := portHeld(a); err != nil {
			return fmt.Errorf("p2p: listen address %s: %w (another node on this machine? give this one another port, or port 0 for one the system picks)", a, err)
		}
	}
	return nil
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
