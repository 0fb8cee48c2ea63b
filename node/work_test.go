package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
	"github.com/mycel-net/mycel/node/work"
	"github.com/mycel-net/mycel/swarm"
)

// waitState polls the node's API until its state is want, and returns
// the status then.
func waitState(t *testing.T, n *Node, want string, within time.Duration) api.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cl := api.NewClient(n.APIURL())
	for {
		st, err := cl.Status(ctx)
		if err == nil && st.State == want {
			return st
		}
		if ctx.Err() != nil {
			t.Fatalf("state %q (%q) after %s, want %q (%v)", st.State, st.Reason, within, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spin starts a process per core that spins until the returned function
// stops them.
func spin(t *testing.T) func() {
	t.Helper()
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			c.Process.Signal(os.Kill)
			c.Wait()
		}
		cmds = nil
	}
	t.Cleanup(stop)
	for range runtime.NumCPU() {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			t.Fatalf("start a busy loop: %v", err)
		}
		cmds = append(cmds, c)
	}
	return stop
}

// quietMachine measures the CPU other programs use for a second: where
// it is above pct the idle-only test cannot tell its own busy loops from
// them, and it skips (it fails under CI=true, whose machine must be
// quiet).
func quietMachine(t *testing.T, pct float64) {
	t.Helper()
	cpu, err := work.NewCPU()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	f, err := cpu.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if f*100 > pct {
		msg := fmt.Sprintf("other programs use %.0f%% of this machine's CPU, above %g%%: the idle-only test needs a quiet machine (run it when nothing else runs)", f*100, pct)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// In idle-only mode, other processes keeping every core busy suspend the
// node's work ("busy", with a reason), counted in its metrics; once they
// stop, it works again after the quiet period.
func TestIdleOnly(t *testing.T) {
	if runtime.GOOS != "linux" {
		cfg := testConfig(t)
		cfg.IdleOnly = true
		n, err := New(cfg)
		if err == nil {
			n.Close()
		}
		if err := n.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "Linux only") {
			t.Fatalf("idle-only on %s: %v", runtime.GOOS, err)
		}
		return
	}
	const wait, threshold = time.Second, 60
	quietMachine(t, threshold/2)
	cfg := testConfig(t)
	cfg.IdleOnly, cfg.IdleThreshold, cfg.IdleWait = true, threshold, wait
	n := startNode(t, cfg)
	time.Sleep(3 * work.SampleInterval(wait)) // a few samples taken
	waitState(t, n, work.Working, 30*time.Second)

	stop := spin(t)
	began := time.Now()
	st := waitState(t, n, work.Busy, 10*time.Second)
	t.Logf("busy after %s: %s", time.Since(began).Round(time.Millisecond), st.Reason)
	if !strings.Contains(st.Reason, "idle-only") || !strings.Contains(st.Reason, "60%") ||
		len(st.Suspensions) != 1 || st.Suspensions[0].Word != work.Busy {
		t.Errorf("busy status: %+v", st.WorkState)
	}
	stop()
	stopped := time.Now()
	waitState(t, n, work.Working, 30*time.Second)
	quiet := time.Since(stopped)
	t.Logf("working again %s after the loops stopped", quiet.Round(time.Millisecond))
	if quiet < wait {
		t.Errorf("working again %s after the loops stopped, before the quiet period of %s", quiet, wait)
	}

	resp, err := http.Get(n.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range []string{`mycel_suspensions_total{reason="busy"} 1`, `mycel_work_state{state="working"} 1`, `mycel_work_state{state="busy"} 0`} {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
}

// Settings of when to work that make no sense are refused, named.
func TestWorkConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.IdleThreshold = 150 }, "idle threshold 150%"},
		{func(c *Config) { c.IdleWait = -time.Second }, "idle wait -1s"},
		{func(c *Config) { c.Schedule = "mon-fri 18:00" }, `hours "18:00"`},
	} {
		cfg := testConfig(t)
		tc.set(&cfg)
		n, err := New(cfg)
		if err == nil {
			n.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want an error with %q", err, tc.want)
		}
	}
}

// A schedule that leaves out the hour now starts the node off-schedule,
// its servers withdrawn.
func TestOffSchedule(t *testing.T) {
	now := time.Now()
	day := strings.ToLower(now.Add(-24 * time.Hour).Format("Mon")) // yesterday only
	cfg := testConfig(t)
	cfg.Schedule = day + " all"
	n := startNode(t, cfg)
	st := waitState(t, n, work.OffSchedule, 10*time.Second)
	if !strings.Contains(st.Reason, `outside the schedule "`+day+` all"`) || !strings.Contains(st.Reason, "works again") {
		t.Errorf("off-schedule reason %q", st.Reason)
	}
}

// Pausing the server a session runs through, in the middle of its
// generation, sends the session elsewhere at its next step: the client
// replays the hop to the other server and ends with the tokens of an
// undisturbed run. The paused node withdraws its record and serves again
// once resumed.
func TestPauseReroutesSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg, res := publishedSwarm(ctx, t)
	servers := map[peer.ID]*Node{}
	for range 2 {
		s := startNode(t, cfg())
		if _, err := s.Serve(ctx, ServeRequest{Model: res.CID, Layers: "0:6", Threads: 1}); err != nil {
			t.Fatal(err)
		}
		servers[s.Host().ID()] = s
	}
	e := startNode(t, cfg())
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	serving := func(want int) {
		t.Helper()
		for {
			st, err := e.SwarmStatus(ctx, res.CID)
			n := 0
			for _, s := range st.Servers {
				if s.State == string(swarm.StateServing) {
					n++
				}
			}
			if err == nil && n == want {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("the client never saw %d servers serving: %+v, %v", want, st, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	serving(2)
	sm, err := e.SwarmModel(ctx, res.CID)
	if err != nil {
		t.Fatal(err)
	}

	const tokens = 60
	ref := builtinGreedy(t, testmodels.BuiltinPrompt, tokens, true)
	var mu sync.Mutex
	var events []swarm.Event
	var first peer.ID
	var paused chan api.WorkState
	var text strings.Builder
	count := 0
	_, err = sm.CompleteWithEvents(ctx, testmodels.BuiltinPrompt, openai.CompleteOptions{MaxTokens: tokens, IgnoreEOS: true, Sampler: model.SamplerConfig{}},
		func(s string) error {
			text.WriteString(s)
			if count++; count == 5 {
				mu.Lock()
				p := first
				mu.Unlock()
				// Pause the hop's node through its API, while the
				// generation goes on.
				paused = make(chan api.WorkState, 1)
				go func() {
					ws, err := api.NewClient(servers[p].APIURL()).Pause(ctx, 0)
					if err != nil {
						t.Errorf("pause: %v", err)
					}
					paused <- ws
				}()
			}
			time.Sleep(20 * time.Millisecond) // a slow reader: the pause lands mid-way
			return nil
		},
		func(ev swarm.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
			if ev.Kind == swarm.EventRoute && first == "" {
				first = ev.Hop.Peer
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if paused == nil {
		t.Fatal("the generation ended before the pause")
	}
	ws := <-paused
	if ws.State != work.Paused {
		t.Errorf("pause answered %+v", ws)
	}
	if text.String() != ref.Text {
		t.Errorf("text with a pause mid-way:\n%q\nwant\n%q", text.String(), ref.Text)
	}
	var left *swarm.Event
	for i, ev := range events {
		t.Logf("event %s", ev.Kind)
		if ev.Kind == swarm.EventLeft {
			left = &events[i]
		}
	}
	if left == nil || left.Replaced != first || left.Hop.Peer == first || left.Replayed == 0 {
		t.Fatalf("no re-route away from the paused server %s: %+v", first, events)
	}
	if !strings.Contains(left.Err.Error(), "shutting down") {
		t.Errorf("the session left the paused server for %v, want its going-away answer", left.Err)
	}
	p := servers[first]
	if st := p.Status(); st.State != work.Paused || len(st.Serving) != 1 || st.Serving[0].Sessions != 0 {
		t.Errorf("the paused node's status: %+v, serving %+v", st.WorkState, st.Serving)
	}
	serving(1) // its record withdrawn

	if ws, err := api.NewClient(p.APIURL()).Resume(ctx); err != nil || ws.State != work.Working {
		t.Fatalf("resume: %+v, %v", ws, err)
	}
	serving(2)
}
