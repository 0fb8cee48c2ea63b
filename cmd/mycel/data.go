package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/node/api"
)

// The data set commands talk to a running node.

func newDataCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Share training data sets as content-addressed blocks through the running node",
		Long: `Share training data sets through the running node. A data set file is plain
text (one example), JSON lines of {"text": ...}, or JSON lines of
{"prompt": ..., "completion": ...}; the node checks it parses, stores it as
content-addressed blocks, announces it on the DHT, and names it by its CID
(or the name given at import) wherever a data set is taken.`,
	}
	cmd.AddCommand(newDataImportCmd(g), newDataLsCmd(g), newDataInspectCmd(g), newDataPullCmd(g), newDataRmCmd(g))
	return cmd
}

func newDataImportCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Send a data set file to the node, which stores it as blocks and announces it",
		Long: `Send a data set file to the running node. The node parses it (a file that
does not is refused with the line that is wrong, and nothing is stored),
cuts it into content-addressed blocks, records it and announces it on the
DHT. The last line of stdout is the data set's CID: the same file with the
same name always gives the same CID.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			res, err := g.client().ImportData(cmd.Context(), name, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imported %s: %s, %s, %s in %d blocks\n",
				args[0], res.Format, examples(res.Examples), units.FormatBytes(res.Bytes), res.Blocks)
			fmt.Fprintln(cmd.OutOrStdout(), res.CID)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a human name for the data set")
	return cmd
}

func newDataLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the data sets on the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().ListData(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CID\tNAME\tFORMAT\tEXAMPLES\tSIZE")
			for _, d := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.CID, d.Name, d.Format, d.Examples, units.FormatBytes(d.Bytes))
			}
			return tw.Flush()
		},
	}
}

// sampleLine is how much of an example's text a line of data inspect
// shows.
const sampleLine = 100

func newDataInspectCmd(g *globals) *cobra.Command {
	var o api.DataInspectOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect CID|NAME",
		Short: "Show a data set's format, examples and a sample (with --model, its tokens)",
		Long: `Show a data set: its format, the number of examples and bytes, the first
examples, and with --model (a model's CID or name) the tokens it makes with
that model's tokenizer, as training counts them: every token, those that
count in the loss (a prompt's do not), and the longest example.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := g.client().InspectData(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONOut(out, info)
			}
			printDataInfo(out, info)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Model, "model", "", "count the tokens with this model's tokenizer (a CID or a name the node knows)")
	fl.IntVar(&o.Sample, "sample", 3, "how many of the first examples to show")
	fl.BoolVar(&asJSON, "json", false, "print JSON (the sample's texts whole, up to 2000 bytes each)")
	return cmd
}

func printDataInfo(out io.Writer, d api.DataInfo) {
	fmt.Fprintf(out, "data set  %s %s\n", d.CID, d.Name)
	fmt.Fprintf(out, "format    %s, %s, %s\n", d.Format, examples(d.Examples), units.FormatBytes(d.Bytes))
	if !d.Whole {
		fmt.Fprintf(out, "local     %d of %d blocks (mycel data pull %s fetches the rest)\n", d.LocalBlocks, d.TotalBlocks, d.CID)
	}
	if t := d.Tokens; t != nil {
		fmt.Fprintf(out, "tokens    %d, %d of them trained; the longest example %d (model %s)\n", t.Tokens, t.Trained, t.Longest, t.Model)
	}
	for i, s := range d.Sample {
		count := ""
		if d.Tokens != nil {
			count = fmt.Sprintf(" (%d tokens, %d trained)", s.Tokens, s.Trained)
		}
		fmt.Fprintf(out, "example %d%s\n", i+1, count)
		if s.Completion != "" || s.Prompt != "" {
			fmt.Fprintf(out, "  prompt      %s\n", oneLine(s.Prompt))
			fmt.Fprintf(out, "  completion  %s\n", oneLine(s.Completion))
		} else {
			fmt.Fprintf(out, "  text        %s\n", oneLine(s.Text))
		}
	}
}

// examples says how many examples there are.
func examples(n int) string {
	if n == 1 {
		return "1 example"
	}
	return fmt.Sprintf("%d examples", n)
}

// oneLine shows a text on one line: newlines as ⏎, cut at sampleLine
// characters.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "⏎")
	if r := []rune(s); len(r) > sampleLine {
		s = string(r[:sampleLine]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

func newDataPullCmd(g *globals) *cobra.Command {
	var req api.DataPullRequest
	cmd := &cobra.Command{
		Use:   "pull CID|NAME",
		Short: "Fetch a data set from the peers that have it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CID = args[0]
			return showPull(cmd, func(progress func(api.PullProgress)) error {
				return g.client().PullData(cmd.Context(), req, progress)
			})
		},
	}
	cmd.Flags().StringVar(&req.Timeout, "timeout", "", "give up after this long (default 10m)")
	return cmd
}

func newDataRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm CID|NAME",
		Short: "Remove a data set's blocks from the node (those nothing else kept uses)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := g.client().RemoveData(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %s: %d blocks deleted\n", args[0], n)
			return nil
		},
	}
}
