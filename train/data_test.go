package train

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/tokenizer"
)

func TestParseData(t *testing.T) {
	f, recs, err := ParseData([]byte("Once upon a time.\nThe end.\n"))
	if err != nil || f != FormatText || len(recs) != 1 || recs[0].Text != "Once upon a time.\nThe end.\n" {
		t.Fatalf("plain text: %q %+v %v", f, recs, err)
	}
	f, recs, err = ParseData([]byte("{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n"))
	if err != nil || f != FormatJSONText || len(recs) != 2 || recs[1].Text != "b" {
		t.Fatalf("JSON text: %q %+v %v", f, recs, err)
	}
	f, recs, err = ParseData([]byte("{\"prompt\": \"Q: 1+1?\", \"completion\": \" 2\"}\n{\"prompt\": \"\", \"completion\": \"x\"}"))
	if err != nil || f != FormatJSONPair || len(recs) != 2 || recs[0].Completion != " 2" {
		t.Fatalf("JSON pairs: %q %+v %v", f, recs, err)
	}
	for _, c := range []struct{ data, want string }{
		{"", "empty"},
		{"  \n", "empty"},
		{"\xff\xfe", "UTF-8"},
		{"{\"text\": \"a\"}\n{\"text\": 3}\n", "line 2"},
		{"{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", "line 2"},
		{"{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n", "line 2"},
		{"{\"prompt\": \"p\"}\n", "line 1"},
		{"{\"text\": \"a\"} {\"text\": \"b\"}\n", "line 1"},
		{"{\"text\": \"a\"}\n{\"text\": \"unterminated\n", "line 2"},
	} {
		_, _, err := ParseData([]byte(c.data))
		if !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("data %q: error %v, want ErrBadData naming %q", c.data, err, c.want)
		}
	}
}

func ex(toks []int, loss []bool) Example { return Example{Tokens: toks, Loss: loss} }

func TestPack(t *testing.T) {
	T, F := true, false
	exs := []Example{
		ex([]int{1, 10, 11}, []bool{F, T, T}),
		ex([]int{1, 20, 21, 22}, []bool{F, F, T, T}), // a prompt (20) and a completion
		ex([]int{1, 30}, []bool{F, T}),
	}
	seqs, err := Pack(exs, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Every trained target appears exactly once with weight 1, and every
	// sequence has seqLen+1 tokens and seqLen weights.
	trained := map[int]int{}
	for _, s := range seqs {
		if len(s.Tokens) != 5 || len(s.Weights) != 4 {
			t.Fatalf("sequence shape %d tokens, %d weights", len(s.Tokens), len(s.Weights))
		}
		for i, w := range s.Weights {
			if w != 0 {
				trained[s.Tokens[i+1]]++
			}
		}
	}
	if !reflect.DeepEqual(trained, map[int]int{10: 1, 11: 1, 21: 1, 22: 1, 30: 1}) {
		t.Errorf("trained targets %v", trained)
	}

	// A long text is split with one token of overlap: every token after
	// the first is a target exactly once.
	long := ex([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []bool{F, T, T, T, T, T, T, T, T, T})
	seqs, err = Pack([]Example{long}, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, s := range seqs {
		for i, w := range s.Weights {
			if w != 0 {
				count[s.Tokens[i+1]]++
			}
		}
	}
	for tok := 2; tok <= 10; tok++ {
		if count[tok] != 1 {
			t.Errorf("token %d trained %d times in %v", tok, count[tok], seqs)
		}
	}
	// A long example with a prompt is refused.
	_, err = Pack([]Example{ex([]int{1, 2, 3, 4, 5, 6, 7}, []bool{F, F, T, T, T, T, T})}, 4, 0)
	if !errors.Is(err, ErrBadData) || !strings.Contains(err.Error(), "example 1") {
		t.Errorf("long prompted example: %v", err)
	}
}

func TestSplitIsSeeded(t *testing.T) {
	var seqs []Sequence
	for i := range 40 {
		seqs = append(seqs, Sequence{Tokens: []int{i}})
	}
	a1, e1 := Split(seqs, 7, 0.1)
	a2, e2 := Split(seqs, 7, 0.1)
	if !reflect.DeepEqual(a1, a2) || !reflect.DeepEqual(e1, e2) {
		t.Error("one seed, two splits")
	}
	if len(e1) != 4 || len(a1) != 36 {
		t.Errorf("split %d/%d", len(a1), len(e1))
	}
	b, _ := Split(seqs, 8, 0.1)
	if reflect.DeepEqual(a1, b) {
		t.Error("another seed, same order")
	}
	if seqs[0].Tokens[0] != 0 {
		t.Error("Split reordered its input")
	}
	_, e := Split(seqs[:3], 1, 0.01)
	if len(e) != 1 {
		t.Errorf("a positive fraction held out %d sequences", len(e))
	}
}

// With the real tokenizer of the built-in model: prompts train nothing,
// and a completion trains its tokens and EOS.
func TestTokenize(t *testing.T) {
	tok, err := checkpoints.LoadTokenizer(testmodels.Builtin(t), 1536)
	if err != nil {
		t.Fatal(err)
	}
	exs := Tokenize([]Record{{Text: "Lily saw a cat."}, {Prompt: "Tom said", Completion: " hello."}}, tok)
	if exs[0].Tokens[0] != tok.BOS() || exs[0].Loss[0] || !allTrained(exs[0].Loss[1:]) {
		t.Errorf("text example %+v", exs[0])
	}
	p := exs[1]
	if got := tok.Decode(p.Tokens); !strings.Contains(got, "Tom said hello.") {
		t.Errorf("pair decodes to %q", got)
	}
	if p.Tokens[len(p.Tokens)-1] != tok.EOS() || !p.Loss[len(p.Loss)-1] {
		t.Errorf("pair does not end with a trained EOS: %+v", p)
	}
	nPrompt := len(tok.Encode("Tom said", tokenizer.EncodeOptions{}))
	for i := range 1 + nPrompt {
		if p.Loss[i] {
			t.Errorf("prompt token %d trains", i)
		}
	}
}

func FuzzData(f *testing.F) {
	f.Add([]byte("plain text"))
	f.Add([]byte("{\"text\": \"a\"}\n{\"text\": \"b\"}"))
	f.Add([]byte("{\"prompt\": \"p\", \"completion\": \"c\"}\n"))
	f.Add([]byte("{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		format, recs, err := ParseData(b)
		if err != nil {
			if !errors.Is(err, ErrBadData) {
				t.Fatalf("error without ErrBadData: %v", err)
			}
			return
		}
		if len(recs) == 0 {
			t.Fatal("parsed a data set of no records")
		}
		if format == FormatText {
			return
		}
		// JSON lines survive re-encoding.
		var out []byte
		for _, r := range recs {
			line, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			out = append(append(out, line...), '\n')
		}
		f2, recs2, err := ParseData(out)
		if err != nil || f2 != format || !reflect.DeepEqual(recs, recs2) {
			t.Fatalf("re-encoded data set: %v %q %v", err, f2, recs2)
		}
	})
}

// JobSets gives a job's sequences: its seq_len, padded with the end of
// sequence, split by its seed, the same each time; a file that does not
// parse is an error.
func TestJobSets(t *testing.T) {
	tok, err := checkpoints.LoadTokenizer(testmodels.Builtin(t), 1536)
	if err != nil {
		t.Fatal(err)
	}
	j := DefaultJob("m", "d")
	j.SeqLen, j.EvalFraction = 8, 0.25
	data := []byte(strings.Repeat(`{"text":"Lily saw a big red cat in the garden."}`+"\n", 8))
	s, err := JobSets(j, data, tok)
	if err != nil {
		t.Fatal(err)
	}
	if s.Format != FormatJSONText || len(s.Records) != 8 || len(s.Eval) == 0 || len(s.Train) <= len(s.Eval) {
		t.Fatalf("sets: format %s, %d records, %d training and %d evaluation sequences", s.Format, len(s.Records), len(s.Train), len(s.Eval))
	}
	for _, q := range append(s.Train, s.Eval...) {
		if len(q.Tokens) != j.SeqLen+1 {
			t.Fatalf("a sequence of %d tokens, want %d", len(q.Tokens), j.SeqLen+1)
		}
	}
	again, _ := JobSets(j, data, tok)
	if !reflect.DeepEqual(again, s) {
		t.Error("the same job and data gave other sets")
	}
	if _, err := JobSets(j, []byte(`{"text": broken}`), tok); err == nil {
		t.Error("a file that does not parse gave sets")
	}
	if _, err := JobSets(j, nil, tok); err == nil {
		t.Error("an empty file gave sets")
	}
}
