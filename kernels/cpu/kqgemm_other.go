//go:build !amd64 || noasm

package cpu

// kqgQuants45 and kqgQuants6 are the quants' packing in use: this build's
// is Go.
var kqgQuants45, kqgQuants6 = kqgQuants45Generic, kqgQuants6Generic
