package model

import (
	"fmt"
	"strconv"
	"strings"
)

// ExpertSet is a set of the routed experts of a layer, as a bitmap: bit
// i%8 of byte i/8 is expert i. The nil set stands for every expert (a
// server of whole layers); an empty, non-nil set holds none.
type ExpertSet []byte

// MaxExperts bounds the experts an ExpertSet names (and so the bytes of
// one: MaxExperts/8).
const MaxExperts = 1 << 12

// AllExperts is the nil set: every expert.
var AllExperts ExpertSet

// NewExpertSet returns the set of the listed experts.
func NewExpertSet(experts ...int) ExpertSet {
	s := ExpertSet{}
	for _, e := range experts {
		s = s.With(e)
	}
	return s
}

// All says whether s stands for every expert (nil).
func (s ExpertSet) All() bool { return s == nil }

// Has says whether expert e is in s.
func (s ExpertSet) Has(e int) bool {
	if s == nil {
		return e >= 0
	}
	return e >= 0 && e/8 < len(s) && s[e/8]>>(e%8)&1 == 1
}

// With returns s with expert e added (s itself when it is nil: every
// expert already). It may modify s.
func (s ExpertSet) With(e int) ExpertSet {
	if s == nil || e < 0 {
		return s
	}
	for len(s) <= e/8 {
		s = append(s, 0)
	}
	s[e/8] |= 1 << (e % 8)
	return s
}

// Count is how many of a layer's n experts s holds.
func (s ExpertSet) Count(n int) int {
	c := 0
	for e := range n {
		if s.Has(e) {
			c++
		}
	}
	return c
}

// Covers says whether s holds each of a layer's n experts.
func (s ExpertSet) Covers(n int) bool { return s.Count(n) == n }

// List is the experts of s among the first n, in order.
func (s ExpertSet) List(n int) []int {
	var out []int
	for e := range n {
		if s.Has(e) {
			out = append(out, e)
		}
	}
	return out
}

// Check says what is wrong with s as a set of a layer's n experts: a
// bitmap longer than n needs, or bits past n.
func (s ExpertSet) Check(n int) error {
	if s == nil {
		return nil
	}
	if len(s) > (n+7)/8 {
		return fmt.Errorf("expert set of %d bytes for %d experts", len(s), n)
	}
	for e := n; e < len(s)*8; e++ {
		if s.Has(e) {
			return fmt.Errorf("expert set names expert %d of %d", e, n)
		}
	}
	return nil
}

// String writes s as ranges, "0-3,8"; "all" for the nil set and "none"
// for an empty one.
func (s ExpertSet) String() string {
	if s == nil {
		return "all"
	}
	var b strings.Builder
	n := len(s) * 8
	for e := 0; e < n; e++ {
		if !s.Has(e) {
			continue
		}
		f := e
		for e+1 < n && s.Has(e+1) {
			e++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if f == e {
			fmt.Fprintf(&b, "%d", f)
		} else {
			fmt.Fprintf(&b, "%d-%d", f, e)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// ParseExperts reads a set of a layer's n experts written as ranges,
// "0-3,8" (String's form); "" and "all" are every expert (nil).
func ParseExperts(s string, n int) (ExpertSet, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	if n <= 0 || n > MaxExperts {
		return nil, fmt.Errorf("experts %q: the model has %d experts", s, n)
	}
	set := ExpertSet{}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil {
			return nil, fmt.Errorf("experts %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
				return nil, fmt.Errorf("experts %q: %w", s, err)
			}
		}
		if first < 0 || last >= n || first > last {
			return nil, fmt.Errorf("experts %q: %q outside the model's experts 0-%d", s, part, n-1)
		}
		for e := first; e <= last; e++ {
			set = set.With(e)
		}
	}
	return set, nil
}
