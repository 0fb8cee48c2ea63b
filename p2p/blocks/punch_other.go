//go:build !linux

package blocks

import "os"

// punchHole would free the space of deleted blocks inside a pack; without
// fallocate(2) the space comes back when every block of the pack is
// deleted and the pack file is removed.
func punchHole(f *os.File, off, n int64) error { return nil }

// preallocate is a no-op where fallocate(2) is not available.
func preallocate(f *os.File, off, n int64) error { return nil }
