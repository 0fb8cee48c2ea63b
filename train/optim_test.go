package train

import (
	"errors"
	"math"
	"testing"
)

// AdamW against a float64 reference of the same update, over a few steps
// with decay on one parameter and not on the other.
func TestAdamWMatchesReference(t *testing.T) {
	w1 := []float32{0.5, -1.25, 2, 0}
	w2 := []float32{1, -0.5}
	params := []*Param{{Name: "a", W: w1, G: make([]float32, 4), Decay: true}, {Name: "b", W: w2, G: make([]float32, 2)}}
	ref := [][]float64{{0.5, -1.25, 2, 0}, {1, -0.5}}
	m := [][]float64{make([]float64, 4), make([]float64, 2)}
	v := [][]float64{make([]float64, 4), make([]float64, 2)}
	o := NewAdamW(0.1)
	for step := 1; step <= 5; step++ {
		lr := 0.01 * float64(step)
		for i, p := range params {
			for j := range p.G {
				p.G[j] = float32(math.Sin(float64(step*7+i*3+j)) * 0.3)
			}
		}
		if err := o.Update(params, lr); err != nil {
			t.Fatal(err)
		}
		for i, p := range params {
			wd := 0.0
			if p.Decay {
				wd = 0.1
			}
			for j := range ref[i] {
				g := float64(p.G[j])
				m[i][j] = 0.9*m[i][j] + 0.1*g
				v[i][j] = 0.999*v[i][j] + 0.001*g*g
				mh := m[i][j] / (1 - math.Pow(0.9, float64(step)))
				vh := v[i][j] / (1 - math.Pow(0.999, float64(step)))
				ref[i][j] -= lr * (mh/(math.Sqrt(vh)+1e-8) + wd*ref[i][j])
				if d := math.Abs(float64(p.W[j]) - ref[i][j]); d > 1e-5 {
					t.Fatalf("step %d param %s[%d]: %v, reference %v", step, p.Name, j, p.W[j], ref[i][j])
				}
			}
		}
	}
	if o.Step != 5 {
		t.Errorf("step count %d", o.Step)
	}
	if err := o.Update(params[:1], 0.1); err == nil {
		t.Error("an update of other parameters than the state's was accepted")
	}
}

// An update shared among workers is the same, bit for bit, as one made
// alone, across parameters longer and shorter than a worker's chunk.
func TestAdamWWorkers(t *testing.T) {
	sizes := []int{3, adamChunk + 17, 2*adamChunk - 1, 5}
	build := func() ([]*Param, *AdamW) {
		var params []*Param
		for i, n := range sizes {
			p := &Param{Name: string(rune('a' + i)), W: make([]float32, n), G: make([]float32, n), Decay: i%2 == 0}
			for j := range p.W {
				p.W[j] = float32(math.Cos(float64(i*n+j))) * 0.5
			}
			params = append(params, p)
		}
		return params, NewAdamW(0.01)
	}
	one, oneOpt := build()
	many, manyOpt := build()
	manyOpt.Workers = 3
	for step := range 3 {
		for _, ps := range [][]*Param{one, many} {
			for i, p := range ps {
				for j := range p.G {
					p.G[j] = float32(math.Sin(float64(step*31+i*7+j))) * 0.2
				}
			}
		}
		if err := oneOpt.Update(one, 1e-3); err != nil {
			t.Fatal(err)
		}
		if err := manyOpt.Update(many, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	for i := range one {
		for j := range one[i].W {
			if math.Float32bits(one[i].W[j]) != math.Float32bits(many[i].W[j]) {
				t.Fatalf("param %d[%d]: %v alone, %v with 3 workers", i, j, one[i].W[j], many[i].W[j])
			}
		}
	}
}

func TestSchedule(t *testing.T) {
	j := DefaultJob("m", "d")
	j.Steps, j.Warmup, j.LR = 100, 10, 1e-3
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	if !near(j.LRAt(0), 1e-4) || !near(j.LRAt(9), 1e-3) {
		t.Errorf("warmup: %v %v", j.LRAt(0), j.LRAt(9))
	}
	if !near(j.LRAt(10), 1e-3) || !near(j.LRAt(99), 1e-4) {
		t.Errorf("cosine ends: %v %v", j.LRAt(10), j.LRAt(99))
	}
	for s := 11; s < 100; s++ {
		if j.LRAt(s) > j.LRAt(s-1) {
			t.Fatalf("learning rate rises after warmup at step %d", s)
		}
	}
	j.Steps, j.Warmup = 1, 0
	if j.LRAt(0) != 1e-3 {
		t.Errorf("single step: %v", j.LRAt(0))
	}
}

func TestClipGrads(t *testing.T) {
	p := []*Param{{G: []float32{3, 0}}, {G: []float32{4}}}
	n, err := ClipGrads(p, 1)
	if err != nil || n != 5 {
		t.Fatalf("norm %v, %v", n, err)
	}
	if got := GradNorm(p); math.Abs(got-1) > 1e-6 {
		t.Errorf("clipped norm %v", got)
	}
	if n, _ := ClipGrads(p, 0); math.Abs(n-1) > 1e-6 {
		t.Errorf("no clipping changed the norm: %v", n)
	}
	p[1].G[0] = float32(math.NaN())
	if _, err := ClipGrads(p, 1); !errors.Is(err, ErrNotFinite) {
		t.Errorf("NaN gradient: %v", err)
	}
	ZeroGrads(p)
	if GradNorm(p) != 0 {
		t.Error("ZeroGrads left gradients")
	}
}
