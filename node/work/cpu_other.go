//go:build !linux

package work

func readCPUTimes() (cpuTimes, error) { return cpuTimes{}, ErrCPUUnsupported }
