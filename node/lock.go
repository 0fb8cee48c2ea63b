package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mycel-net/mycel/internal/filelock"
)

// lockFile is the data directory's lock: a node holds an exclusive lock on
// it (flock on Unix, LockFileEx on Windows) from New to Close, and writes
// its process ID into it so that a second node can say who holds it. The
// operating system drops the lock when the process ends, however it ends,
// so a crashed node leaves no stale lock behind; the file itself stays.
const lockFile = "lock"

// dirLock is a held data-directory lock.
type dirLock struct{ f *os.File }

// lockDataDir takes the lock of the data directory dir, or says which
// process holds it.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: lock the data directory: %w", err)
	}
	if err := filelock.TryLock(f); err != nil {
		f.Close()
		if errors.Is(err, filelock.ErrLocked) {
			who := "another mycel node"
			if pid := readLockPID(path); pid > 0 {
				who = fmt.Sprintf("another mycel node (pid %d)", pid)
			}
			return nil, fmt.Errorf("%s is using the data directory %s; stop it or pick another with --data", who, dir)
		}
		return nil, fmt.Errorf("node: lock the data directory %s: %w", dir, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("node: lock the data directory: %w", err)
	}
	return &dirLock{f: f}, nil
}

// readLockPID reads the process ID a lock holder wrote (0 if none yet).
func readLockPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(bytes.TrimSpace(b)))
	return pid
}

// release empties the lock file and lets the lock go. The file is not
// removed: a node opening it at that moment would lock a file no longer
// in the directory while a third locked a new one.
func (l *dirLock) release() error {
	if l == nil {
		return nil
	}
	l.f.Truncate(0)
	return l.f.Close() // closing drops the lock
}
