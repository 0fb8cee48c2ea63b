package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, Go runtime and compute backend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := node.Version
			be, err := kernels.Open("cpu", 0)
			if err != nil {
				return err
			}
			defer be.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "mycel %s %s %s/%s backend %s, %d threads\n",
				v, runtime.Version(), runtime.GOOS, runtime.GOARCH, be.Name(), be.Threads())
			return nil
		},
	}
}
