package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/node/api"
)

func newSwarmStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [MODEL]",
		Short: "Show the servers of a model (or of every model the node keeps): spans, throughput, and layers with no or weak coverage",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl := g.client()
			var refs []string
			if len(args) == 1 {
				refs = args
			} else {
				list, err := cl.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, m := range list {
					refs = append(refs, m.CID)
				}
				if len(refs) == 0 {
					return fmt.Errorf("the node keeps no model: name one (mycel swarm status CID)")
				}
			}
			var all []api.SwarmStatus
			for _, ref := range refs {
				st, err := cl.SwarmStatus(cmd.Context(), ref)
				if err != nil {
					return err
				}
				all = append(all, st)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if len(args) == 1 {
					return enc.Encode(all[0])
				}
				return enc.Encode(all)
			}
			for i, st := range all {
				if i > 0 {
					fmt.Fprintln(out)
				}
				printSwarmStatus(out, st)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printSwarmStatus(out io.Writer, st api.SwarmStatus) {
	name := st.Model
	if st.Name != "" {
		name = st.Name + " (" + st.Model + ")"
	}
	fmt.Fprintf(out, "model %s: %d layers, %d servers\n", name, st.Layers, len(st.Servers))
	if len(st.Servers) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tLAYERS\tTOK/S\tFREE POSITIONS\tSTATE\tRTT\t")
		for _, s := range st.Servers {
			peer := shortPeer(s.Peer)
			if s.Self {
				peer += " (this node)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%d\t%s\t%s\t\n", peer, layerRange(s.First, s.Last), s.Throughput, s.FreePositions, s.State, s.Latency)
		}
		tw.Flush()
	}
	if len(st.Missing) > 0 {
		var runs []string
		for _, m := range st.Missing {
			runs = append(runs, fmt.Sprintf("%d:%d", m.First, m.Last))
		}
		fmt.Fprintf(out, "no server for layers %s: serve them with mycel node --serve %s --layers %s\n",
			strings.Join(runs, ", "), st.Model, runs[0])
	} else if len(st.Servers) > 0 {
		weakest := st.Coverage[0]
		for _, c := range st.Coverage {
			weakest = min(weakest, c)
		}
		fmt.Fprintf(out, "every layer is served; the weakest at %.1f tok/s bounds the pipeline\n", weakest)
	}
	if len(st.Weak) > 0 {
		fmt.Fprintf(out, "weak coverage (under a third of the median) on layers %v\n", st.Weak)
	}
}
