package model_test

import (
	"errors"
	"math"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// TestForwardRowsMatchesOneByOne runs several sequences, each with its own
// history length, through ForwardRows and compares every row with Forward
// of that row alone: bit for bit for a narrow batch (row by row matrix
// products), to rounding for a wide one (matrix-matrix kernel).
func TestForwardRowsMatchesOneByOne(t *testing.T) {
	for _, tc := range []struct {
		rows  int
		exact bool
	}{{1, true}, {3, true}, {9, false}} {
		cfg := testConfig(kernels.RopeAdjacent)
		w := randomWeights(t, cfg, kernels.F32, 7)
		e := model.NewEngine(w, openBackend(t, 2))
		d := cfg.Dim
		var batch, alone []*model.Cache
		for i := 0; i < tc.rows; i++ {
			a, _ := e.NewCache(1, 3, 16)
			b, _ := e.NewCache(1, 3, 16)
			// Give sequence i a history of i+1 positions, the same in both.
			hist := make([]float32, (i+1)*d)
			for j := range hist {
				hist[j] = float32(math.Sin(float64(j*(i+3)))) * 0.5
			}
			h2 := append([]float32(nil), hist...)
			if err := e.Forward(a, hist, i+1); err != nil {
				t.Fatal(err)
			}
			if err := e.Forward(b, h2, i+1); err != nil {
				t.Fatal(err)
			}
			batch, alone = append(batch, a), append(alone, b)
		}
		for step := 0; step < 3; step++ {
			x := make([]float32, tc.rows*d)
			for j := range x {
				x[j] = float32(math.Cos(float64(j+step*31))) * 0.5
			}
			want := append([]float32(nil), x...)
			if err := e.ForwardRows(batch, x); err != nil {
				t.Fatal(err)
			}
			for i, c := range alone {
				if err := e.Forward(c, want[i*d:(i+1)*d], 1); err != nil {
					t.Fatal(err)
				}
			}
			for j := range x {
				diff := math.Abs(float64(x[j] - want[j]))
				if tc.exact && diff != 0 || diff > 1e-4*(1+math.Abs(float64(want[j]))) {
					t.Fatalf("%d rows, step %d: value %d (row %d) is %g, one by one %g", tc.rows, step, j, j/d, x[j], want[j])
				}
			}
			for i := range batch {
				if batch[i].Len != alone[i].Len {
					t.Fatalf("row %d: cache length %d, one by one %d", i, batch[i].Len, alone[i].Len)
				}
			}
		}
	}
}

func TestForwardRowsErrors(t *testing.T) {
	cfg := testConfig(kernels.RopeAdjacent)
	w := randomWeights(t, cfg, kernels.F32, 7)
	e := model.NewEngine(w, openBackend(t, 1))
	a, _ := e.NewCache(0, 2, 2)
	b, _ := e.NewCache(1, 3, 2)
	x := make([]float32, 2*cfg.Dim)
	if err := e.ForwardRows([]*model.Cache{a, b}, x); err == nil {
		t.Error("caches over different spans: no error")
	}
	if err := e.ForwardRows([]*model.Cache{a, a}, x); err == nil {
		t.Error("one cache twice: no error")
	}
	a.Len = 2
	if err := e.ForwardRows([]*model.Cache{a}, x); !errors.Is(err, model.ErrContextFull) {
		t.Errorf("full cache: %v, want ErrContextFull", err)
	}
}

// TestForwardRowsQuantized checks the batches ForwardRows pads (two and
// three rows) or splits (4k+1 rows) for block-quantized weights: every
// row matches Forward of that row alone to rounding.
func TestForwardRowsQuantized(t *testing.T) {
	cfg := model.Config{
		Arch: "llama", Dim: 64, Hidden: 96, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 37,
		Context: 16, RopeTheta: 10000, NormEps: 1e-5, SharedClassifier: true,
	}
	for _, dt := range []kernels.DType{kernels.Q8_0, kernels.Q4_0} {
		w := randomWeights(t, cfg, dt, 11)
		e := model.NewEngine(w, openBackend(t, 1))
		d := cfg.Dim
		for _, rows := range []int{2, 3, 4, 5, 9} {
			var batch, alone []*model.Cache
			for i := 0; i < rows; i++ {
				a, _ := e.NewCache(0, 2, 8)
				b, _ := e.NewCache(0, 2, 8)
				batch, alone = append(batch, a), append(alone, b)
			}
			for step := 0; step < 2; step++ {
				x := make([]float32, rows*d)
				for j := range x {
					x[j] = float32(math.Sin(float64(j*7+step*13))) * 0.5
				}
				want := append([]float32(nil), x...)
				if err := e.ForwardRows(batch, x); err != nil {
					t.Fatal(err)
				}
				for i, c := range alone {
					if err := e.Forward(c, want[i*d:(i+1)*d], 1); err != nil {
						t.Fatal(err)
					}
				}
				for j := range x {
					if diff := math.Abs(float64(x[j] - want[j])); diff > 1e-4*(1+math.Abs(float64(want[j]))) {
						t.Fatalf("%s, %d rows, step %d: value %d (row %d) is %g, one by one %g", dt, rows, step, j, j/d, x[j], want[j])
					}
				}
			}
		}
	}
}
