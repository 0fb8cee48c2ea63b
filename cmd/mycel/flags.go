package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
)

// threadsFlag defines --threads (-t) on cmd: compute threads, a count or
// a percentage of the machine's cores, checked as the flag is parsed
// (kernels.CheckThreads), so that every command takes and refuses the same
// values. what says what the threads are for.
func threadsFlag(cmd *cobra.Command, p *int, what string) {
	cmd.Flags().VarP(&threadsValue{n: p}, "threads", "t", what+" (0: all cores; at most 4 per core; or a share of the cores, such as 50%)")
}

// threadsValue is a thread count as a flag value: a count, or N% of the
// machine's cores (rounded, at least 1). It keeps the text it was given,
// which is what it shows.
type threadsValue struct {
	n    *int
	text string
}

func (v *threadsValue) Set(s string) error {
	n, err := parseThreads(s, runtime.NumCPU())
	if err != nil {
		return err
	}
	*v.n, v.text = n, s
	return nil
}

// parseThreads reads a thread count, or a percentage of cores.
func parseThreads(s string, cores int) (int, error) {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || p < 1 || p > 100 {
			return 0, fmt.Errorf("%q is not a share of the cores from 1%% to 100%%: give 0 for all %d cores, a count from 1 to %d, or a percentage such as 50%%", s, cores, kernels.MaxThreads())
		}
		return max(1, int(math.Round(p*float64(cores)/100))), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number: give 0 for all cores, 1 to %d, or a percentage of the cores such as 50%%", s, kernels.MaxThreads())
	}
	if err := kernels.CheckThreads(n); err != nil {
		return 0, err
	}
	return n, nil
}

func (v *threadsValue) String() string {
	if v.text != "" {
		return v.text
	}
	if v.n == nil {
		return "0"
	}
	return strconv.Itoa(*v.n)
}

func (v *threadsValue) Type() string { return "threads" }

// writeJSONOut prints v as indented JSON: what --json prints.
func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
