package logging

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"go.uber.org/zap/zapcore"
)

// init points the libraries' loggers and slog.Default at the handler.
// gologshim's loggers pick their handler at their first record, so this
// runs before any of them writes.
func init() {
	l, err := ParseLevels(os.Getenv(EnvLevel))
	if err != nil {
		l = Levels{Default: slog.LevelInfo} // the command line says what is wrong
	}
	std.setLevels(l)
	if os.Getenv(EnvFormat) == FormatJSON {
		std.format = FormatJSON
		std.setSink()
	}
	gologshim.SetDefaultHandler(&handler{r: std, foreign: true})
	golog.SetPrimaryCore(zapCore{r: std})
	setGologLevels(l)
	slog.SetDefault(slog.New(&handler{r: std}))
}

// setGologLevels sets go-log's levels, which its loggers check before
// the core sees a record, to those of l; the core checks again.
func setGologLevels(l Levels) {
	golog.SetLogLevel("*", levelName(max(l.Default, LibraryFloor)))
	for sys, v := range l.Sys {
		golog.SetLogLevel(sys, levelName(v))
	}
}

// zapCore is a zapcore.Core that hands go-log's records to the handler,
// under the logger's name as their subsystem.
type zapCore struct {
	r      *root
	fields []zapcore.Field
}

var _ zapcore.Core = zapCore{}

// Enabled says whether some library subsystem writes records of l; Check
// decides for the record's own.
func (c zapCore) Enabled(l zapcore.Level) bool {
	return zapLevel(l) >= slog.Level(c.r.floor.Load())
}

func (c zapCore) With(fs []zapcore.Field) zapcore.Core {
	return zapCore{r: c.r, fields: append(c.fields[:len(c.fields):len(c.fields)], fs...)}
}

func (c zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.r.enabled(e.LoggerName, true, zapLevel(e.Level)) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c zapCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rec := slog.NewRecord(e.Time, zapLevel(e.Level), e.Message, 0)
	for _, k := range keys {
		rec.AddAttrs(slog.Any(k, plain(enc.Fields[k])))
	}
	h := &handler{r: c.r, sys: e.LoggerName, foreign: true}
	return h.Handle(context.Background(), rec)
}

func (zapCore) Sync() error { return nil }

// zapLevel is l as slog grades it.
func zapLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// plain is a value of zap's map encoder as a slog value would hold it:
// its nested objects and arrays as text.
func plain(v any) any {
	switch v.(type) {
	case map[string]any, []any:
		return fmt.Sprint(v)
	}
	return v
}
