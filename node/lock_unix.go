//go:build unix

package node

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockFileExclusive takes an exclusive flock on f without waiting.
func lockFileExclusive(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EWOULDBLOCK) {
			return errLocked
		}
		return err
	}
}
