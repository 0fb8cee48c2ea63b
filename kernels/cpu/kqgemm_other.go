//go:build !amd64 || noasm

package cpu

// kqgQuants45, kqgQuants6 and kqgQuants23 are the quants' packing in use:
// this build's is Go.
var kqgQuants45, kqgQuants6, kqgQuants23 = kqgQuants45Generic, kqgQuants6Generic, kqgQuants23Generic
