package cpu

import (
	"sync/atomic"
	"testing"
	"time"
)

type countTask struct{ n atomic.Int64 }

func (t *countTask) run(_, lo, hi int) { t.n.Add(int64(hi - lo)) }

func TestPoolRunsEveryItem(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := newPool(threads)
		for _, n := range []int{0, 1, 2, 7, 100, 1001} {
			for _, grain := range []int{1, 3, 1000} {
				var c countTask
				p.run(&c, n, grain)
				if c.n.Load() != int64(n) {
					t.Errorf("threads %d n %d grain %d: ran %d items", threads, n, grain, c.n.Load())
				}
			}
		}
		// After the workers park, a job must still wake them.
		time.Sleep(20 * time.Millisecond)
		var c countTask
		p.run(&c, 64, 1)
		if c.n.Load() != 64 {
			t.Errorf("after parking: ran %d items", c.n.Load())
		}
		p.close()
		p.close()
	}
}

// BenchmarkPoolRoundTrip is the cost of handing a job of two one-item
// chunks to the workers and waiting for it: the fixed price of every
// parallel kernel call, paid about 50 times per token in decode.
func BenchmarkPoolRoundTrip(b *testing.B) {
	p := newPool(0)
	defer p.close()
	var c countTask
	for b.Loop() {
		p.run(&c, 2*p.threads, 1)
	}
}
