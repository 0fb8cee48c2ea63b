package model_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/tales"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// The built-in model (models/tales.gguf, docs/ourmodel.md) is part of the
// repository, so these tests run on every checkout. talesGolden is its
// greedy continuation of testmodels.BuiltinPrompt, the first
// talesGoldenTokens tokens, as `mycel run --temp 0` prints it.
const (
	talesGolden       = "Once upon a time, there was a little girl named Nina. Her best friend was Pebble, a playful frog. One day, Nina and Pebble went to the meadow to play. There they found a little toy car behind the fence. \"I want it!\""
	talesGoldenTokens = 48
)

func loadTales(t *testing.T) *checkpoints.Model {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// talesGreedy decodes greedily step by step from prompt with a cache of
// kv, for at most n tokens or until the end of the story, and returns the
// ids and, at each step, the gap between the best and the second logit.
func talesGreedy(t *testing.T, m *checkpoints.Model, kv kernels.DType, prompt []int, n int) (ids []int, gaps []float32) {
	t.Helper()
	be, err := kernels.Open("cpu", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	c := m.Weights.Config
	e := model.NewEngine(m.Weights, be, model.KVType(kv))
	cache, err := e.NewCache(0, c.Layers, len(prompt)+n)
	if err != nil {
		t.Fatal(err)
	}
	stop := tokenizer.StopRule(m.Tokenizer, false)
	x := make([]float32, len(prompt)*c.Dim)
	logits := make([]float32, c.Vocab)
	in := prompt
	for range n {
		if err := e.Embed(x[:len(in)*c.Dim], in); err != nil {
			t.Fatal(err)
		}
		if err := e.Forward(cache, x[:len(in)*c.Dim], len(in)); err != nil {
			t.Fatal(err)
		}
		if err := e.Logits(logits, x[(len(in)-1)*c.Dim:len(in)*c.Dim]); err != nil {
			t.Fatal(err)
		}
		best, second := 0, -1
		for i, v := range logits {
			if v > logits[best] {
				best, second = i, best
			} else if i != best && (second < 0 || v > logits[second]) {
				second = i
			}
		}
		gaps = append(gaps, logits[best]-logits[second])
		if stop(best) {
			break
		}
		ids = append(ids, best)
		in = []int{best}
	}
	return ids, gaps
}

func minGap(gaps []float32) float32 {
	g := float32(math.Inf(1))
	for _, v := range gaps {
		g = min(g, v)
	}
	return g
}

// Greedy generation from the prompt gives the recorded continuation, with
// the half and the full precision KV cache, through Generate and step by
// step alike, every time.
func TestTalesGolden(t *testing.T) {
	m := loadTales(t)
	tok := m.Tokenizer
	prompt := tok.Encode(testmodels.BuiltinPrompt, tokenizer.EncodeOptions{BOS: true})
	for _, kv := range []kernels.DType{model.DefaultKVType, kernels.F32} {
		ids, gaps := talesGreedy(t, m, kv, prompt, talesGoldenTokens)
		t.Logf("kv %s: smallest gap between the best and the second logit %.3f", kv, minGap(gaps))
		dec := tok.NewDecoder()
		for _, id := range prompt {
			dec.Next(id)
		}
		text := testmodels.BuiltinPrompt
		for _, id := range ids {
			text += dec.Next(id)
		}
		text += dec.Flush()
		if text != talesGolden {
			t.Errorf("kv %s: greedy continuation\n got %q\nwant %q", kv, text, talesGolden)
		}
		be, err := kernels.Open("cpu", 0)
		if err != nil {
			t.Fatal(err)
		}
		e := model.NewEngine(m.Weights, be, model.KVType(kv))
		for range 2 {
			var got []int
			if _, err := e.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: len(ids)},
				func(id int) error { got = append(got, id); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, ids) {
				t.Errorf("kv %s: Generate gave %v, step by step %v", kv, got, ids)
			}
		}
		be.Close()
	}
}

// A whole greedy story ends at the model's end of text, within the
// default budget of mycel run.
func TestTalesStoryEnds(t *testing.T) {
	m := loadTales(t)
	prompt := m.Tokenizer.Encode(testmodels.BuiltinPrompt, tokenizer.EncodeOptions{BOS: true})
	ids, _ := talesGreedy(t, m, model.DefaultKVType, prompt, 256)
	t.Logf("%d tokens: %s", len(ids), m.Tokenizer.Decode(ids))
	if len(ids) >= 256 {
		t.Errorf("no end of text in 256 tokens")
	}
}

// The vocabulary inside the GGUF, read by the GGUF tokenizer code, is the
// learned SentencePiece one, and it round-trips the training stories.
func TestTalesTokenizer(t *testing.T) {
	m := loadTales(t)
	tok, ok := m.Tokenizer.(*tokenizer.SentencePiece)
	if !ok {
		t.Fatalf("tokenizer %T, want SentencePiece", m.Tokenizer)
	}
	if tok.VocabSize() != m.Weights.Config.Vocab || tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() || tok.Piece(3) != "<0x00>" {
		t.Errorf("vocabulary of %d, BOS %d, EOS %d, add BOS %v, piece 3 %q", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.AddBOS(), tok.Piece(3))
	}
	var words, ids int
	for _, s := range tales.Corpus(1, 500) {
		enc := tok.Encode(s, tokenizer.EncodeOptions{BOS: true})
		if got := tok.Decode(enc); got != s {
			t.Fatalf("round trip:\n got %q\nwant %q", got, s)
		}
		ids += len(enc)
		words += len(strings.Fields(s))
	}
	t.Logf("%.2f tokens per word", float64(ids)/float64(words))
}
