package blocks

import (
	"os"
	"syscall"
)

// Flags of fallocate(2).
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

// punchHole frees the disk space of n bytes at off in f, which then read
// as zeros; the file keeps its size. A file system that cannot do it
// keeps the bytes, which is only a waste of space.
func punchHole(f *os.File, off, n int64) error {
	err := syscall.Fallocate(int(f.Fd()), fallocKeepSize|fallocPunchHole, off, n)
	if err == syscall.EOPNOTSUPP || err == syscall.ENOSYS {
		return nil
	}
	return err
}

// preallocate reserves disk space for n bytes at off in f without changing
// its size, so that appends there need not allocate blocks one page at a
// time (buffered writes into reserved space cost about half the CPU).
func preallocate(f *os.File, off, n int64) error {
	err := syscall.Fallocate(int(f.Fd()), fallocKeepSize, off, n)
	if err == syscall.EOPNOTSUPP || err == syscall.ENOSYS {
		return nil
	}
	return err
}
