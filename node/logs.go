package node

import (
	"fmt"
	"log/slog"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node/api"
)

// Logs returns the last log records of the process (logging.Recent: those
// its levels let through, the libraries' included) whose Seq is above
// since, at level or above ("" for every level), oldest first. A level
// other than debug, info, warn or error is an api.ErrBadRequest.
func (n *Node) Logs(since uint64, level string) ([]api.LogRecord, error) {
	least := slog.LevelDebug
	if level != "" {
		l, err := logging.ParseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
		}
		least = l
	}
	var out []api.LogRecord
	for _, r := range logging.Recent().Since(since) {
		if r.Level < least {
			continue
		}
		out = append(out, api.LogRecord{Seq: r.Seq, Time: r.Time, Level: levelName(r.Level),
			Sys: r.Sys, Msg: r.Msg, Attrs: r.Attrs})
	}
	return out, nil
}

// levelName is l as api.LogRecord names it.
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}
