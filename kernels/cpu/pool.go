package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// task is a unit of parallel work: run processes items [lo, hi). Tasks are
// preallocated structs reused call after call, so handing one to the pool
// allocates nothing.
type task interface {
	run(worker, lo, hi int)
}

// pool runs a task over a range of items on a fixed set of workers: the
// calling goroutine plus threads-1 goroutines owned by the pool.
//
// A job is published through state, which packs a generation number, a
// "closed" flag and the count of workers inside the job. A worker that sees
// a new generation joins by incrementing the count, unless the job is
// already closed, and takes chunks of items from an atomic counter until
// none are left. The caller works too; when the items run out it closes
// the job and waits only for the workers that joined. A worker the OS has
// not scheduled yet therefore costs the caller nothing: it wakes to a
// closed job and goes back to waiting. On a small machine shared with other
// processes this is what keeps the per-call cost low.
//
// Idle workers spin on state for a while after each job (decode issues jobs
// back to back, microseconds apart) and then park on a condition variable,
// so an idle node costs no CPU.
type pool struct {
	threads int

	state  atomic.Uint64 // gen<<32 | closedBit | active workers
	closed atomic.Bool
	parked atomic.Int32
	mu     sync.Mutex
	cond   *sync.Cond
	wg     sync.WaitGroup

	// The current job; written before state moves to its generation and
	// left alone until the job is closed with no worker inside.
	t     task
	n     int
	chunk int
	next  atomic.Int64
}

const (
	closedBit  = 1 << 31
	activeMask = closedBit - 1
)

// spinIters is how many times an idle worker polls for a new job before it
// parks. At a few ns per poll this is tens of microseconds.
const spinIters = 20000

func newPool(threads int) *pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &pool{threads: threads}
	p.cond = sync.NewCond(&p.mu)
	p.state.Store(closedBit) // generation 0: no job
	for w := 1; w < threads; w++ {
		p.wg.Add(1)
		go p.worker(w)
	}
	return p
}

func (p *pool) worker(id int) {
	defer p.wg.Done()
	seen := uint64(0)
	for {
		s := p.wait(seen)
		if p.closed.Load() {
			return
		}
		seen = s >> 32
		if s&closedBit != 0 || !p.state.CompareAndSwap(s, s+1) {
			continue // the job is over or moved on; wait for the next
		}
		p.work(id)
		p.state.Add(^uint64(0)) // active--
	}
}

// wait returns the state once its generation differs from seen or the pool
// is closed.
func (p *pool) wait(seen uint64) uint64 {
	for i := 0; i < spinIters; i++ {
		if s := p.state.Load(); s>>32 != seen || p.closed.Load() {
			return s
		}
	}
	p.mu.Lock()
	p.parked.Add(1)
	for p.state.Load()>>32 == seen && !p.closed.Load() {
		p.cond.Wait()
	}
	p.parked.Add(-1)
	p.mu.Unlock()
	return p.state.Load()
}

func (p *pool) work(worker int) {
	for {
		lo := int(p.next.Add(int64(p.chunk))) - p.chunk
		if lo >= p.n {
			return
		}
		p.t.run(worker, lo, min(lo+p.chunk, p.n))
	}
}

// run executes t over [0, n) and returns when every item is done. Work
// smaller than grain items per thread runs on the caller alone.
func (p *pool) run(t task, n, grain int) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	if p.threads == 1 || n < 2*grain {
		t.run(0, 0, n)
		return
	}
	// Four chunks per thread balance the load without much overhead.
	chunk := max(grain, (n+4*p.threads-1)/(4*p.threads))
	p.t, p.n, p.chunk = t, n, chunk
	p.next.Store(0)
	gen := p.state.Load()>>32 + 1
	p.state.Store(gen << 32)
	if p.parked.Load() > 0 {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	p.work(0)
	// Close the job to latecomers, then wait for those inside.
	s := p.state.Or(closedBit) | closedBit
	for spins := 0; s&activeMask != 0; spins++ {
		if spins > 100 {
			runtime.Gosched()
		}
		s = p.state.Load()
	}
	p.t = nil
}

// close stops the workers and waits for them. Safe to call twice.
func (p *pool) close() {
	if p.closed.Swap(true) {
		return
	}
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
