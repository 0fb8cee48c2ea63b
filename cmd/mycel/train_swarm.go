package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/node/api"
)

// Fine-tuning on the swarm: submit, ls, status, pull, stop. Each asks the
// running node, which speaks for this machine on the swarm.

func newTrainSubmitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "submit JOB.toml",
		Short: "Publish a job for the swarm's volunteers to train",
		Long: `Publish a fine-tuning job to the swarm, signed by this node's key. The job
file is the one train run takes (docs/training.md), with the keys for
training together: averaging ("sync" or "diloco"), inner_steps, outer_lr,
outer_momentum, encoding and min_peers. Its model and data must be CIDs, or
names of a model and a data set this node keeps (they are published as
their CIDs); the node checks that both can be had and that the job fits the
model before it publishes anything.

Volunteers running mycel node --train take the job, train it together and
carry it on: it goes on when this node goes offline. The last line of
stdout is the job's ID, which train status, pull and stop take.`,
		Example: `  mycel train submit story.toml
  mycel train status j4fh...   # the ID submit printed`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			job, err := g.client().SubmitJob(cmd.Context(), string(spec))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "submitted: %s of %s on %s, %d steps, averaging %s\n", job.Method, job.Data, job.Model, job.Steps, job.Averaging)
			fmt.Fprintln(cmd.OutOrStdout(), job.ID)
			return nil
		},
	}
}

func newTrainLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the fine-tuning jobs known on the swarm",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().Jobs(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []api.TrainJob{}
				}
				return writeJSONOut(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no job known on the swarm (mycel train submit publishes one)")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tSTATE\tSTEP\tPEERS\tMETHOD\tAVERAGING\tMODEL\tSUBMITTED")
			for _, j := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\n", j.ID, j.State, j.Step, j.Steps, j.Peers, j.Method, j.Averaging,
					j.Model, j.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTrainStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status JOB",
		Short: "Show a swarm job's progress: step, members, loss curve, latest checkpoint",
		Long: `Show a swarm job's progress as its members announce it: the step, each
member with its rate and share, the group's tokens per second, the loss as
a curve in the terminal, and the latest checkpoint (which train pull
fetches). --json prints the same as one object, the loss as [[step, loss], ...].`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.client().JobStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			printTrainStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}

// printTrainStatus writes a job's status for a person.
func printTrainStatus(w io.Writer, st api.TrainStatus) {
	fmt.Fprintf(w, "job %s: %s, step %d of %d\n", st.ID, st.State, st.Step, st.Steps)
	fmt.Fprintf(w, "  %s on %s, data %s, averaging %s\n", st.Method, st.Model, st.Data, st.Averaging)
	fmt.Fprintf(w, "  submitted by %s at %s\n", shortPeer(st.Submitter), st.Created.Local().Format(time.DateTime))
	if st.Here != "" {
		fmt.Fprintf(w, "  this node: %s\n", st.Here)
	}
	if st.Checkpoint != "" {
		fmt.Fprintf(w, "  latest checkpoint: %s (step %d)\n", st.Checkpoint, st.CheckpointStep)
	}
	if st.Bytes > 0 {
		fmt.Fprintf(w, "  averaged here: %s; %.0f%% of the rounds' time training\n", units.FormatBytes(st.Bytes), 100*st.Utilisation)
	}
	fmt.Fprintf(w, "  %d members, %.0f tokens/s together\n", len(st.Members), st.TokensPerSecond)
	if len(st.Members) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PEER\tSTEP\tTOKENS/S\tSHARE\t")
		for _, m := range st.Members {
			step := fmt.Sprint(m.Step)
			if m.Joining {
				step = "joining"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%.0f%%\t\n", shortPeer(m.Peer), step, m.Rate, 100*m.Share)
		}
		tw.Flush()
	}
	if len(st.Loss) > 0 {
		fmt.Fprintf(w, "  loss %.4f at step %d\n", st.Loss[len(st.Loss)-1][1], int(st.Loss[len(st.Loss)-1][0]))
		for _, line := range lossChart(st.Loss, 60, 10) {
			fmt.Fprintln(w, "  "+line)
		}
	}
}

// lossChart draws a loss curve as width×height characters of text with
// the loss on the left and the steps below.
func lossChart(pts [][2]float64, width, height int) []string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = min(lo, p[1]), max(hi, p[1])
	}
	if hi == lo {
		hi = lo + 1e-6
	}
	first, last := pts[0][0], pts[len(pts)-1][0]
	grid := make([][]rune, height)
	for i := range grid {
		grid[i] = []rune(strings.Repeat(" ", width))
	}
	for _, p := range pts {
		x := 0
		if last > first {
			x = int(math.Round((p[0] - first) / (last - first) * float64(width-1)))
		}
		y := int(math.Round((hi - p[1]) / (hi - lo) * float64(height-1)))
		grid[y][x] = '•'
	}
	out := make([]string, 0, height+1)
	for i, row := range grid {
		label := "       "
		switch i {
		case 0:
			label = fmt.Sprintf("%7.3f", hi)
		case height - 1:
			label = fmt.Sprintf("%7.3f", lo)
		}
		out = append(out, label+" |"+string(row))
	}
	axis := fmt.Sprintf("step %d", int(first))
	end := fmt.Sprintf("%d", int(last))
	pad := max(1, width+2-len(axis)-len(end))
	out = append(out, "        "+axis+strings.Repeat(" ", pad)+end)
	return out
}

func newTrainPullCmd(g *globals) *cobra.Command {
	var f trainExportFlags
	cmd := &cobra.Command{
		Use:   "pull JOB -o FILE.gguf",
		Short: "Fetch a swarm job's latest checkpoint and write the tuned model",
		Long: `Fetch the latest checkpoint a swarm job's members announce (from all of
them at once, through the node) and write the model it holds as GGUF, the
adapters merged into the base weights, as train export does. mycel run -m
FILE.gguf runs it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.client().JobStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if st.Checkpoint == "" {
				return fmt.Errorf("job %s: no member announces a checkpoint yet (%s, step %d of %d); members make one every checkpoint_every steps and at the end", st.ID, st.State, st.Step, st.Steps)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "job %s: checkpoint %s of step %d of %d\n", st.ID, st.Checkpoint, st.CheckpointStep, st.Steps)
			if err := runTrainExport(cmd, g, &f, st.Checkpoint); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), f.out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "output", "o", "", "GGUF file to write (required)")
	fl.BoolVar(&f.adapterOnly, "adapter-only", false, "write the LoRA adapter only")
	fl.StringVar(&f.dtype, "dtype", "", "weight type of the merged model: f32, f16, bf16, q8_0 or q4_0 (default: the base model's)")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func newTrainStopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop JOB",
		Short: "Stop a swarm job this node submitted",
		Long: `Stop a job this node submitted: the node publishes it again, marked stopped
and signed with its key; the members stop (a round under way is undone)
and serve the state they reached as a checkpoint, which train pull takes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, err := g.client().StopJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s stopped at step %d of %d\n", job.ID, job.Step, job.Steps)
			return nil
		},
	}
}
