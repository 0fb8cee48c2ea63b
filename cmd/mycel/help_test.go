package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/p2p"
)

// TestNodeHelpPort: mycel node --help names the port a node listens on by
// default, p2p.DefaultPort, in the flag's help and in every example.
func TestNodeHelpPort(t *testing.T) {
	out, _, err := mycel(t, "node", "--help")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(p2p.DefaultPort)
	if !strings.Contains(out, "default TCP and QUIC on port "+port+")") {
		t.Errorf("--listen's help does not name port %s:\n%s", port, out)
	}
	ports := regexp.MustCompile(`/(?:tcp|udp)/(\d+)`).FindAllStringSubmatch(out, -1)
	if len(ports) == 0 {
		t.Fatalf("no example address in:\n%s", out)
	}
	for _, m := range ports {
		if m[1] != port {
			t.Errorf("an example uses port %s, the default is %s", m[1], port)
		}
	}
}
