package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node/api"
)

// logFlags define --log-level and --log-format on the root command: how
// this process logs (mycel node above all). Left out, they keep what
// $MYCEL_LOG_LEVEL and $MYCEL_LOG_FORMAT set (logging's defaults: info,
// text).
func logFlags(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.String("log-level", "", "least level logged: debug, info, warn or error, then SUBSYSTEM=LEVEL for any subsystem, e.g. info,blocks=debug (default $"+logging.EnvLevel+" or info; libp2p's own subsystems log from warn unless named)")
	fl.String("log-format", "", "log lines as text or json (default $"+logging.EnvFormat+" or text)")
}

// setupLogging applies --log-level and --log-format, or checks the
// environment's settings when they are left out.
func setupLogging(cmd *cobra.Command) error {
	fl := cmd.Flags()
	level, _ := fl.GetString("log-level")
	format, _ := fl.GetString("log-format")
	levelSet, formatSet := fl.Changed("log-level"), fl.Changed("log-format")
	if !levelSet {
		level = os.Getenv(logging.EnvLevel)
	}
	if !formatSet {
		format = os.Getenv(logging.EnvFormat)
	}
	l, err := logging.ParseLevels(level)
	if err != nil {
		return fmt.Errorf("%s: %w", settingName("--log-level", logging.EnvLevel, levelSet), err)
	}
	switch format {
	case "", logging.FormatText, logging.FormatJSON:
	default:
		return fmt.Errorf("%s %q: want text or json", settingName("--log-format", logging.EnvFormat, formatSet), format)
	}
	if !levelSet && !formatSet {
		return nil // the environment's, which the logger took when the process started
	}
	return logging.Setup(logging.Config{Levels: l, Format: format})
}

func settingName(flag, env string, fromFlag bool) string {
	if fromFlag {
		return flag
	}
	return "$" + env
}

// logsPoll is how often mycel logs -f asks the node for new records.
var logsPoll = time.Second

func newLogsCmd(g *globals) *cobra.Command {
	var level string
	var follow, asJSON bool
	var since uint64
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show the running node's last log records",
		Long: `Show the last log records of the running node: those its --log-level lets
through, kept in memory (the last ` + strconv.Itoa(logging.RingSize) + `), oldest first. With -f, wait for
new ones and print them as they come until Ctrl-C.

Each line is the time, the level, the subsystem (node, p2p, swarm, blocks,
records, or one of libp2p's), the message and its attributes.`,
		Example: `  mycel logs
  mycel logs -f --level warn
  mycel logs --json | jq .msg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cl := g.client()
			out := cmd.OutOrStdout()
			last := since
			t := time.NewTicker(logsPoll)
			defer t.Stop()
			for {
				recs, err := cl.Logs(ctx, last, level)
				if err != nil {
					if ctx.Err() != nil {
						return nil // Ctrl-C ends -f
					}
					return err
				}
				for _, r := range recs {
					if last > 0 && r.Seq > last+1 && level == "" {
						fmt.Fprintf(out, "... %d records not kept\n", r.Seq-last-1)
					}
					if asJSON {
						if err := json.NewEncoder(out).Encode(r); err != nil {
							return err
						}
					} else {
						fmt.Fprintln(out, logLine(r))
					}
					last = r.Seq
				}
				if !follow {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "wait for new records and print them as they come")
	fl.StringVar(&level, "level", "", "only records at this level or above: debug, info, warn or error")
	fl.Uint64Var(&since, "since", 0, "only records after this sequence number (as --json prints it)")
	fl.BoolVar(&asJSON, "json", false, "print each record as a JSON object on a line")
	return cmd
}

// logLine is the line mycel logs prints for r.
func logLine(r api.LogRecord) string {
	var b strings.Builder
	b.WriteString(r.Time.Local().Format("2006-01-02 15:04:05.000"))
	fmt.Fprintf(&b, " %-5s", strings.ToUpper(r.Level))
	if r.Sys != "" {
		b.WriteString(" " + r.Sys + ":")
	}
	b.WriteString(" " + r.Msg)
	writeAttrs(&b, "", r.Attrs)
	return b.String()
}

// writeAttrs writes " key=value" for each of attrs, in key order, a
// group's as prefix.key=value.
func writeAttrs(w io.StringWriter, prefix string, attrs map[string]any) {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if g, ok := attrs[k].(map[string]any); ok {
			writeAttrs(w, prefix+k+".", g)
			continue
		}
		v := fmt.Sprint(attrs[k])
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			v = strconv.Quote(v)
		}
		w.WriteString(" " + prefix + k + "=" + v)
	}
}
