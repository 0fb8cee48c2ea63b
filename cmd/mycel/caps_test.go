package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/node/api"
)

// TestCapFlagsRefuseBadInput: mycel node refuses a cap it cannot read, a
// zero or negative one and a share of the cores out of range before it
// starts, in one line naming the flag and saying what to give.
func TestCapFlagsRefuseBadInput(t *testing.T) {
	cases := []struct {
		flag, value string
		want        []string
	}{
		{"store-cap", "lots", []string{"--store-cap", `"lots" is not a size`}},
		{"store-cap", "0", []string{"--store-cap 0", "above zero"}},
		{"store-cap", "-5GB", []string{"--store-cap -5GB", "above zero"}},
		{"serve-memory", "8 gigs", []string{"--serve-memory", "is not a size"}},
		{"serve-memory", "0GB", []string{"--serve-memory 0GB", "above zero"}},
		{"train-memory", "-1", []string{"--train-memory -1", "above zero"}},
		{"daily-transfer", "20 GB a day", []string{"--daily-transfer", "is not a size"}},
		{"daily-transfer", "0", []string{"--daily-transfer 0", "above zero"}},
		{"max-upload", "10MB", []string{"--max-upload", `"10MB" is not a rate`, "10MB/s", "80Mbit/s"}},
		{"max-upload", "fast", []string{"--max-upload", "is not a rate"}},
		{"max-upload", "0MB/s", []string{"--max-upload 0MB/s", "above zero"}},
		{"max-download", "-2Mbit/s", []string{"--max-download -2Mbit/s", "above zero"}},
		{"max-download", "10 parsecs/s", []string{"--max-download", "is not a rate"}},
		{"threads", "150%", []string{"--threads", "from 1% to 100%"}},
		{"threads", "0%", []string{"--threads", "from 1% to 100%"}},
		{"threads", "0.5%", []string{"--threads", "from 1% to 100%"}},
		{"threads", "half%", []string{"--threads", "from 1% to 100%"}},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := newRootCmd()
		cmd.SetArgs([]string{"node", "--data", t.TempDir(), "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--" + c.flag, c.value})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetOut(&bytes.Buffer{})
		err := cmd.ExecuteContext(ctx)
		started := ctx.Err() != nil
		cancel()
		if err == nil || started {
			t.Errorf("--%s %q: the node started", c.flag, c.value)
			continue
		}
		msg := err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("--%s %q: error %q, want %q in it", c.flag, c.value, msg, w)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("--%s %q: error on several lines: %q", c.flag, c.value, msg)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"10MB/s": 10e6, "80Mbit/s": 10e6, "512KiB/s": 512 << 10, "1Gbit/s": 125e6, "1.5 MB/s": 1.5e6,
		"500kbit/s": 62500, "2mbit/s": 250e3, " 1 GB/s ": 1e9, "800B/s": 800, "100/s": 100,
	} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10MB", "/s", "MB/s", "ten MB/s", "10MB/h", "10Mbit", "-1MB/s"} {
		if got, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseThreadsShare(t *testing.T) {
	for _, c := range []struct {
		in    string
		cores int
		want  int
	}{{"50%", 8, 4}, {"100%", 2, 2}, {"1%", 8, 1}, {"33%", 4, 1}, {"75%", 4, 3}, {"50 %", 2, 1}, {"3", 2, 3}, {"0", 2, 0}} {
		got, err := parseThreads(c.in, c.cores)
		if err != nil || got != c.want {
			t.Errorf("parseThreads(%q, %d cores) = %d, %v; want %d", c.in, c.cores, got, err, c.want)
		}
	}
}

// A node started with caps shows them in mycel status (text and JSON),
// and its thread cap bounds the process's Go code (GOMAXPROCS) while it
// runs, and no longer after.
func TestNodeCapsInStatus(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() {
		if got := runtime.GOMAXPROCS(0); got != before {
			t.Errorf("GOMAXPROCS %d after the node stopped, want %d again", got, before)
		}
	})
	addr := startNodeCmd(t, "--threads", "1", "--max-upload", "10MB/s", "--max-download", "80Mbit/s",
		"--daily-transfer", "20GB", "--serve-memory", "2GB", "--store-cap", "50GB")
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS %d while a node with --threads 1 runs", got)
	}
	st := statusOf(t, addr)
	want := api.Caps{Threads: 1, Cores: runtime.NumCPU(), ServeMemory: 2e9, MaxUpload: 10e6, MaxDownload: 10e6, DailyTransfer: 20e9}
	got := st.Caps
	got.TransferToday, got.TransferResets = 0, time.Time{}
	if got != want || st.StoreCap != 50e9 {
		t.Errorf("status caps %+v (store cap %d), want %+v", st.Caps, st.StoreCap, want)
	}
	text, _, err := mycel(t, "--api", addr, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"caps      compute on 1 of", "serve memory 2.0 GB", "train memory no cap", "upload 10.0MB/s, download 10.0MB/s", "of 20.0 GB a day"} {
		if !strings.Contains(text, w) {
			t.Errorf("status does not say %q:\n%s", w, text)
		}
	}
}
