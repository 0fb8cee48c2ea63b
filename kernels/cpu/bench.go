package cpu

import (
	"math/rand/v2"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

// randMatrixF makes a rows×cols matrix of type dt with values in
// [-scale, scale) from a fixed seed.
func randMatrixF(dt kernels.DType, rows, cols int, scale float32) *kernels.Matrix {
	r := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = (2*r.Float32() - 1) * scale
	}
	m, err := kernels.NewMatrix(dt, rows, cols, kernels.Encode(nil, dt, v))
	if err != nil {
		panic(err)
	}
	return m
}

func randVecSeed(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = 2*r.Float32() - 1
	}
	return v
}

// readTask sums a buffer in chunks, one partial sum per worker.
type readTask struct {
	buf  []float32
	sums []float32
}

const readChunk = 1 << 16

func (t *readTask) run(worker, lo, hi int) {
	for c := lo; c < hi; c++ {
		s := t.buf[c*readChunk : (c+1)*readChunk]
		t.sums[worker] += readSum(s)
	}
}

// readAll reads every byte of buf once, split over the backend's threads.
func readAll(b *Backend, buf []float32) float32 {
	t := &readTask{buf: buf, sums: make([]float32, b.pool.threads)}
	b.pool.run(t, len(buf)/readChunk, 1)
	var s float32
	for _, v := range t.sums {
		s += v
	}
	_ = unsafe.Sizeof(s)
	return s
}
