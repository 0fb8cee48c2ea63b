// Package filelock takes exclusive locks on open files without waiting:
// flock on Unix, LockFileEx on Windows. The operating system drops a lock
// when its file is closed or its process ends, however it ends, so a
// crashed process leaves no stale lock behind.
package filelock

import "errors"

// ErrLocked means another open file holds the lock.
var ErrLocked = errors.New("locked")
