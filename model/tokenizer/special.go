package tokenizer

import (
	"sort"
	"strings"
)

// specialToken is an added token matched in raw text before the
// tokenizer's own algorithm runs.
type specialToken struct {
	text    string
	id      int
	control bool // matched only with EncodeOptions.ParseSpecial
}

// specialMatcher finds added tokens in text, longest match first.
type specialMatcher struct {
	first   [256]bool
	byFirst map[byte][]specialToken // longest first
}

// newSpecialMatcher collects control (3) and user-defined (4) tokens.
// It returns nil when there are none.
func newSpecialMatcher(tokens []string, types []int32) *specialMatcher {
	m := &specialMatcher{byFirst: map[byte][]specialToken{}}
	n := 0
	for id, t := range types {
		if id >= len(tokens) || tokens[id] == "" {
			continue
		}
		if t != TypeControl && t != TypeUserDefined {
			continue
		}
		s := tokens[id]
		m.first[s[0]] = true
		m.byFirst[s[0]] = append(m.byFirst[s[0]], specialToken{text: s, id: id, control: t == TypeControl})
		n++
	}
	if n == 0 {
		return nil
	}
	for _, l := range m.byFirst {
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].text) > len(l[j].text) })
	}
	return m
}

// match returns the longest added token at the start of s.
func (m *specialMatcher) match(s string, parseControl bool) (specialToken, bool) {
	for _, t := range m.byFirst[s[0]] {
		if t.control && !parseControl {
			continue
		}
		if strings.HasPrefix(s, t.text) {
			return t, true
		}
	}
	return specialToken{}, false
}

// split calls text for each run of plain text and token for each added
// token found in s, in order.
func (m *specialMatcher) split(s string, parseControl bool, text func(string), token func(int)) {
	if m == nil {
		if s != "" {
			text(s)
		}
		return
	}
	from := 0
	for i := 0; i < len(s); i++ {
		if !m.first[s[i]] {
			continue
		}
		t, ok := m.match(s[i:], parseControl)
		if !ok {
			continue
		}
		if i > from {
			text(s[from:i])
		}
		token(t.id)
		i += len(t.text) - 1
		from = i + 1
	}
	if from < len(s) {
		text(s[from:])
	}
}
