// Command mycel is the one binary of the Mycel network: it runs models,
// benchmarks the machine and manages model files. Subcommands only parse
// flags and call the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/node/api"

	_ "github.com/mycel-net/mycel/kernels/cpu" // the CPU backend
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "mycel: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "mycel:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mycel",
		Short: "Mycel: a peer-to-peer compute network for language models",
		Long: `Mycel runs Llama-family language models on whatever CPU a machine has,
and (as a node of the swarm) shares model shards and serves layers to peers.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return setupLogging(cmd)
		},
	}
	logFlags(root)
	g := &globals{}
	root.PersistentFlags().StringVar(&g.api, "api", "", "control API of the node to use (default $MYCEL_API or "+api.DefaultAddr+")")
	root.PersistentFlags().StringVar(&g.data, "data", "", "the node's data directory, where mycel node keeps its stores and the API token the other commands send (default $"+node.EnvData+" or ~/.mycel)")
	root.AddCommand(newRunCmd(g), newChatCmd(g), newBenchCmd(g), newModelsCmd(g), newNodeCmd(g), newStatusCmd(g), newLogsCmd(g), newSwarmCmd(g), newStoreCmd(g), newDataCmd(g), newTrainCmd(g), newVersionCmd())
	return root
}
