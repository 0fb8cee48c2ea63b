package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// A preTokenizer splits text into words; BPE runs on each word alone. The
// words cover the text exactly, in order.
type preTokenizer func(s string, emit func(word string))

// preTokenizers maps GGUF tokenizer.ggml.pre names to splitters.
//
// The splitters are hand-written scanners equivalent to the regular
// expressions the models were trained with (Go's regexp has no lookahead).
// \s is Unicode White_Space, \p{L} is a letter and \p{N} a number.
var preTokenizers = map[string]preTokenizer{
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
	//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
	"qwen2": func(s string, emit func(string)) { splitLlama3(s, 1, emit) },
	// As qwen2 with \p{N}{1,3}.
	"llama-bpe": func(s string, emit func(string)) { splitLlama3(s, 3, emit) },
	// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
	"gpt2":    splitGPT2,
	"default": splitGPT2,
	"":        splitGPT2,
	// Each \p{N} alone, then gpt2's expression on the text between them.
	"smollm": splitSmolLM,
}

// ignoreMergesPre lists pre-tokenizers whose models emit a word that is
// itself a token without running BPE on it (Llama 3's ignore_merges).
var ignoreMergesPre = map[string]bool{"llama-bpe": true}

func lookupPreTokenizer(name string) (preTokenizer, error) {
	p, ok := preTokenizers[name]
	if !ok {
		return nil, fmt.Errorf("tokenizer: unknown pre-tokenizer %q (known: qwen2, llama-bpe, gpt2, default, smollm)", name)
	}
	return p, nil
}

// Character classes. decodeAt returns utf8.RuneError (a symbol, class
// "other") for an invalid byte, with width 1.

func decodeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= '0' && r <= '9'
	}
	return unicode.IsNumber(r)
}

func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r >= '\t' && r <= '\r'
	}
	return unicode.Is(unicode.White_Space, r)
}

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return r >= 0 && !isSpace(r) && !isLetter(r) && !isNumber(r) }

func isNewline(r rune) bool { return r == '\r' || r == '\n' }

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at s[i], an apostrophe, and
// returns its length, or 0.
func contraction(s string, i int, fold bool) int {
	at := func(k int) byte {
		if i+k >= len(s) {
			return 0
		}
		c := s[i+k]
		if fold && c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c
	}
	switch at(1) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r':
		if at(2) == 'e' {
			return 3
		}
	case 'v':
		if at(2) == 'e' {
			return 3
		}
	case 'l':
		if at(2) == 'l' {
			return 3
		}
	}
	return 0
}

// runOf returns the end of the run of class-f runes starting at i.
func runOf(s string, i int, f func(rune) bool) int {
	for i < len(s) {
		r, w := decodeAt(s, i)
		if !f(r) {
			break
		}
		i += w
	}
	return i
}

// matchSpaces matches \s*[\r\n]+|\s+(?!\S)|\s+ at i, where s[i] is white
// space. It returns the match's end.
func matchSpaces(s string, i int) int {
	end, lastNL, lastStart, count := i, -1, i, 0
	for end < len(s) {
		r, w := decodeAt(s, end)
		if !isSpace(r) {
			break
		}
		if isNewline(r) {
			lastNL = end
		}
		lastStart = end
		count++
		end += w
	}
	switch {
	case lastNL >= 0: // \s*[\r\n]+ ends after the run's last newline
		return lastNL + 1
	case end == len(s): // \s+(?!\S) at the end of the text
		return end
	case count >= 2: // \s+(?!\S) leaves the last space to the next word
		return lastStart
	default: // \s+
		return end
	}
}

// splitLlama3 is the Llama 3 / Qwen2 expression, with digit groups of up
// to maxDigits.
func splitLlama3(s string, maxDigits int, emit func(string)) {
	for i := 0; i < len(s); {
		n := matchLlama3(s, i, maxDigits)
		emit(s[i:n])
		i = n
	}
}

// matchLlama3 returns the end of the word that starts at i.
func matchLlama3(s string, i, maxDigits int) int {
	r, w := decodeAt(s, i)
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if n := contraction(s, i, true); n > 0 {
			return i + n
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return runOf(s, i+w, isLetter)
	}
	if !isNewline(r) && !isNumber(r) {
		if r2, w2 := decodeAt(s, i+w); isLetter(r2) {
			return runOf(s, i+w+w2, isLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if isNumber(r) {
		j := i + w
		for k := 1; k < maxDigits; k++ {
			r2, w2 := decodeAt(s, j)
			if !isNumber(r2) {
				break
			}
			j += w2
		}
		return j
	}
	// ?[^\s\p{L}\p{N}]+[\r\n]*
	j := i
	if r == ' ' {
		j++
	}
	if r2, w2 := decodeAt(s, j); isOther(r2) {
		j = runOf(s, j+w2, isOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// Only white space is left.
	return matchSpaces(s, i)
}

// splitGPT2 is GPT-2's expression.
func splitGPT2(s string, emit func(string)) {
	for i := 0; i < len(s); {
		n := matchGPT2(s, i)
		emit(s[i:n])
		i = n
	}
}

func matchGPT2(s string, i int) int {
	r, w := decodeAt(s, i)
	// 's|'t|'re|'ve|'m|'ll|'d
	if r == '\'' {
		if n := contraction(s, i, false); n > 0 {
			return i + n
		}
	}
	// ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
	j, rr, ww := i, r, w
	if r == ' ' {
		if r2, w2 := decodeAt(s, i+1); r2 >= 0 && !isSpace(r2) {
			j, rr, ww = i+1, r2, w2
		}
	}
	switch {
	case isLetter(rr):
		return runOf(s, j+ww, isLetter)
	case isNumber(rr):
		return runOf(s, j+ww, isNumber)
	case isOther(rr):
		return runOf(s, j+ww, isOther)
	}
	// \s+(?!\S)|\s+ (there is no newline rule in this expression).
	end, lastStart, count := i, i, 0
	for end < len(s) {
		r2, w2 := decodeAt(s, end)
		if !isSpace(r2) {
			break
		}
		lastStart = end
		count++
		end += w2
	}
	if end < len(s) && count >= 2 {
		return lastStart
	}
	return end
}

// splitSmolLM splits off every \p{N} rune, then applies GPT-2's expression
// to each stretch between them.
func splitSmolLM(s string, emit func(string)) {
	from := 0
	for i := 0; i < len(s); {
		r, w := decodeAt(s, i)
		if isNumber(r) {
			if from < i {
				splitGPT2(s[from:i], emit)
			}
			emit(s[i : i+w])
			from = i + w
		}
		i += w
	}
	if from < len(s) {
		splitGPT2(s[from:], emit)
	}
}
