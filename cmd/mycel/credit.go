package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/credit"
)

func newNodeCreditCmd(g *globals) *cobra.Command {
	var asJSON bool
	var verify, export string
	cmd := &cobra.Command{
		Use:   "credit",
		Short: "Show the work this node did for others, from its ledger of signed receipts",
		Long: `Show what the running node's ledger of signed receipts credits it with: the
tokens its served spans computed for clients (and how many of them the
clients countersigned), the tokens servers computed for it, and the
examples it trained in each job's rounds (countersigned by the round's
other members), by day, counterparty and model or job.

--export FILE copies the ledger, every signature in it, to FILE (- for
standard output) for others to check. --verify FILE checks the signatures
of such a file, with no node running: a record forged, altered, signed
with the wrong key or damaged is refused, each one named with why.`,
		Example: `  mycel node credit
  mycel node credit --json
  mycel node credit --export credit.ledger
  mycel node credit --verify credit.ledger`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			switch {
			case verify != "" && export != "":
				return errors.New("--verify and --export: one at a time")
			case verify != "":
				return verifyLedger(out, verify, asJSON)
			case export != "":
				return exportLedger(cmd, g, export)
			}
			cr, err := g.client().Credit(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(out, cr)
			}
			printCredit(out, cr)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print a JSON object")
	fl.StringVar(&verify, "verify", "", "check the signatures of an exported ledger `FILE` (no node needed)")
	fl.StringVar(&export, "export", "", "copy the node's ledger to `FILE` (- for standard output)")
	return cmd
}

func printCredit(w io.Writer, cr api.Credit) {
	fmt.Fprintf(w, "served    %d tokens to clients, %d countersigned\n", cr.ServedTokens, cr.ServedCountersigned)
	fmt.Fprintf(w, "trained   %d examples, %d countersigned by the rounds' members\n", cr.TrainedExamples, cr.TrainedCountersigned)
	fmt.Fprintf(w, "used      %d tokens from servers\n", cr.UsedTokens)
	fmt.Fprintf(w, "ledger    %d receipts, %d rounds, %d days summarised, in %s\n", cr.Receipts, cr.Rounds, cr.Summaries, cr.Ledger)
	if len(cr.Rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tKIND\tWITH\tMODEL OR JOB\tUNITS\tCOUNTERSIGNED\tRECEIPTS")
	for _, r := range cr.Rows {
		with := r.Peer
		if with == "" {
			with = "(the round's members)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.Day, r.Kind, with, r.Subject, r.Units, r.Countersigned, r.Receipts)
	}
	tw.Flush()
}

func exportLedger(cmd *cobra.Command, g *globals, path string) error {
	if path == "-" {
		return g.client().CreditLedger(cmd.Context(), cmd.OutOrStdout())
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--export: %w", err)
	}
	if err := g.client().CreditLedger(cmd.Context(), f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--export: %w", err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "ledger written to %s\n", path)
	return nil
}

func verifyLedger(w io.Writer, path string, asJSON bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--verify: %w", err)
	}
	defer f.Close()
	c, err := credit.Verify(f)
	if err != nil {
		return fmt.Errorf("%s: refused: %w", path, err)
	}
	if asJSON {
		return writeJSONOut(w, c)
	}
	fmt.Fprintf(w, "%s: every signature holds: %d receipts (%d countersigned by their clients), %d rounds with %d members' signatures",
		path, c.Receipts, c.Countersigned, c.Rounds, c.RoundSigs)
	if c.Summaries > 0 {
		fmt.Fprintf(w, "; %d day summaries (the node's own account, unsigned)", c.Summaries)
	}
	fmt.Fprintln(w)
	return nil
}
