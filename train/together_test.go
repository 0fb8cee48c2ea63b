package train

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
)

// The arithmetic of peers training one job together, checked without a
// network: what the averaging group computes, done here by hand.

// builtinFixture loads the built-in model with its tokenizer.
func builtinFixture(t *testing.T) fixture {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return fixture{w: m.Weights, tok: m.Tokenizer, be: be}
}

const togetherText = "Once upon a time, a little fox named Tilly found a red kite in the tall grass. " +
	"She ran up the hill with it, and the wind took the kite high into the sky. " +
	"Tilly laughed and laughed, and her friend the owl came to watch."

// togetherJob is a job on the built-in model whose global batch is 8
// sequences of 16 tokens.
func togetherJob(method string) *Job {
	j := DefaultJob("tales", "fox")
	j.Method, j.Steps, j.Warmup, j.CheckpointEvery = method, 5, 1, 0
	j.SeqLen, j.BatchTokens, j.LR, j.EvalFraction = 16, 8*16, 1e-3, 0
	j.LoRARank, j.LoRAAlpha = 4, 8
	return j
}

func togetherSeqs(t *testing.T, f fixture, j *Job) []Sequence {
	t.Helper()
	var recs []Record
	for range 3 {
		recs = append(recs, Record{Text: togetherText})
	}
	seqs, err := Pack(Tokenize(recs, f.tok), j.SeqLen, 0)
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// relDiff is the relative difference of two vectors, ‖a−b‖ / ‖b‖.
func relDiff(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		m += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / m)
}

// Share splits a batch into contiguous runs that cover it once.
func TestShare(t *testing.T) {
	batch := make([]Sequence, 10)
	for i := range batch {
		batch[i].Tokens = []int{i}
	}
	for n := 1; n <= 12; n++ {
		next := 0
		for i := range n {
			for _, s := range Share(batch, i, n) {
				if s.Tokens[0] != next {
					t.Fatalf("%d members: member %d has sequence %d, want %d", n, i, s.Tokens[0], next)
				}
				next++
			}
		}
		if next != len(batch) {
			t.Fatalf("%d members cover %d of %d sequences", n, next, len(batch))
		}
	}
}

// Four peers, each computing the gradients of its quarter of the global
// batch, averaged weighted by trained tokens, give after 5 steps the
// parameters of one peer that trains the whole batch (relative difference
// under 1e-5), for full fine-tuning and LoRA.
func TestFourPeersEqualOne(t *testing.T) {
	f := builtinFixture(t)
	for _, method := range []string{MethodLoRA, MethodFull} {
		t.Run(method, func(t *testing.T) {
			j := togetherJob(method)
			seqs := togetherSeqs(t, f, j)
			one, err := NewTrainer(j, f.w, f.be, seqs, nil)
			if err != nil {
				t.Fatal(err)
			}
			const n = 4
			peers := make([]*Trainer, n)
			for i := range peers {
				if peers[i], err = NewTrainer(j, f.w, f.be, seqs, nil); err != nil {
					t.Fatal(err)
				}
			}
			size := VectorLen(one.Params)
			for step := range j.Steps {
				want, err := one.RunStep()
				if err != nil {
					t.Fatal(err)
				}
				sum := make([]float64, size)
				var loss float64
				total := 0
				for i, p := range peers {
					l, tokens, err := p.Gradients(Share(p.NextBatch(), i, n))
					if err != nil {
						t.Fatal(err)
					}
					for k, g := range Flatten(p.Params, Gradients, nil) {
						sum[k] += float64(tokens) * float64(g)
					}
					loss += float64(tokens) * l
					total += tokens
				}
				avg := make([]float32, size)
				for k := range sum {
					avg[k] = float32(sum[k] / float64(total))
				}
				for _, p := range peers {
					if err := Unflatten(p.Params, Gradients, avg); err != nil {
						t.Fatal(err)
					}
					got, err := p.ApplyGradients(loss/float64(total), total)
					if err != nil {
						t.Fatal(err)
					}
					if got.Tokens != want.Tokens || math.Abs(got.Loss-want.Loss) > 1e-5*want.Loss {
						t.Fatalf("step %d: peers' loss %.6f over %d tokens, one's %.6f over %d", step+1, got.Loss, got.Tokens, want.Loss, want.Tokens)
					}
				}
			}
			ref := Flatten(one.Params, Values, nil)
			h := Hash(peers[0].Params)
			for i, p := range peers {
				if Hash(p.Params) != h {
					t.Fatalf("peer %d's parameters differ from peer 0's", i)
				}
			}
			d := relDiff(Flatten(peers[0].Params, Values, nil), ref)
			t.Logf("after %d steps: relative difference %.2e", j.Steps, d)
			if d > 1e-5 {
				t.Errorf("after %d steps the peers' parameters differ from one's by %.2e (relative), want under 1e-5", j.Steps, d)
			}
			init, err := NewTrainer(j, f.w, f.be, seqs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if moved := relDiff(Flatten(init.Params, Values, nil), ref); moved < 100*max(d, 1e-9) {
				t.Errorf("training moved the parameters by %.2e only, too little to tell a difference of %.2e", moved, d)
			}
		})
	}
}

// DiLoCo with one peer, H = 1, outer learning rate 1 and momentum 0 is
// plain AdamW; with momentum the outer step is Nesterov's.
func TestOuterStep(t *testing.T) {
	f := builtinFixture(t)
	j := togetherJob(MethodLoRA)
	seqs := togetherSeqs(t, f, j)
	plain, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	outer := NewOuter(peer.Params, 1, 0)
	var delta []float32
	for range j.Steps {
		if _, err := plain.RunStep(); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.RunStep(); err != nil {
			t.Fatal(err)
		}
		delta = outer.Delta(peer.Params, delta)
		if err := outer.Step(peer.Params, delta); err != nil {
			t.Fatal(err)
		}
	}
	if d := relDiff(Flatten(peer.Params, Values, nil), Flatten(plain.Params, Values, nil)); d > 1e-6 {
		t.Errorf("DiLoCo with H=1, lr 1, momentum 0 differs from AdamW by %.2e", d)
	}

	// Nesterov by hand on one value: v = 0.9·0 + 2 = 2; θ = 1 − 0.5·(2 + 0.9·2) = −0.9;
	// then v = 0.9·2 + 1 = 2.8; θ = −0.9 − 0.5·(1 + 0.9·2.8) = −2.66.
	p := []*Param{{Name: "w", W: []float32{1}, G: []float32{0}}}
	o := NewOuter(p, 0.5, 0.9)
	for k, want := range []float64{-0.9, -2.66} {
		if err := o.Step(p, []float32{float32(2 - k)}); err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(p[0].W[0])-want) > 1e-6 {
			t.Errorf("outer step %d: θ = %v, want %v", k+1, p[0].W[0], want)
		}
	}
	if err := o.Step(p, []float32{float32(math.NaN())}); err == nil || p[0].W[0] != o.Start[0] {
		t.Errorf("a NaN change: %v, θ %v", err, p[0].W[0])
	}
}

// A DiLoCo checkpoint carries the outer optimizer's parameters and
// momentum, not the inner moments, and restores both.
func TestOuterCheckpoint(t *testing.T) {
	f := builtinFixture(t)
	j := togetherJob(MethodLoRA)
	seqs := togetherSeqs(t, f, j)
	tr, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	outer := NewOuter(tr.Params, 0.7, 0.9)
	for range 2 {
		if _, err := tr.RunStep(); err != nil {
			t.Fatal(err)
		}
	}
	if err := outer.Step(tr.Params, outer.Delta(tr.Params, nil)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tr.WriteOuterCheckpoint(&buf, outer); err != nil {
		t.Fatal(err)
	}
	h, err := CheckCheckpoint(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if h.Outer == nil || h.Outer.LR != 0.7 || h.Outer.Momentum != 0.9 || h.AdamStep != 0 || h.Step != 2 {
		t.Fatalf("header %+v", h)
	}
	// Two arrays a tensor instead of three.
	if n := VectorLen(tr.Params); buf.Len() > 8*n+len(h.Job)+4096 {
		t.Errorf("%d bytes for %d values: the inner moments are in it", buf.Len(), n)
	}
	fresh, err := NewTrainer(j, f.w, f.be, seqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fresh.RestoreOuter(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.LR != 0.7 || got.Momentum != 0.9 {
		t.Fatalf("outer %+v", got)
	}
	if Hash(fresh.Params) != Hash(tr.Params) || fresh.Step != 2 || !fresh.Cursor.Same(tr.Cursor) || fresh.Opt.M != nil {
		t.Error("the restored trainer differs in parameters, step, cursor or inner moments")
	}
	if relDiff(got.V, outer.V) != 0 || relDiff(got.Start, outer.Start) != 0 {
		t.Error("the restored outer optimizer differs")
	}
	// The round still to be averaged, when the averaging runs behind,
	// travels with it; one naming sequences the data does not hold is
	// refused.
	outer.Pending = &PendingRound{Members: []string{"a", "b"}, Batches: [][]int{{0, 1, 2}, {3, 4, 5}}}
	buf.Reset()
	if err := tr.WriteOuterCheckpoint(&buf, outer); err != nil {
		t.Fatal(err)
	}
	if got, err := fresh.RestoreOuter(buf.Bytes()); err != nil || got.Pending == nil ||
		!slices.Equal(got.Pending.Members, outer.Pending.Members) || !slices.Equal(got.Pending.Batches[1], outer.Pending.Batches[1]) {
		t.Fatalf("pending round %+v restored as %+v, %v", outer.Pending, got, err)
	}
	for name, pr := range map[string]*PendingRound{
		"sequence out of range": {Members: []string{"a"}, Batches: [][]int{{len(seqs)}}},
		"negative sequence":     {Members: []string{"a"}, Batches: [][]int{{-1}}},
		"no members":            {Batches: [][]int{{0}}},
	} {
		outer.Pending = pr
		buf.Reset()
		if err := tr.WriteOuterCheckpoint(&buf, outer); err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.RestoreOuter(buf.Bytes()); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("%s: %v, want ErrBadCheckpoint", name, err)
		}
	}
	outer.Pending = nil
	// A plain checkpoint has no outer optimizer.
	buf.Reset()
	if err := tr.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	if o, err := fresh.RestoreOuter(buf.Bytes()); err != nil || o != nil {
		t.Errorf("plain checkpoint: outer %v, %v", o, err)
	}
}
