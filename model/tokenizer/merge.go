package tokenizer

// Both encoders share the same merge loop: a doubly linked list of symbols
// over a byte string, and a binary min-heap of candidate merges of two
// adjacent symbols. A candidate is valid when popped only if both symbols
// still span exactly what they spanned when it was pushed, so stale
// candidates are skipped instead of removed (lazy deletion). Each merge
// pushes at most two new candidates, so encoding n symbols costs
// O(n log n) instead of the O(n²) rescans of the naive loop.

// symbol is a run of bytes that currently forms one token.
type symbol struct {
	start, end int32 // byte span in the text; end == -1 once merged away
	id         int32
	prev, next int32 // neighbours, -1 at the ends
	fixed      bool  // never merges (SentencePiece byte fallback)
}

// candidate is a possible merge of symbols l and r = l.next.
type candidate struct {
	key        float64 // lower merges first: -score or rank
	start, mid int32   // l spans [start, mid), r spans [mid, end)
	end        int32
	l, r       int32
	id         int32 // the merged token
}

// before orders candidates: lower key first, then leftmost.
func (a *candidate) before(b *candidate) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.start < b.start
}

// candHeap is a binary min-heap of candidates.
type candHeap []candidate

func (h *candHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].before(&s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].before(&s[l]) {
			m = r
		}
		if !s[m].before(&s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// valid reports whether c still describes two live adjacent symbols.
func (c *candidate) valid(syms []symbol) bool {
	l, r := &syms[c.l], &syms[c.r]
	return l.start == c.start && l.end == c.mid && r.start == c.mid && r.end == c.end && l.next == c.r
}

// pairFunc returns the merge of two adjacent symbols, if any.
type pairFunc func(l, r *symbol) (id int32, key float64, ok bool)

// mergeAll runs the merge loop over syms (linked in order) with h as
// scratch space, and returns the heap for reuse.
func mergeAll(syms []symbol, h candHeap, pair pairFunc) candHeap {
	h = h[:0]
	try := func(li, ri int32) {
		if li < 0 || ri < 0 {
			return
		}
		l, r := &syms[li], &syms[ri]
		if l.fixed || r.fixed {
			return
		}
		if id, key, ok := pair(l, r); ok {
			h.push(candidate{key: key, start: l.start, mid: l.end, end: r.end, l: li, r: ri, id: id})
		}
	}
	for i := 0; i+1 < len(syms); i++ {
		try(int32(i), int32(i+1))
	}
	for len(h) > 0 {
		c := h.pop()
		if !c.valid(syms) {
			continue
		}
		l, r := &syms[c.l], &syms[c.r]
		l.end = r.end
		l.id = c.id
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = c.l
		}
		r.start, r.end = -1, -1
		try(l.prev, c.l)
		try(c.l, l.next)
	}
	return h
}
