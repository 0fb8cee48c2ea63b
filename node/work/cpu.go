package work

import (
	"errors"
	"time"
)

// ErrCPUUnsupported is returned where the CPU other programs use cannot
// be measured (every system but Linux, for now).
var ErrCPUUnsupported = errors.New("measuring the CPU other programs use is supported on Linux only")

// CPU measures the share of the machine's CPU that programs other than
// this process used between one Sample and the next.
type CPU struct {
	last cpuTimes
}

// cpuTimes are cumulative CPU times: the whole machine's, busy and in
// all, and this process's own (all in the same unit).
type cpuTimes struct {
	busy, total, self float64
}

// NewCPU takes a first reading; it fails where the CPU cannot be
// measured (ErrCPUUnsupported) or read.
func NewCPU() (*CPU, error) {
	t, err := readCPUTimes()
	if err != nil {
		return nil, err
	}
	return &CPU{last: t}, nil
}

// Sample returns the share, from 0 to 1, of the machine's CPU (all its
// cores together) that other programs used since the last Sample (or
// NewCPU).
func (c *CPU) Sample() (float64, error) {
	t, err := readCPUTimes()
	if err != nil {
		return 0, err
	}
	prev := c.last
	c.last = t
	total := t.total - prev.total
	if total <= 0 {
		return 0, nil
	}
	others := (t.busy - prev.busy) - (t.self - prev.self)
	return min(max(others/total, 0), 1), nil
}

// SampleInterval is how often an idle watcher with quiet period wait
// samples the CPU: a fifth of it, between 100 ms and 2 s.
func SampleInterval(wait time.Duration) time.Duration {
	return min(max(wait/5, 100*time.Millisecond), 2*time.Second)
}
