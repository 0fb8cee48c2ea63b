package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node/api"
)

// keepLogging restores the process's logging when the test ends.
func keepLogging(t *testing.T) {
	old := logging.Current()
	t.Cleanup(func() { logging.Setup(old) })
}

// --log-level and --log-format, on any command, set the process's
// logging; left out, they leave it as the environment set it; a bad value
// of either, or of the environment's, stops the command with what it
// takes.
func TestLogFlags(t *testing.T) {
	keepLogging(t)
	if err := logging.Setup(logging.Config{Levels: logging.Levels{Default: slog.LevelInfo}}); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := mycel(t, "--log-level", "warn,swarm=debug", "--log-format", "json", "version"); err != nil {
		t.Fatalf("version: %v\n%s", err, stderr)
	}
	if c := logging.Current(); c.Levels.String() != "warn,swarm=debug" || c.Format != logging.FormatJSON {
		t.Errorf("after the flags: levels %s, format %s", c.Levels, c.Format)
	}
	if _, _, err := mycel(t, "version"); err != nil {
		t.Fatal(err)
	}
	if c := logging.Current(); c.Levels.String() != "warn,swarm=debug" || c.Format != logging.FormatJSON {
		t.Errorf("a command without the flags changed the logging: levels %s, format %s", c.Levels, c.Format)
	}
	t.Setenv(logging.EnvFormat, "json")
	if _, _, err := mycel(t, "--log-level", "debug", "version"); err != nil {
		t.Fatal(err)
	}
	if c := logging.Current(); c.Levels.String() != "debug" || c.Format != logging.FormatJSON {
		t.Errorf("--log-level with $%s=json: levels %s, format %s", logging.EnvFormat, c.Levels, c.Format)
	}

	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--log-level", "loud", "version"}, "", `--log-level: log level "loud": want debug, info, warn or error`},
		{[]string{"--log-level", "info,debug", "version"}, "", "give the others as SUBSYSTEM=LEVEL"},
		{[]string{"--log-format", "xml", "version"}, "", `--log-format "xml": want text or json`},
		{[]string{"version"}, "swarm=loud", `$MYCEL_LOG_LEVEL: log level of swarm: log level "loud"`},
	} {
		t.Setenv(logging.EnvLevel, tc.env)
		if _, _, err := mycel(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v with $%s=%q: %v, want %q", tc.args, logging.EnvLevel, tc.env, err, tc.want)
		}
	}
}

// mycel logs prints the running node's records, filters them by level,
// prints JSON lines with --json, and follows new ones with -f until
// stopped.
func TestLogsCommand(t *testing.T) {
	keepLogging(t)
	if err := logging.Setup(logging.Config{Levels: logging.Levels{Default: slog.LevelInfo}}); err != nil {
		t.Fatal(err)
	}
	addr := startNodeCmd(t)
	log := logging.Logger("node")
	log.Info("logs command info", "n", 7)
	log.Warn("logs command warn", "why", "two words", "g", slog.GroupValue(slog.Int("x", 1)))

	out, _, err := mycel(t, "--api", addr, "logs")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, " INFO  p2p: host started ") || !strings.Contains(out, " INFO  node: logs command info n=7\n") ||
		!strings.Contains(out, ` WARN  node: logs command warn g.x=1 why="two words"`+"\n") {
		t.Errorf("mycel logs:\n%s", out)
	}
	if strings.Index(out, "logs command info") > strings.Index(out, "logs command warn") {
		t.Errorf("not oldest first:\n%s", out)
	}
	out, _, err = mycel(t, "--api", addr, "logs", "--level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, " INFO ") || !strings.Contains(out, "logs command warn") {
		t.Errorf("mycel logs --level warn:\n%s", out)
	}
	out, _, err = mycel(t, "--api", addr, "logs", "--json", "--level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last api.LogRecord
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Msg != "logs command warn" || last.Seq == 0 || last.Attrs["why"] != "two words" {
		t.Errorf("mycel logs --json, last line %q: %+v, %v", lines[len(lines)-1], last, err)
	}
	if out, _, err := mycel(t, "--api", addr, "logs", "--since", "18446744073709551615"); err != nil || out != "" {
		t.Errorf("logs since the end: %q, %v", out, err)
	}
	if _, _, err := mycel(t, "--api", addr, "logs", "--level", "loud"); err == nil || !strings.Contains(err.Error(), `log level "loud": want debug, info, warn or error`) {
		t.Errorf("--level loud: %v", err)
	}

	// -f prints what comes after it started, and ends with its context.
	defer func(d time.Duration) { logsPoll = d }(logsPoll)
	logsPoll = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"--api", addr, "logs", "-f", "--since", strconv.FormatUint(last.Seq, 10)})
		cmd.SetOut(buf)
		cmd.SetErr(&bytes.Buffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	time.Sleep(5 * logsPoll) // a few looks that find nothing new
	log.Warn("logs command followed")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), "node: logs command followed"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("mycel logs -f never printed the new record:\n%s", buf)
		}
	}
	if strings.Contains(buf.String(), "logs command warn") {
		t.Errorf("-f --since %d printed an older record:\n%s", last.Seq, buf)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("mycel logs -f ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mycel logs -f did not end with its context")
	}
}
