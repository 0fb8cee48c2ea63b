//go:build windows

package node

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockFileExclusive locks one byte of f far past the process ID, so that
// a second node can still read the ID, without waiting.
func lockFileExclusive(f *os.File) error {
	ol := &windows.Overlapped{Offset: 1 << 30}
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}
