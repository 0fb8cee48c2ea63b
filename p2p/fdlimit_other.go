//go:build !unix

package p2p

// fdLimit is a conservative descriptor budget where the OS has no rlimit.
func fdLimit() int { return 4096 }
