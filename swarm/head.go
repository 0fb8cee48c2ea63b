package swarm

import (
	"fmt"
	"time"
)

// DefaultHeadWait is how long, at most, the first session of a client to
// reach the output head waits for the client's other sessions in a step.
const DefaultHeadWait = 3 * time.Millisecond

// headReq is one session's wait for its logits.
type headReq struct {
	x, logits []float32
	done      chan error
}

// enterStep counts a session into a step: from then on, a session
// computing its logits waits (a little) for this one.
func (cl *Client) enterStep() {
	cl.hmu.Lock()
	cl.inStep++
	cl.hmu.Unlock()
}

// leaveStep counts a session out of a step, whatever its end.
func (cl *Client) leaveStep() {
	cl.hmu.Lock()
	cl.inStep--
	cl.hmu.Unlock()
	cl.kick()
}

func (cl *Client) kick() {
	select {
	case cl.headKick <- struct{}{}:
	default:
	}
}

// head computes the logits of hidden state x (one row). The sessions of a
// client that reach the head together share one pass over its weights:
// the first to arrive leads, waits until every session in a step has
// queued its row or HeadWait has passed, and runs them all as one batch;
// the others wait for their rows. A client with one session in a step
// never waits.
//
// r is the session's own request, reused step after step: a decode step
// allocates nothing here.
func (cl *Client) head(r *headReq) error {
	if cl.cfg.HeadWait < 0 {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.e.Logits(r.logits, r.x)
	}
	if r.done == nil {
		r.done = make(chan error, 1)
	}
	cl.hmu.Lock()
	cl.hq = append(cl.hq, r)
	lead := !cl.leading
	cl.leading = true
	cl.hmu.Unlock()
	cl.kick()
	if !lead {
		return <-r.done
	}
	var timer *time.Timer // made only if the leader has to wait
	var batch []*headReq
	for batch == nil {
		cl.hmu.Lock()
		if len(cl.hq) >= cl.inStep {
			batch, cl.hq, cl.leading = cl.hq, nil, false
		}
		cl.hmu.Unlock()
		if batch != nil {
			break
		}
		if timer == nil {
			timer = time.NewTimer(cl.cfg.HeadWait)
			defer timer.Stop()
		}
		select {
		case <-cl.headKick:
		case <-timer.C:
			cl.hmu.Lock()
			batch, cl.hq, cl.leading = cl.hq, nil, false
			cl.hmu.Unlock()
		}
	}
	err := cl.runHead(batch)
	for _, b := range batch {
		if b != r {
			b.done <- err
		}
	}
	return err
}

// runHead computes the logits of every request of batch in one pass.
func (cl *Client) runHead(batch []*headReq) error {
	cfg := &cl.e.Weights().Config
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(batch) == 1 {
		if err := cl.e.Logits(batch[0].logits, batch[0].x); err != nil {
			return fmt.Errorf("swarm: %w", err)
		}
		return nil
	}
	n := len(batch)
	if cap(cl.hx) < n*cfg.Dim {
		cl.hx = make([]float32, n*cfg.Dim)
		cl.hl = make([]float32, n*cfg.Vocab)
	}
	x, out := cl.hx[:n*cfg.Dim], cl.hl[:n*cfg.Vocab]
	for i, b := range batch {
		copy(x[i*cfg.Dim:(i+1)*cfg.Dim], b.x[:cfg.Dim])
	}
	if err := cl.e.LogitsRows(out, x, n); err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	for i, b := range batch {
		copy(b.logits[:cfg.Vocab], out[i*cfg.Vocab:(i+1)*cfg.Vocab])
	}
	cl.headBatches.Add(1)
	cl.headRows.Add(int64(n))
	return nil
}

// HeadStats says how many passes over the output head ran more than one
// session's row, and how many rows those passes held.
func (cl *Client) HeadStats() (batches, rows int64) {
	return cl.headBatches.Load(), cl.headRows.Load()
}
