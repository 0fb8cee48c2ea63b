//go:build !amd64 || noasm

package cpu

// readSum sums x, reading every value once.
func readSum(x []float32) float32 { return sumSquaresGeneric(x) }
