package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/tales"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// tiny is the default recipe shrunk to run in seconds.
func tiny() Recipe {
	r := Default
	r.Stories, r.VocabFrom, r.Vocab = 300, 300, 420
	r.Config = model.Config{Arch: "llama", Dim: 32, Hidden: 64, Layers: 2, Heads: 2, KVHeads: 1, Context: 256,
		RopeTheta: 10000, RopeStyle: kernels.RopeAdjacent, NormEps: 1e-5, SharedClassifier: true}
	r.Steps, r.BatchTokens, r.SeqLen, r.Warmup, r.EvalEvery, r.Threads = 4, 2*256, 256, 1, 2, 1
	return r
}

// A build writes a GGUF that loads with its vocabulary inside, whose
// tokenizer round-trips the stories; the same recipe gives the same
// bytes, also when the build resumes from its checkpoint; the loss curve
// reads the log.
func TestBuild(t *testing.T) {
	r := tiny()
	dir := t.TempDir()
	out, ckpt, logPath := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "ckpt"), filepath.Join(dir, "train.log")
	var progress bytes.Buffer
	if err := Build(context.Background(), r, out, ckpt, logPath, &progress); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	for _, want := range []string{"data: 300 stories", "step    1", "eval     4", "greedy from", "| steps | mean training loss |", "step 1"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
	m, err := checkpoints.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Weights.Config
	if c.Dim != 32 || c.Layers != 2 || c.KVHeads != 1 || c.Vocab != 420 || c.Context != 256 || !c.SharedClassifier {
		t.Errorf("config %+v", c)
	}
	if m.Weights.Layers[1].Wq.Type != kernels.F16 {
		t.Errorf("matrices stored as %s, want f16", m.Weights.Layers[1].Wq.Type)
	}
	tok := m.Tokenizer
	if _, ok := tok.(*tokenizer.SentencePiece); !ok || tok.VocabSize() != 420 || tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() {
		t.Fatalf("tokenizer %T of %d pieces", tok, tok.VocabSize())
	}
	for _, s := range tales.Corpus(r.Seed, 50) {
		if got := tok.Decode(tok.Encode(s, tokenizer.EncodeOptions{BOS: true})); got != s {
			t.Fatalf("round trip:\n got %q\nwant %q", got, s)
		}
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}

	// Resumed from the checkpoint of the last step: the same file.
	progress.Reset()
	if err := Build(context.Background(), r, out, ckpt, logPath, &progress); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "resumed from") {
		t.Errorf("the second build did not resume:\n%s", progress.String())
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(first, again) {
		t.Error("a resumed build wrote another file")
	}
	// Another recipe refuses the checkpoints of this one.
	r2 := r
	r2.Seed = 2
	if err := Build(context.Background(), r2, filepath.Join(dir, "c.gguf"), ckpt, "", io.Discard); err == nil || !strings.Contains(err.Error(), "another recipe") {
		t.Errorf("a build of another recipe over these checkpoints: %v", err)
	}
	// From scratch again, elsewhere: the same file.
	other := filepath.Join(dir, "b.gguf")
	if err := Build(context.Background(), r, other, "", "", io.Discard); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(other); !bytes.Equal(first, again) {
		t.Error("two builds of one recipe differ")
	}
}

func TestLossCurve(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for s := 1; s <= 20; s++ {
		b.WriteString("step " + strconv.Itoa(s) + " loss " + strconv.Itoa(30-s) + ".5 lr 0.001 gnorm 1 tokens 100 elapsed " + strconv.Itoa(s) + "\n")
	}
	b.WriteString("eval 10 loss 19.25\nstep 20 loss 1.5 lr 0.001 gnorm 1 tokens 100 elapsed 20\n")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LossCurve(p, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Steps 1–10: losses 29.5..20.5, mean 25; 11–20: 18.5..11.5 and 1.5 (the
	// step's last line wins), mean 14.1.
	for _, want := range []string{"| 1–10 | 25.000 | 19.250 |", "| 11–20 | 14.100 |  |", "(20 steps; the last logged at 20 s of its run)"} {
		if !strings.Contains(got, want) {
			t.Errorf("curve lacks %q:\n%s", want, got)
		}
	}
}
