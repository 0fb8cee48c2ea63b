package p2p

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// newResourceManager derives the libp2p resource limits from the node's caps.
// libp2p's default per-service and per-protocol limits are scaled to
// maxMemory (or to the machine's memory when it is 0), and the system-wide
// connection limits are set to maxConns. With metrics it reports what it
// admits to the metrics libp2p registers for it.
func newResourceManager(maxConns int, maxMemory int64, metrics bool) (network.ResourceManager, error) {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	var limits rcmgr.ConcreteLimitConfig
	if maxMemory > 0 {
		limits = scaling.Scale(maxMemory, fdLimit())
	} else {
		limits = scaling.AutoScale()
	}
	if maxConns > 0 {
		c := rcmgr.LimitVal(maxConns)
		limits = rcmgr.PartialLimitConfig{
			System: rcmgr.ResourceLimits{Conns: c, ConnsInbound: c, ConnsOutbound: c},
		}.Build(limits)
	}
	var opts []rcmgr.Option
	if metrics {
		// Its counts feed the metrics libp2p registers for it.
		str, err := rcmgr.NewStatsTraceReporter()
		if err != nil {
			return nil, fmt.Errorf("p2p: resource manager metrics: %w", err)
		}
		opts = append(opts, rcmgr.WithTraceReporter(str))
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits), opts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return rm, nil
}
