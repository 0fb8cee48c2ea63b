package train

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// Ids of the special pieces of a learned vocabulary.
const (
	VocabUNK = 0
	VocabBOS = 1
	VocabEOS = 2
)

// vocabSpace is SentencePiece's visible space, as GGUF stores it.
const vocabSpace = "\u2581"

// LearnVocab learns a SentencePiece-style vocabulary of size pieces from
// texts by byte-pair merging, for a model trained from scratch. It holds,
// in order: <unk>, <s> (BOS), </s> (EOS); the 256 byte-fallback pieces
// <0x00>..<0xFF>, so that any text encodes; the characters of the texts
// that occur at least minCount times, most frequent first; then merged
// pieces, each the concatenation of the adjacent pair of symbols that
// occurs most often in the texts at that point (ties go to the pair whose
// text sorts first), until size pieces or no pair occurs minCount times.
//
// The texts are cut into words as the SentencePiece encoder cuts them: a
// space opens the text (the dummy prefix) and each word takes the space
// before it ("▁"), so no piece has a space after another character and
// merges never cross words. Merged pieces score by their rank (the first
// merge scores 0, the next −1, ...), characters below every merge, so the
// encoder, which merges the highest-scoring piece first, replays the
// merges in the order they were learned. The same texts and size always
// give the same vocabulary.
func LearnVocab(texts []string, size, minCount int) (tokenizer.SPVocab, error) {
	const base = 3 + 256
	if size < base+1 {
		return tokenizer.SPVocab{}, fmt.Errorf("vocab: %d pieces: want at least %d (specials, bytes and one character)", size, base+1)
	}
	minCount = max(minCount, 1)
	words := map[string]int{}
	for _, t := range texts {
		forEachWord(" "+t, func(w string) { words[w]++ })
	}
	if len(words) == 0 {
		return tokenizer.SPVocab{}, errors.New("vocab: no text to learn from")
	}

	// Characters, most frequent first.
	chars := map[string]int{}
	for w, n := range words {
		for _, r := range w {
			chars[string(r)] += n
		}
	}
	charList := make([]string, 0, len(chars))
	for c, n := range chars {
		if n >= minCount {
			charList = append(charList, c)
		}
	}
	sort.Slice(charList, func(i, j int) bool {
		a, b := charList[i], charList[j]
		if chars[a] != chars[b] {
			return chars[a] > chars[b]
		}
		return a < b
	})
	if len(charList) > size-base {
		charList = charList[:size-base]
	}
	known := make(map[string]bool, size)
	for _, c := range charList {
		known[c] = true
	}

	// Each distinct word as a sequence of symbols; a character outside the
	// vocabulary splits the word (it will be bytes, which never merge).
	type entry struct {
		syms  []string
		count int
	}
	list := make([]entry, 0, len(words))
	wordKeys := make([]string, 0, len(words))
	for w := range words {
		wordKeys = append(wordKeys, w)
	}
	sort.Strings(wordKeys)
	for _, w := range wordKeys {
		var syms []string
		for _, r := range w {
			c := string(r)
			if !known[c] {
				c = "" // a barrier
			}
			syms = append(syms, c)
		}
		list = append(list, entry{syms, words[w]})
	}

	var merges []string
	pieces := len(charList)
	for base+pieces < size {
		counts := map[[2]string]int{}
		for _, e := range list {
			for i := 0; i+1 < len(e.syms); i++ {
				if e.syms[i] != "" && e.syms[i+1] != "" && mergeable(e.syms[i], e.syms[i+1]) {
					counts[[2]string{e.syms[i], e.syms[i+1]}] += e.count
				}
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range counts {
			if n > bestN || (n == bestN && p[0]+p[1] < best[0]+best[1]) ||
				(n == bestN && p[0]+p[1] == best[0]+best[1] && p[0] < best[0]) {
				best, bestN = p, n
			}
		}
		if bestN < minCount {
			break
		}
		joined := best[0] + best[1]
		for k := range list {
			e := &list[k]
			out := e.syms[:0]
			for i := 0; i < len(e.syms); i++ {
				if i+1 < len(e.syms) && e.syms[i] == best[0] && e.syms[i+1] == best[1] {
					out = append(out, joined)
					i++
					continue
				}
				out = append(out, e.syms[i])
			}
			e.syms = out
		}
		if !known[joined] {
			known[joined] = true
			merges = append(merges, joined)
			pieces++
		}
	}

	v := tokenizer.SPVocab{BOS: VocabBOS, EOS: VocabEOS, UNK: VocabUNK, AddBOS: true}
	add := func(piece string, score float32, typ int32) {
		v.Tokens = append(v.Tokens, piece)
		v.Scores = append(v.Scores, score)
		v.Types = append(v.Types, typ)
	}
	add("<unk>", 0, tokenizer.TypeUnknown)
	add("<s>", 0, tokenizer.TypeControl)
	add("</s>", 0, tokenizer.TypeControl)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, tokenizer.TypeByte)
	}
	for i, c := range charList {
		add(strings.ReplaceAll(c, " ", vocabSpace), -float32(len(merges)+i), tokenizer.TypeNormal)
	}
	for i, m := range merges {
		add(strings.ReplaceAll(m, " ", vocabSpace), -float32(i), tokenizer.TypeNormal)
	}
	return v, nil
}

// Symbol classes: merges join letters with letters and punctuation with
// punctuation (a space joins either), as SentencePiece keeps scripts
// apart, so that "▁time" and "," stay two pieces rather than "▁time,".
const (
	classSpace = iota
	classWord
	classPunct
)

func symbolClass(s string) int {
	c := classSpace
	for _, r := range s {
		k := classPunct
		switch {
		case r == ' ':
			continue
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'':
			k = classWord
		}
		if c != classSpace && k != c {
			return -1
		}
		c = k
	}
	return c
}

func mergeable(a, b string) bool {
	ca, cb := symbolClass(a), symbolClass(b)
	return ca >= 0 && cb >= 0 && (ca == classSpace || cb == classSpace || ca == cb)
}

// forEachWord calls f with each word of s as the SentencePiece encoder
// cuts it: a new word starts at each space that follows a character other
// than a space.
func forEachWord(s string, f func(string)) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	from := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			f(s[from:i])
			from = i
		}
	}
	if from < len(s) {
		f(s[from:])
	}
}
