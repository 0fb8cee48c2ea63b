//go:build !amd64 || noasm

package cpu

// quantSets lists the quantized kernel sets this build can run.
func quantSets() []quantKernels { return []quantKernels{genericQuant} }
