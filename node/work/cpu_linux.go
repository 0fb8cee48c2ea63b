package work

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// readCPUTimes reads the machine's CPU times from /proc/stat and the
// process's own from /proc/self/stat, both in clock ticks.
func readCPUTimes() (cpuTimes, error) {
	var t cpuTimes
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, fmt.Errorf("work: CPU times: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return t, fmt.Errorf("work: CPU times: /proc/stat begins %q, not with the cpu line", line)
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// counted in user already).
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return t, fmt.Errorf("work: CPU times: /proc/stat field %d %q: %w", i+1, s, err)
		}
		t.total += v
		if i != 3 && i != 4 { // idle and iowait are not busy
			t.busy += v
		}
	}
	b, err = os.ReadFile("/proc/self/stat")
	if err != nil {
		return t, fmt.Errorf("work: CPU times: %w", err)
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return t, fmt.Errorf("work: CPU times: /proc/self/stat has no command name")
	}
	g := strings.Fields(string(b[i+1:]))
	// g[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(g) < 13 {
		return t, fmt.Errorf("work: CPU times: /proc/self/stat has %d fields", len(g)+2)
	}
	for _, s := range g[11:13] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return t, fmt.Errorf("work: CPU times: /proc/self/stat: %q: %w", s, err)
		}
		t.self += v
	}
	return t, nil
}
