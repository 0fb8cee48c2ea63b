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

// TestGenerationStopsAtEndOfText: stories260K ends its greedy story from
// BOS with a BOS, to begin the next one. The stop rule ends the
// generation there (the BOS is not emitted); with ignoreEOS the same ids
// come, then the BOS and the next story, up to the token budget. The
// llama2.c file with tok512 and the GGUF with its own vocabulary agree.
func TestGenerationStopsAtEndOfText(t *testing.T) {
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
			const budget = 400
			run := func(ignoreEOS bool) ([]int, model.Stats) {
				e := model.NewEngine(m.Weights, openBackend(t, 0))
				var ids []int
				st, err := e.Generate(context.Background(), []int{tok.BOS()}, model.GenerateOptions{
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
			if !st.StoppedAtEOS || st.Generated != len(story) || len(story) >= budget || len(story) < len(refFromBOS) {
				t.Fatalf("with the stop rule: %d ids, stats %+v; want the story to end before %d", len(story), st, budget)
			}
			if d := firstDiff(story, refFromBOS); d != "" {
				t.Error(d)
			}
			if slices.Contains(story, tok.BOS()) || slices.Contains(story, tok.EOS()) {
				t.Errorf("a stopping id was emitted: %v", story)
			}
			all, st := run(true)
			if st.StoppedAtEOS || len(all) != budget {
				t.Fatalf("with ignoreEOS: %d ids, stats %+v; want the whole budget of %d", len(all), st, budget)
			}
			if !slices.Equal(all[:len(story)], story) || all[len(story)] != tok.BOS() {
				t.Errorf("with ignoreEOS the story is not followed by BOS: %v", all[:len(story)+1])
			}
			t.Logf("the story ends after %d tokens", len(story))
		})
	}
}

// TestStopRule: EOS and BOS end a generation with the llama2.c
// vocabulary, other ids do not, and ignoreEOS removes the rule.
func TestStopRule(t *testing.T) {
	tok, err := checkpoints.LoadTokenizer(testmodels.Path(t, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	stop := tokenizer.StopRule(tok, false)
	if !stop(2) || !stop(1) || stop(0) || stop(300) {
		t.Errorf("stop(2), stop(1), stop(0), stop(300) = %v %v %v %v; want EOS and BOS only", stop(2), stop(1), stop(0), stop(300))
	}
	if tokenizer.StopRule(tok, true) != nil {
		t.Error("with ignoreEOS the rule is not nil")
	}
}
