//go:build !unix

package node

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
