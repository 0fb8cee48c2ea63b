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
// A job is published by bumping gen. Workers spin on gen for a short while
// after each job (decode issues jobs back to back, microseconds apart) and
// then park on a condition variable, so an idle node costs no CPU. Items are
// handed out in chunks through an atomic counter, which balances the load
// when one core is busy with something else.
type pool struct {
	threads int

	gen     atomic.Uint64
	closed  atomic.Bool
	parked  atomic.Int32
	mu      sync.Mutex
	cond    *sync.Cond
	running atomic.Int32 // workers still inside the current job
	wg      sync.WaitGroup

	// The current job; written before gen is bumped.
	t     task
	n     int
	chunk int
	next  atomic.Int64
}

// spinIters is how many times an idle worker polls for a new job before it
// parks. At a few ns per poll this is tens of microseconds.
const spinIters = 20000

func newPool(threads int) *pool {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &pool{threads: threads}
	p.cond = sync.NewCond(&p.mu)
	for w := 1; w < threads; w++ {
		p.wg.Add(1)
		go p.worker(w)
	}
	return p
}

func (p *pool) worker(id int) {
	defer p.wg.Done()
	var seen uint64
	for {
		g := p.wait(seen)
		if p.closed.Load() {
			return
		}
		seen = g
		p.work(id)
		p.running.Add(-1)
	}
}

// wait returns once gen differs from seen or the pool is closed.
func (p *pool) wait(seen uint64) uint64 {
	for i := 0; i < spinIters; i++ {
		if g := p.gen.Load(); g != seen || p.closed.Load() {
			return g
		}
	}
	p.mu.Lock()
	p.parked.Add(1)
	for p.gen.Load() == seen && !p.closed.Load() {
		p.cond.Wait()
	}
	p.parked.Add(-1)
	p.mu.Unlock()
	return p.gen.Load()
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
	p.running.Store(int32(p.threads - 1))
	p.gen.Add(1)
	if p.parked.Load() > 0 {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	p.work(0)
	for p.running.Load() != 0 {
		runtime.Gosched()
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
