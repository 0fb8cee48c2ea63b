//go:build !amd64 || noasm

package cpu

// kqgQuants45 is the quants' packing in use: this build's is Go.
var kqgQuants45 = kqgQuants45Generic
