package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
)

// syncBuffer is a bytes.Buffer safe for the writes of several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// capture sends the process's records to a buffer under levels (and
// format) until the test ends.
func capture(t *testing.T, levels, format string) *syncBuffer {
	t.Helper()
	l, err := ParseLevels(levels)
	if err != nil {
		t.Fatal(err)
	}
	old := Current()
	if err := Setup(Config{Levels: l, Format: format}); err != nil {
		t.Fatal(err)
	}
	buf := &syncBuffer{}
	prev := SetOutput(buf)
	t.Cleanup(func() {
		SetOutput(prev)
		Setup(old)
	})
	return buf
}

// A subsystem of Mycel's writes its Info lines at the default level; at
// warn it does not.
func TestDefaultLevelShowsInfo(t *testing.T) {
	buf := capture(t, "", "")
	log := Logger("swarm")
	log.Info("serving", "model", "m1")
	log.Debug("session open")
	out := buf.String()
	if !strings.Contains(out, `level=INFO msg=serving sys=swarm model=m1`) {
		t.Errorf("info line missing at the default level:\n%s", out)
	}
	if strings.Contains(out, "session open") {
		t.Errorf("debug line written at the default level:\n%s", out)
	}

	buf = capture(t, "warn", "")
	log.Info("serving", "model", "m2")
	log.Warn("announce", "err", errors.New("no peer"))
	out = buf.String()
	if strings.Contains(out, "m2") || !strings.Contains(out, `level=WARN msg=announce sys=swarm err="no peer"`) {
		t.Errorf("at warn:\n%s", out)
	}
}

// The libraries' subsystems, through gologshim (go-libp2p) and go-log's
// zap loggers (kad-dht, bitswap), reach the same output, named by sys,
// from error up (their own default) unless a level by subsystem lowers
// them, whatever Mycel's own level.
func TestLibrariesFromError(t *testing.T) {
	buf := capture(t, "debug", "")
	shim := gologshim.Logger("basichost")
	zl := golog.Logger("dht")
	shim.Warn("shim warn")
	shim.Error("shim error", "n", 1)
	zl.Warnw("zap warn", "peer", "p0")
	zl.Errorw("zap error", "peer", "p1")
	Logger("node").Debug("own debug")
	out := buf.String()
	for _, want := range []string{`msg="shim error" sys=basichost n=1`, `msg="zap error" sys=dht peer=p1`, `msg="own debug" sys=node`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"shim warn", "zap warn"} {
		if strings.Contains(out, not) {
			t.Errorf("%q written at debug (libraries start at error):\n%s", not, out)
		}
	}

	buf = capture(t, "error,dht=debug,basichost=info", "")
	zl.Debugw("zap debug", "k", 2)
	shim.Info("shim info 2")
	shim.Debug("shim debug 2")
	Logger("node").Warn("own warn")
	out = buf.String()
	if !strings.Contains(out, `msg="zap debug" sys=dht k=2`) || !strings.Contains(out, `msg="shim info 2" sys=basichost`) {
		t.Errorf("levels by subsystem did not lower the libraries':\n%s", out)
	}
	if strings.Contains(out, "shim debug 2") || strings.Contains(out, "own warn") {
		t.Errorf("written below its level:\n%s", out)
	}
}

// slog.Default's records go the same way, with no subsystem.
func TestDefaultLogger(t *testing.T) {
	buf := capture(t, "", "")
	slog.Info("from default", "k", "v")
	if out := buf.String(); !strings.Contains(out, `msg="from default" k=v`) || strings.Contains(out, "sys=") {
		t.Errorf("slog.Default:\n%s", out)
	}
}

func TestJSONFormat(t *testing.T) {
	buf := capture(t, "", FormatJSON)
	Logger("p2p").With("a", 1).WithGroup("g").With("b", 2).Info("host started", "c", 3)
	var m map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &m); err != nil {
		t.Fatalf("%v: %q", err, buf.String())
	}
	g, _ := m["g"].(map[string]any)
	if m["msg"] != "host started" || m["level"] != "INFO" || m["sys"] != "p2p" || m["a"] != 1.0 || g["b"] != 2.0 || g["c"] != 3.0 {
		t.Errorf("JSON line %v", m)
	}
	if err := Setup(Config{Format: "xml"}); err == nil {
		t.Error("format xml accepted")
	}
}

func TestParseLevels(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", "info"}, {"DEBUG", "debug"}, {"warning", "warn"}, {"error", "error"},
		{"info,swarm=debug", "info,swarm=debug"}, {"swarm=debug,dht=warn", "info,dht=warn,swarm=debug"},
	} {
		l, err := ParseLevels(tc.in)
		if err != nil || l.String() != tc.want {
			t.Errorf("ParseLevels(%q) = %v, %v; want %s", tc.in, l, err, tc.want)
		}
	}
	for _, bad := range []string{"loud", "info,debug", "=debug", "swarm=loud"} {
		if _, err := ParseLevels(bad); err == nil {
			t.Errorf("ParseLevels(%q) accepted", bad)
		}
	}
}

// The ring serves records in the order written, above the Seq asked
// for, and keeps only the last ones.
func TestRing(t *testing.T) {
	r := NewRing(4)
	if got := r.Since(0); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := 1; i <= 6; i++ {
		r.add(timeZero, slog.LevelInfo, "s", fmt.Sprint("m", i), []slog.Attr{slog.Int("i", i), slog.Group("g", slog.String("x", "y")), slog.Any("err", errors.New("e"))})
	}
	got := r.Since(0)
	if len(got) != 4 {
		t.Fatalf("%d records kept, want 4", len(got))
	}
	for k, rec := range got {
		seq := uint64(k + 3)
		if rec.Seq != seq || rec.Msg != fmt.Sprint("m", seq) || rec.Attrs["i"] != int64(seq) || rec.Sys != "s" {
			t.Errorf("record %d: %+v", k, rec)
		}
		if g, _ := rec.Attrs["g"].(map[string]any); g["x"] != "y" || rec.Attrs["err"] != "e" {
			t.Errorf("attrs %v", rec.Attrs)
		}
	}
	if got := r.Since(5); len(got) != 1 || got[0].Seq != 6 {
		t.Errorf("since 5: %+v", got)
	}
	for _, seq := range []uint64{6, 7, math.MaxUint64} {
		if got := r.Since(seq); len(got) != 0 {
			t.Errorf("since %d, the last is 6: %+v", seq, got)
		}
	}
	long := strings.Repeat("é", maxValue)
	r.add(timeZero, slog.LevelWarn, "", long, nil)
	if m := r.Since(6)[0].Msg; len(m) > maxValue+len("…") || !strings.HasSuffix(m, "é…") {
		t.Errorf("a long message kept as %d bytes", len(m))
	}
}

// Records written through a logger land in the process's ring.
func TestRecent(t *testing.T) {
	capture(t, "", "")
	Logger("node").Info("ring me", "k", "v")
	Logger("node").Debug("not me")
	recs := Recent().Since(0)
	last := recs[len(recs)-1]
	if last.Msg != "ring me" || last.Sys != "node" || last.Attrs["k"] != "v" || last.Level != slog.LevelInfo {
		t.Errorf("last record %+v", last)
	}
	if Recent().Cap() != RingSize {
		t.Errorf("ring of %d", Recent().Cap())
	}
}

var timeZero = time.Time{}
