package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/node/api"
)

func newStoreCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Look after the running node's block store",
	}
	cmd.AddCommand(newStoreGCCmd(g))
	return cmd
}

func newStoreGCCmd(g *globals) *cobra.Command {
	var req api.GCRequest
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove the blocks no kept model uses (left by an interrupted import)",
		Long: `Remove the blocks of the node's store that no model it keeps (mycel models
ls) reaches, such as those an interrupted import left. The blocks of a
pull that stopped are kept, so that pulling again resumes it; mycel models
rm CID drops them. The node also does this each time it starts. It refuses
while an import or pull runs. mycel status shows how much there is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := g.client().GC(cmd.Context(), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONOut(out, res)
			}
			switch {
			case res.Blocks == 0:
				fmt.Fprintln(out, "nothing to remove: every block belongs to a kept model or an unfinished pull")
			case res.DryRun:
				fmt.Fprintf(out, "would remove %d blocks, %s\n", res.Blocks, units.FormatBytes(res.Bytes))
			default:
				fmt.Fprintf(out, "removed %d blocks, %s\n", res.Blocks, units.FormatBytes(res.Bytes))
			}
			for _, c := range res.Unfinished {
				fmt.Fprintf(out, "kept an unfinished pull: resume it with mycel models pull %s, or drop it with mycel models rm %s\n", c, c)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "only say what would be removed")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
