//go:build amd64 && !noasm

package cpu

import (
	"time"

	"golang.org/x/sys/cpu"
)

//go:noescape
func vnniPeakAVX512(n int)

// Int8PeakGOPS measures one core's peak rate of int8 dot products in
// GOPS (two operations per multiply-add): a loop of independent 512-bit
// vpdpbusd, best of a few tries. It returns 0 where the CPU has no
// AVX-512 VNNI. The quantized GEMMs' efficiency is reported against it.
func Int8PeakGOPS() float64 {
	if !(cpu.X86.HasAVX512F && cpu.X86.HasAVX512VNNI) {
		return 0
	}
	const rounds = 1 << 18
	best := time.Duration(1 << 62)
	for range 20 {
		t0 := time.Now()
		vnniPeakAVX512(rounds)
		best = min(best, time.Since(t0))
	}
	return float64(rounds) * 12 * 64 * 2 / float64(best.Nanoseconds())
}
