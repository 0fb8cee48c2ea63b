package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/node/api"
)

// The model store commands talk to a running node.

func newModelsImportCmd(g *globals) *cobra.Command {
	var req api.ImportRequest
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Store a model file as content-addressed blocks on the node and announce it",
		Long: `Cut a model file (llama2.c or GGUF, or a Hugging Face model directory,
converted as mycel models convert does) into content-addressed blocks in the
node's store and announce it on the DHT. The last line of stdout is the
model's CID: the same file always gives the same CID.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			req.Path = abs
			if req.Tokenizer != "" {
				if req.Tokenizer, err = filepath.Abs(req.Tokenizer); err != nil {
					return err
				}
			}
			res, err := g.client().Import(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imported %s: %.1f MB in %d blocks, %.0f MB/s\n", args[0], float64(res.Bytes)/1e6, res.Blocks, res.MBps)
			fmt.Fprintln(cmd.OutOrStdout(), res.CID)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Name, "name", "", "a human name for the model")
	cmd.Flags().StringVar(&req.DType, "dtype", "", "quantize the weight matrices on import: f16, bf16, q8_0 or q4_0")
	cmd.Flags().StringVarP(&req.Tokenizer, "tokenizer", "z", "", "llama2.c tokenizer.bin to store with a model that has none inside")
	return cmd
}

func newModelsPullCmd(g *globals) *cobra.Command {
	var req api.PullRequest
	cmd := &cobra.Command{
		Use:   "pull CID|NAME",
		Short: "Fetch a model (or a span of its layers) from the peers that have it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.CID = args[0]
			return showPull(cmd, func(progress func(api.PullProgress)) error {
				return g.client().Pull(cmd.Context(), req, progress)
			})
		},
	}
	cmd.Flags().StringVar(&req.Layers, "layers", "", "only layers A:B (without the embedding and head)")
	cmd.Flags().StringVar(&req.Experts, "experts", "", `for a mixture of experts: of each layer's routed experts only these, e.g. "0-3,8" (default: all)`)
	cmd.Flags().StringVar(&req.Timeout, "timeout", "", "give up after this long (default 10m)")
	return cmd
}

// showPull runs a pull, showing its progress on stderr (one line redrawn
// on a terminal, else the first and last), and prints the CID pulled on
// stdout.
func showPull(cmd *cobra.Command, pull func(progress func(api.PullProgress)) error) error {
	w := cmd.ErrOrStderr()
	tty := isTerminal(w)
	start := time.Now()
	var last api.PullProgress
	err := pull(func(p api.PullProgress) {
		last = p
		line := progressLine(p, time.Since(start))
		if tty {
			fmt.Fprintf(w, "\r%-78s", line)
		} else if p.Done || p.DoneBlocks == 0 || p.DoneBlocks == p.TotalBlocks {
			fmt.Fprintln(w, line)
		}
	})
	if tty {
		fmt.Fprintln(w)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), last.CID)
	return nil
}

func progressLine(p api.PullProgress, elapsed time.Duration) string {
	mbps := float64(p.DoneBytes) / 1e6 / max(elapsed.Seconds(), 1e-3)
	eta := "?"
	if mbps > 0 && p.TotalBytes > p.DoneBytes {
		eta = (time.Duration(float64(p.TotalBytes-p.DoneBytes)/1e6/mbps) * time.Second).Round(time.Second).String()
	} else if p.TotalBytes <= p.DoneBytes {
		eta = "0s"
	}
	pct := 100.0
	if p.TotalBytes > 0 {
		pct = 100 * float64(p.DoneBytes) / float64(p.TotalBytes)
	}
	return fmt.Sprintf("pull %5.1f%%  %7.1f / %.1f MB  %6.1f MB/s  ETA %s  (%d/%d blocks)",
		pct, float64(p.DoneBytes)/1e6, float64(p.TotalBytes)/1e6, mbps, eta, p.DoneBlocks, p.TotalBlocks)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newModelsLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the models on the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CID\tNAME\tLOCAL PARTS\tSIZE")
			for _, m := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", m.CID, m.Name, m.LocalParts, m.TotalParts, units.FormatBytes(m.Bytes))
			}
			return tw.Flush()
		},
	}
}

func newModelsInspectCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect CID|NAME|FILE",
		Short: "Show a model's config, parts and sizes (and which parts are local)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if _, err := os.Stat(args[0]); err == nil {
				return inspectFile(out, args[0])
			}
			root, err := nodeModel(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			info, err := g.client().Inspect(cmd.Context(), root.String())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(out, info)
			}
			c := info.Manifest.Config
			fmt.Fprintf(out, "model     %s %s\n", info.CID, info.Name)
			fmt.Fprintf(out, "config    %d layers, dim %d, hidden %d, %d heads (%d kv), vocab %d, context %d\n",
				c.Layers, c.Dim, c.Hidden, c.Heads, c.KVHeads, c.Vocab, c.Context)
			fmt.Fprintf(out, "local     %d of %d parts, %s\n", info.LocalParts, info.TotalParts, units.FormatBytes(info.Bytes))
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PART\tCID\tTENSORS\tSIZE\tLOCAL")
			for _, p := range info.Parts {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%v\n", p.Name, p.CID, p.Tensors, units.FormatBytes(p.Bytes), p.Local)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func inspectFile(out io.Writer, path string) error {
	m, err := checkpoints.Load(path)
	if err != nil {
		return err
	}
	defer m.Close()
	c := m.Weights.Config
	fmt.Fprintf(out, "file      %s (%s)\n", path, m.Format)
	fmt.Fprintf(out, "config    %d layers, dim %d, hidden %d, %d heads (%d kv), vocab %d, context %d, rope θ %g, eps %g, shared classifier %v\n",
		c.Layers, c.Dim, c.Hidden, c.Heads, c.KVHeads, c.Vocab, c.Context, c.RopeTheta, c.NormEps, c.SharedClassifier)
	fmt.Fprintf(out, "weights   %s (%s), %d parameters\n", units.FormatBytes(m.Weights.Bytes()), weightTypes(m.Weights), c.Params())
	if m.Tokenizer != nil {
		fmt.Fprintf(out, "tokenizer %d tokens, BOS %d, EOS %d\n", m.Tokenizer.VocabSize(), m.Tokenizer.BOS(), m.Tokenizer.EOS())
	} else {
		fmt.Fprintln(out, "tokenizer none inside (llama2.c keeps it in a separate tokenizer.bin)")
	}
	return nil
}

func newModelsExportCmd(g *globals) *cobra.Command {
	var outPath string
	cmd := &cobra.Command{
		Use:   "export CID|NAME -o FILE.gguf",
		Short: "Write a model on the node as a GGUF file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outPath == "" {
				return fmt.Errorf("name the output file with -o")
			}
			tmp, err := os.CreateTemp(filepath.Dir(outPath), ".export-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if err := g.client().Export(cmd.Context(), args[0], tmp); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			// Only a complete, parseable file takes the name.
			if m, err := checkpoints.Load(tmp.Name()); err != nil {
				return fmt.Errorf("export of %s is incomplete: %w", args[0], err)
			} else {
				m.Close()
			}
			return os.Rename(tmp.Name(), outPath)
		},
	}
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "output file")
	return cmd
}

func newModelsRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm CID|NAME",
		Short: "Remove a model's blocks from the node (those no other model uses)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := g.client().Remove(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %s: %d blocks deleted\n", args[0], n)
			return nil
		},
	}
}
