package tokenizer_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// qwen3Reference is the structure of
// tokenizers/qwen3-tokenizer-reference.json (the fields the tests use).
type qwen3Reference struct {
	Cases []struct {
		Name              string `json:"name"`
		Text              string `json:"text"`
		IDs               []int  `json:"ids"`
		IDsControlAsText  []int  `json:"ids_control_as_text"`
		Decoded           string `json:"decoded"`
		NFCChangesText    bool   `json:"nfc_changes_text"`
		LlamaCppIDs       []int  `json:"llama_cpp_ids"`
		LlamaCppIDsNoCtrl []int  `json:"llama_cpp_ids_control_as_text"`
	} `json:"cases"`
	DecodeCases []struct {
		IDs                []int  `json:"ids"`
		Decoded            string `json:"decoded"`
		DecodedSkipSpecial string `json:"decoded_skip_special"`
	} `json:"decode_cases"`
	Divergences []struct {
		Text        string `json:"text"`
		IDsLlamaCpp []int  `json:"ids_llama_cpp"`
	} `json:"js_whitespace_divergences"`
	Checks struct {
		EOG []int `json:"llama_cpp_eog_token_ids"`
	} `json:"checks"`
}

func loadQwen3Reference(tb testing.TB) *qwen3Reference {
	tb.Helper()
	data, err := os.ReadFile(testmodels.Path(tb, "tokenizers/qwen3-tokenizer-reference.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var ref qwen3Reference
	if err := json.Unmarshal(data, &ref); err != nil {
		tb.Fatal(err)
	}
	if len(ref.Cases) != 49 || len(ref.DecodeCases) != 10 {
		tb.Fatalf("reference has %d cases and %d decode cases, want 49 and 10", len(ref.Cases), len(ref.DecodeCases))
	}
	return &ref
}

var (
	qwen3Once sync.Once
	qwen3Tok  *tokenizer.BPE
	qwen3Err  error
)

func loadQwen3(tb testing.TB) *tokenizer.BPE {
	tb.Helper()
	p := testmodels.Path(tb, "tokenizers/qwen3-tokenizer-random.gguf")
	qwen3Once.Do(func() {
		var v tokenizer.BPEVocab
		v, qwen3Err = readQwen3Vocab(p)
		if qwen3Err == nil {
			qwen3Tok, qwen3Err = tokenizer.NewBPE(v)
		}
	})
	if qwen3Err != nil {
		tb.Fatal(qwen3Err)
	}
	return qwen3Tok
}

func TestQwen3Encode(t *testing.T) {
	tok := loadQwen3(t)
	ref := loadQwen3Reference(t)
	var okIDs, okCtrl, okDecoded int
	for _, c := range ref.Cases {
		if got := tok.Encode(c.Text, tokenizer.EncodeOptions{ParseSpecial: true}); equalInts(got, c.IDs) {
			okIDs++
		} else {
			t.Errorf("%s: ids\n got  %v\n want %v", c.Name, got, c.IDs)
		}
		if got := tok.Encode(c.Text, tokenizer.EncodeOptions{}); equalInts(got, c.IDsControlAsText) {
			okCtrl++
		} else {
			t.Errorf("%s: ids_control_as_text\n got  %v\n want %v", c.Name, got, c.IDsControlAsText)
		}
		if got := tok.DecodeSpecial(c.IDs); got == c.Decoded {
			okDecoded++
		} else {
			t.Errorf("%s: decoded\n got  %q\n want %q", c.Name, got, c.Decoded)
		}
	}
	t.Logf("ids %d/49, ids_control_as_text %d/49, decoded %d/49", okIDs, okCtrl, okDecoded)
}

func TestQwen3StreamingDecode(t *testing.T) {
	tok := loadQwen3(t)
	ref := loadQwen3Reference(t)
	for _, c := range ref.Cases {
		d := tok.NewDecoder()
		d.ShowControl = true
		var b strings.Builder
		for _, id := range c.IDs {
			b.WriteString(d.Next(id))
		}
		b.WriteString(d.Flush())
		if b.String() != c.Decoded {
			t.Errorf("%s: streamed\n got  %q\n want %q", c.Name, b.String(), c.Decoded)
		}
	}
}

func TestQwen3DecodeCases(t *testing.T) {
	tok := loadQwen3(t)
	ref := loadQwen3Reference(t)
	for i, c := range ref.DecodeCases {
		if got := tok.DecodeSpecial(c.IDs); got != c.Decoded {
			t.Errorf("decode case %d %v: DecodeSpecial = %q, want %q", i, c.IDs, got, c.Decoded)
		}
		if got := tok.Decode(c.IDs); got != c.DecodedSkipSpecial {
			t.Errorf("decode case %d %v: Decode = %q, want %q", i, c.IDs, got, c.DecodedSkipSpecial)
		}
	}
}

func TestQwen3WhitespaceDivergences(t *testing.T) {
	tok := loadQwen3(t)
	ref := loadQwen3Reference(t)
	for _, c := range ref.Divergences {
		if got := tok.Encode(c.Text, tokenizer.EncodeOptions{ParseSpecial: true}); !equalInts(got, c.IDsLlamaCpp) {
			t.Errorf("%q: got %v, want llama.cpp's %v", c.Text, got, c.IDsLlamaCpp)
		}
	}
}

func TestQwen3EOG(t *testing.T) {
	tok := loadQwen3(t)
	ref := loadQwen3Reference(t)
	var got []int
	for id := range tok.VocabSize() {
		if tok.IsEOG(id) {
			got = append(got, id)
		}
	}
	if !equalInts(got, ref.Checks.EOG) {
		t.Errorf("EOG ids = %v, want %v", got, ref.Checks.EOG)
	}
	if tok.EOS() != 151645 || tok.BOS() != 151643 || tok.AddBOS() {
		t.Errorf("EOS, BOS, AddBOS = %d, %d, %v", tok.EOS(), tok.BOS(), tok.AddBOS())
	}
}

func TestQwen3Concurrent(t *testing.T) {
	tok := loadQwen3(t)
	ref := loadQwen3Reference(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Go(func() {
			for k := range 20 {
				c := ref.Cases[(g*7+k)%len(ref.Cases)]
				if got := tok.Encode(c.Text, tokenizer.EncodeOptions{ParseSpecial: true}); !equalInts(got, c.IDs) {
					errs <- fmt.Errorf("%s: concurrent encode differs", c.Name)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
