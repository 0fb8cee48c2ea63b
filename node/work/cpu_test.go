//go:build linux

package work

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time this process has used, by getrusage.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The process's own time is read as getrusage counts it, so that Sample
// leaves it out; other processes spinning on every core show in Sample.
func TestCPUOthers(t *testing.T) {
	cpu, err := NewCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Our own spin: 300 ms of CPU, however long the machine takes to give it.
	before, err := readCPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	start := processCPU(t)
	for processCPU(t)-start < 300*time.Millisecond {
	}
	spent := processCPU(t) - start
	after, err := readCPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 1/100 s.
	self := time.Duration((after.self - before.self) * float64(10*time.Millisecond))
	t.Logf("getrusage: %s, /proc/self/stat: %s", spent, self)
	if d := self - spent; d < -30*time.Millisecond || d > 30*time.Millisecond {
		t.Errorf("the process's own time reads %s in /proc/self/stat, %s by getrusage", self, spent)
	}

	var cmds []*exec.Cmd
	for range runtime.NumCPU() {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	defer func() {
		for _, c := range cmds {
			c.Process.Signal(os.Kill)
			c.Wait()
		}
	}()
	cpu.Sample()
	time.Sleep(500 * time.Millisecond)
	others, err := cpu.Sample()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("while %d shells spun, others used %.0f%% of the CPU", len(cmds), others*100)
	if others < 0.6 {
		t.Errorf("others used %.0f%% of the CPU while spinning on every core", others*100)
	}
}
