package train

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
)

// BenchmarkStep times optimizer steps of a stories15M-shaped model (random
// weights, random tokens, batch 4×256): full fine-tuning on f32 and LoRA
// on a Q4_0 base, with 2 threads. It reports trained tokens per second.
func BenchmarkStep(b *testing.B) {
	for _, c := range []struct{ method, dtype string }{{MethodFull, "f32"}, {MethodLoRA, "q4_0"}, {MethodLoRA, "f32"}} {
		b.Run(fmt.Sprintf("%s-%s", c.method, c.dtype), func(b *testing.B) {
			dt, _ := kernels.ParseDType(c.dtype)
			var buf bytes.Buffer
			if err := checkpoints.Synth(&buf, "stories15M", dt, 1); err != nil {
				b.Fatal(err)
			}
			m, err := checkpoints.LoadBytes(buf.Bytes())
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			be, err := kernels.Open("cpu", 2)
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			j := DefaultJob("synth", "random")
			j.Method, j.Steps, j.SeqLen, j.BatchTokens, j.Warmup, j.CheckpointEvery = c.method, 1<<20, 256, 1024, 0, 0
			r := rand.New(rand.NewPCG(1, 2))
			seqs := make([]Sequence, 8)
			for i := range seqs {
				s := Sequence{Tokens: make([]int, 257), Weights: make([]float32, 256)}
				for k := range s.Tokens {
					s.Tokens[k] = r.IntN(m.Weights.Config.Vocab)
				}
				for k := range s.Weights {
					s.Weights[k] = 1
				}
				seqs[i] = s
			}
			tr, err := NewTrainer(j, m.Weights, be, seqs, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tr.RunStep(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := tr.RunStep(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(1024*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
