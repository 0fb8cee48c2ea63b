package chat

import (
	"strings"
	"testing"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// fakeVocab is a SentencePiece vocabulary of pieces: those that look like
// markup ("<...>", "[...]") are control tokens, "<s>" and "</s>" BOS and
// EOS.
func fakeVocab(pieces []string) tokenizer.Tokenizer {
	v := tokenizer.SPVocab{BOS: -1, EOS: -1, UNK: -1}
	for id, p := range pieces {
		typ := tokenizer.TypeNormal
		if strings.HasPrefix(p, "<") && strings.HasSuffix(p, ">") || strings.HasPrefix(p, "[") && strings.HasSuffix(p, "]") {
			typ = tokenizer.TypeControl
		}
		switch p {
		case "<s>":
			v.BOS = id
		case "</s>":
			v.EOS = id
		case "<unk>":
			v.UNK = id
			typ = tokenizer.TypeUnknown
		}
		v.Tokens = append(v.Tokens, p)
		v.Scores = append(v.Scores, 0)
		v.Types = append(v.Types, typ)
	}
	tok, err := tokenizer.NewSentencePiece(v)
	if err != nil {
		panic(err)
	}
	return tok
}

func TestFakeVocab(t *testing.T) {
	v := fakeVocab([]string{"<unk>", "<s>", "</s>", "<|im_end|>"})
	if v.BOS() != 1 || v.EOS() != 2 || v.Piece(3) != "<|im_end|>" {
		t.Fatal("fake vocabulary")
	}
}
