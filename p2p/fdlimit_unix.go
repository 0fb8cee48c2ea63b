//go:build unix

package p2p

import "syscall"

// fdLimit is the share of the process's file descriptor limit that libp2p
// may use: half, as libp2p itself takes by default.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 1024
	}
	n := r.Cur / 2
	if n > 1<<20 {
		n = 1 << 20
	}
	return int(n)
}
