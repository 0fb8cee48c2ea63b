package model_test

import (
	"context"
	"slices"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// stopsAtEndOfText generates greedily from prompt with the stop rule of
// tok and without it (ignoreEOS), with a budget of budget tokens. With the
// rule the generation ends before the budget at a stopping id, which is
// not emitted; without it the same ids come, then that id and more, up to
// the budget. It returns the ids before the stop and the stopping id.
func stopsAtEndOfText(t *testing.T, w *model.Weights, tok tokenizer.Tokenizer, prompt []int, budget int) (story []int, stop int) {
	t.Helper()
	run := func(ignoreEOS bool) ([]int, model.Stats) {
		e := model.NewEngine(w, openBackend(t, 0))
		var ids []int
		st, err := e.Generate(context.Background(), prompt, model.GenerateOptions{
			MaxTokens: budget, Stop: tokenizer.StopRule(tok, ignoreEOS),
		}, func(id int) error {
			ids = append(ids, id)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids, st
	}
	story, st := run(false)
	if !st.StoppedAtEOS || st.Generated != len(story) || len(story) >= budget {
		t.Fatalf("with the stop rule: %d ids, stats %+v; want the story to end before %d", len(story), st, budget)
	}
	if slices.Contains(story, tok.BOS()) || slices.Contains(story, tok.EOS()) {
		t.Errorf("a stopping id was emitted: %v", story)
	}
	all, st := run(true)
	if st.StoppedAtEOS || len(all) != budget {
		t.Fatalf("with ignoreEOS: %d ids, stats %+v; want the whole budget of %d", len(all), st, budget)
	}
	if !slices.Equal(all[:len(story)], story) {
		t.Fatalf("with ignoreEOS the story differs: %v, with the stop rule %v", all[:len(story)], story)
	}
	t.Logf("the story ends after %d tokens", len(story))
	return story, all[len(story)]
}

// TestGenerationStopsAtEndOfText: the built-in model ends its greedy
// story with its end of text (EOS); Generate stops there, and with
// ignoreEOS goes on past it, with the ids of step by step decoding.
func TestGenerationStopsAtEndOfText(t *testing.T) {
	m := loadTales(t)
	tok := m.Tokenizer
	prompt := tok.Encode(testmodels.BuiltinPrompt, tokenizer.EncodeOptions{BOS: true})
	story, stop := stopsAtEndOfText(t, m.Weights, tok, prompt, 400)
	if stop != tok.EOS() {
		t.Errorf("the story ends with %d, want EOS %d", stop, tok.EOS())
	}
	want, _ := talesGreedy(t, m, model.DefaultKVType, prompt, 400)
	if !slices.Equal(story, want) {
		t.Errorf("Generate gave\n%v\nstep by step\n%v", story, want)
	}
}

// TestStories260KStopsAtEndOfText: stories260K ends its greedy story from
// BOS with a BOS, to begin the next one, after the reference ids. The
// stop rule ends the generation there; with ignoreEOS the BOS and the
// next story follow. The llama2.c file with tok512 and the GGUF with its
// own vocabulary agree.
func TestStories260KStopsAtEndOfText(t *testing.T) {
	bin := testmodels.Path(t, "stories260K.bin")
	gguf := testmodels.Path(t, "stories260K.gguf")
	tok512 := testmodels.Path(t, "tok512.bin")
	for _, tc := range []struct{ name, path, tok string }{{"bin", bin, tok512}, {"gguf", gguf, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := checkpoints.Load(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			tok := m.Tokenizer
			if tc.tok != "" {
				if tok, err = checkpoints.LoadTokenizer(tc.tok, m.Weights.Config.Vocab); err != nil {
					t.Fatal(err)
				}
			}
			story, stop := stopsAtEndOfText(t, m.Weights, tok, []int{tok.BOS()}, 400)
			if d := firstDiff(story, refFromBOS); d != "" {
				t.Error(d)
			}
			if stop != tok.BOS() {
				t.Errorf("the story is followed by %d, want BOS", stop)
			}
		})
	}
}

// TestStopRule: EOS and BOS end a generation, other ids do not, and
// ignoreEOS removes the rule; with the built-in model's vocabulary (from
// its GGUF, with token types) and with a llama2.c vocabulary (none).
func TestStopRule(t *testing.T) {
	check := func(t *testing.T, tok tokenizer.Tokenizer) {
		stop := tokenizer.StopRule(tok, false)
		if !stop(2) || !stop(1) || stop(0) || stop(300) {
			t.Errorf("stop(2), stop(1), stop(0), stop(300) = %v %v %v %v; want EOS and BOS only", stop(2), stop(1), stop(0), stop(300))
		}
		if tokenizer.StopRule(tok, true) != nil {
			t.Error("with ignoreEOS the rule is not nil")
		}
	}
	t.Run("builtin", func(t *testing.T) {
		m := loadTales(t)
		if m.Tokenizer.BOS() != 1 || m.Tokenizer.EOS() != 2 {
			t.Fatalf("BOS %d, EOS %d", m.Tokenizer.BOS(), m.Tokenizer.EOS())
		}
		check(t, m.Tokenizer)
	})
	t.Run("tok512.bin", func(t *testing.T) {
		tok, err := checkpoints.LoadTokenizer(testmodels.Path(t, "tok512.bin"), 512)
		if err != nil {
			t.Fatal(err)
		}
		check(t, tok)
	})
}
