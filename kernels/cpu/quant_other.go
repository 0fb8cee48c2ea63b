//go:build !amd64 || noasm

package cpu

// quantSets lists the quantized kernel sets this build can run.
func quantSets() []quantKernels { return []quantKernels{genericQuant} }

// readBytes reads b and returns a checksum of it; the bandwidth baseline of
// BenchQuant.
func readBytes(b []byte) uint64 { return readBytesGo(b) }
