package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/kernels"
)

// TestThreadsFlag: every command with --threads refuses a negative or
// absurd count before it does anything, in one line naming the flag.
func TestThreadsFlag(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.gguf")
	cmds := [][]string{
		{"run", "-m", missing},
		{"bench", "decode", "-m", missing},
		{"bench", "kernels"},
		{"node", "--data", t.TempDir(), "--api", "127.0.0.1:0"},
	}
	for _, c := range cmds {
		for _, bad := range []string{"-5", "-1", fmt.Sprint(kernels.MaxThreads() + 1), "100000", "two"} {
			for _, form := range [][]string{{"--threads", bad}, {"--threads=" + bad}, {"-t", bad}} {
				args := append(append([]string(nil), c...), form...)
				_, _, err := mycel(t, args...)
				if err == nil {
					t.Fatalf("mycel %s: accepted", strings.Join(args, " "))
				}
				msg := err.Error()
				if !strings.Contains(msg, "--threads") || !strings.Contains(msg, "give 0 for all") || strings.Contains(msg, "\n") {
					t.Errorf("mycel %s: error %q, want one line naming --threads and what to give", strings.Join(args, " "), msg)
				}
			}
		}
		// 0 (all cores) and the ceiling pass the flag: the command goes on
		// to fail on the missing model, or is only started far enough to
		// see it parse (node, bench kernels: -h).
		for _, good := range []string{"0", fmt.Sprint(kernels.MaxThreads())} {
			args := append(append([]string(nil), c...), "--threads", good, "-h")
			if _, _, err := mycel(t, args...); err != nil {
				t.Errorf("mycel %s: %v", strings.Join(args, " "), err)
			}
		}
	}
	_, _, err := mycel(t, "run", "-m", missing, "--threads", "0")
	if err == nil || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("--threads 0: %v, want the run to go on to the missing model", err)
	}
}
