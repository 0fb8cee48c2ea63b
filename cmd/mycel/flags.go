package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
)

// threadsFlag defines --threads (-t) on cmd: compute threads, checked as
// the flag is parsed (kernels.CheckThreads), so that every command takes
// and refuses the same counts. what says what the threads are for.
func threadsFlag(cmd *cobra.Command, p *int, what string) {
	cmd.Flags().VarP((*threadsValue)(p), "threads", "t", what+" (0: all cores; at most 4 per core)")
}

// threadsValue is a thread count as a flag value.
type threadsValue int

func (v *threadsValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not a whole number: give 0 for all cores, or 1 to %d", kernels.MaxThreads())
	}
	if err := kernels.CheckThreads(n); err != nil {
		return err
	}
	*v = threadsValue(n)
	return nil
}

func (v *threadsValue) String() string { return strconv.Itoa(int(*v)) }

func (v *threadsValue) Type() string { return "int" }

// writeJSONOut prints v as indented JSON: what --json prints.
func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
