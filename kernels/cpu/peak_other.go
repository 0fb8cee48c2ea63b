//go:build !amd64 || noasm

package cpu

// Int8PeakGOPS reports 0: this build has no int8 dot-product kernel.
func Int8PeakGOPS() float64 { return 0 }
