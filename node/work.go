package node

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/work"
)

// When the node works. The node's work.State (Node.Work) is working, or
// suspended for one or more reasons: the volunteer's pause (Pause, the
// API's POST /pause), other programs' use of the CPU in idle-only mode
// (idleLoop), the hours outside the weekly schedule (scheduleLoop), and
// whatever other parts suspend it for with their own word (the day's
// transfer limit). workLoop carries the state out: while suspended, the
// node's servers withdraw their records and drain their sessions (whose
// clients re-route at their next step), and a job being trained is left
// at a round's boundary; on resuming the servers serve and announce
// again and the node takes a job again. Block serving (block streams,
// bitswap, DHT provides) goes on: it keeps the swarm's weights reachable
// at a small cost.

// DefaultIdleThreshold and DefaultIdleWait are idle-only's defaults: the
// percent of the machine's CPU other programs may use before the node
// stops, and how long they must stay below it before the node works
// again.
const (
	DefaultIdleThreshold = 25.0
	DefaultIdleWait      = time.Minute
)

// DefaultDrainGrace is how long a suspension waits for the sessions of
// the node's servers to leave before it resets those left.
const DefaultDrainGrace = 5 * time.Second

// Work is the node's work state: other parts suspend the node with a
// word of their own (Work().Suspend(work.OverLimit, "...")) and clear
// it again (Work().Clear(work.OverLimit)).
func (n *Node) Work() *work.State { return n.work }

// Pause suspends the node's work for the volunteer, for d (0: until
// Resume), and returns the work state.
func (n *Node) Pause(d time.Duration) api.WorkState {
	if d > 0 {
		until := time.Now().Add(d)
		n.work.SuspendUntil(work.Paused, fmt.Sprintf("paused by the volunteer until %s (mycel node resume ends the pause)", until.Format("Mon 15:04")), until)
	} else {
		n.work.Suspend(work.Paused, "paused by the volunteer (mycel node resume ends the pause)")
	}
	return n.WorkState()
}

// Resume ends the volunteer's pause and returns the work state: other
// reasons may still hold the node.
func (n *Node) Resume() api.WorkState {
	n.work.Clear(work.Paused)
	return n.WorkState()
}

// WorkState is the node's work state as the API reports it.
func (n *Node) WorkState() api.WorkState {
	s := n.work.Snapshot()
	ws := api.WorkState{State: s.State, Reason: s.Reason, Since: s.Since}
	for _, e := range s.Suspensions {
		as := api.Suspension{Word: e.Word, Reason: e.Reason, Since: e.Since}
		if !e.Until.IsZero() {
			u := e.Until
			as.Until = &u
		}
		ws.Suspensions = append(ws.Suspensions, as)
	}
	return ws
}

// startWork starts the loops that watch the CPU and the schedule, and
// the one that carries the state out.
func (n *Node) startWork() error {
	if n.cfg.Paused {
		n.work.Suspend(work.Paused, "paused since the node started (--paused; mycel node resume ends the pause)")
	}
	if n.cfg.IdleOnly {
		cpu, err := work.NewCPU()
		if err != nil {
			return fmt.Errorf("node: --idle-only: %w", err)
		}
		n.wg.Go(func() { n.idleLoop(cpu) })
	}
	if !n.sched.Always() {
		n.wg.Go(n.scheduleLoop)
	}
	n.wg.Go(n.workLoop)
	return nil
}

// kickWork asks workLoop to carry the state out again (a new server
// joined).
func (n *Node) kickWork() {
	select {
	case n.workKick <- struct{}{}:
	default:
	}
}

// workLoop suspends and resumes the node's servers and training as the
// work state changes, until the node closes.
func (n *Node) workLoop() {
	ch, stop := n.work.Watch()
	defer stop()
	working := true
	for {
		s := n.work.Snapshot()
		if s.Working() != working {
			working = s.Working()
			if working {
				log.Info("work resumed")
			} else {
				log.Info("work suspended", "state", s.State, "reason", s.Reason)
			}
		}
		n.applyWork(working)
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
		case <-n.workKick:
		}
	}
}

// applyWork suspends or resumes every server of the node (together, each
// draining its sessions for at most the drain grace) and the training.
// Both do nothing where already done.
func (n *Node) applyWork(working bool) {
	n.swarmMu.Lock()
	servings := slices.Clone(n.servings)
	n.swarmMu.Unlock()
	var wg sync.WaitGroup
	for _, e := range servings {
		wg.Go(func() {
			var err error
			if working {
				err = e.s.Resume(n.ctx)
			} else {
				err = e.s.Suspend(n.ctx, n.cfg.DrainGrace)
			}
			if err != nil && n.ctx.Err() == nil {
				log.Warn("serving: suspend or resume", "working", working, "err", err)
			}
		})
	}
	wg.Wait()
	n.trainWork(working)
}

// idleLoop samples the CPU other programs use and suspends the node
// (work.Busy) while it is above the threshold, clearing it once it has
// stayed below for the quiet period.
func (n *Node) idleLoop(cpu *work.CPU) {
	threshold, wait := n.cfg.IdleThreshold, n.cfg.IdleWait
	tick := time.NewTicker(work.SampleInterval(wait))
	defer tick.Stop()
	var quiet time.Time // since when the others have used little (zero: not now)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		f, err := cpu.Sample()
		if err != nil {
			log.Warn("idle-only: measure the CPU", "err", err)
			continue
		}
		if pct := f * 100; pct > threshold {
			quiet = time.Time{}
			n.work.Suspend(work.Busy, fmt.Sprintf("idle-only: other programs use %.0f%% of the CPU, more than %g%%; the node works again once they use less for %s", pct, threshold, wait))
			continue
		}
		if quiet.IsZero() {
			quiet = time.Now()
		}
		if time.Since(quiet) >= wait {
			n.work.Clear(work.Busy)
		}
	}
}

// scheduleLoop suspends the node (work.OffSchedule) outside the weekly
// schedule, looking again at every minute's start.
func (n *Node) scheduleLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if n.sched.In(now) {
			n.work.Clear(work.OffSchedule)
		} else {
			reason := fmt.Sprintf("outside the schedule %q", n.sched.String())
			if next, ok := n.sched.Next(now); ok {
				reason += "; works again " + next.Format("Mon 15:04")
			}
			n.work.Suspend(work.OffSchedule, reason)
		}
		t.Reset(now.Truncate(time.Minute).Add(time.Minute).Sub(now))
	}
}

// fillWork checks the settings of when the node works and fills in
// their defaults.
func (c *Config) fillWork() error {
	switch {
	case c.IdleThreshold == 0:
		c.IdleThreshold = DefaultIdleThreshold
	case c.IdleThreshold < 0 || c.IdleThreshold > 100:
		return fmt.Errorf("node: idle threshold %g%%: want a percent of the machine's CPU from 0 to 100", c.IdleThreshold)
	}
	switch {
	case c.IdleWait == 0:
		c.IdleWait = DefaultIdleWait
	case c.IdleWait < 0:
		return fmt.Errorf("node: idle wait %s: want a positive duration such as 1m", c.IdleWait)
	}
	if c.DrainGrace <= 0 {
		c.DrainGrace = DefaultDrainGrace
	}
	if _, err := work.ParseSchedule(c.Schedule); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}
