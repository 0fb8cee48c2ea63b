package tokenizer

import "unicode/utf8"

// pieceKind says how a decoder treats a token.
type pieceKind uint8

const (
	kindText    pieceKind = iota // printed
	kindControl                  // printed only with Decoder.ShowControl
	kindBreak                    // control that starts a new text, such as BOS (SentencePiece drops the next leading space)
)

// decodeTable holds, for each id, the bytes the id stands for. Both
// tokenizers build one at construction so that decoding is a table lookup.
type decodeTable struct {
	data  []byte      // all pieces, concatenated
	off   []uint32    // piece id is data[off[id]:off[id+1]]
	kinds []pieceKind // one per id
	// stripSpace: a space that opens the first text piece of a stream, or
	// the first text piece after a control token, is dropped
	// (SentencePiece's dummy prefix).
	stripSpace bool
}

func newDecodeTable(n int, stripSpace bool) *decodeTable {
	return &decodeTable{
		off:        make([]uint32, 1, n+1),
		kinds:      make([]pieceKind, 0, n),
		stripSpace: stripSpace,
	}
}

// add appends the next id's bytes and kind.
func (t *decodeTable) add(b []byte, k pieceKind) {
	t.data = append(t.data, b...)
	t.off = append(t.off, uint32(len(t.data)))
	t.kinds = append(t.kinds, k)
}

func (t *decodeTable) piece(id int) ([]byte, pieceKind, bool) {
	if id < 0 || id >= len(t.kinds) {
		return nil, kindControl, false
	}
	return t.data[t.off[id]:t.off[id+1]], t.kinds[id], true
}

// Decoder turns a stream of ids into text, one id at a time. It holds back
// bytes that may still become a valid UTF-8 sequence when the next byte
// pieces arrive, so a multi-byte character split over several ids is never
// printed as replacement characters.
//
// To decode generated ids in context, prime the decoder with the prompt: call
// Next for each prompt id and drop what it returns. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	// ShowControl prints control tokens (such as "<|im_start|>") as their
	// stored text instead of nothing. Set it before the first Next.
	ShowControl bool

	t       *decodeTable
	pending []byte // an incomplete UTF-8 sequence, at most 3 bytes
	started bool   // a text piece has been seen since the start or the last control token
}

func newDecoder(t *decodeTable) *Decoder {
	return &Decoder{t: t}
}

// Next decodes one more id and returns the text that became complete.
// Unknown ids yield nothing.
func (d *Decoder) Next(id int) string {
	if d == nil || d.t == nil {
		return ""
	}
	out := d.appendNext(nil, id)
	if len(out) == 0 {
		return ""
	}
	return string(out)
}

// appendNext appends the complete text that id produces to out.
func (d *Decoder) appendNext(out []byte, id int) []byte {
	b, k, ok := d.t.piece(id)
	if !ok {
		return out
	}
	if k != kindText {
		if k == kindBreak {
			d.started = false
		}
		if !d.ShowControl {
			return out
		}
		// Control text is whole; flush what came before it first.
		out = appendValidUTF8(out, d.pending)
		d.pending = d.pending[:0]
		return append(out, b...)
	}
	if len(b) == 0 {
		return out
	}
	if d.t.stripSpace && !d.started && b[0] == ' ' {
		b = b[1:]
	}
	d.started = true
	if len(d.pending) == 0 {
		// Fast path: emit all complete sequences, keep the tail.
		n := incompleteTail(b)
		out = appendValidUTF8(out, b[:len(b)-n])
		d.pending = append(d.pending, b[len(b)-n:]...)
		return out
	}
	buf := append(d.pending, b...)
	n := incompleteTail(buf)
	out = appendValidUTF8(out, buf[:len(buf)-n])
	d.pending = append(d.pending[:0], buf[len(buf)-n:]...)
	return out
}

// Flush returns what is held back, with U+FFFD for an incomplete sequence,
// and resets the decoder's pending bytes.
func (d *Decoder) Flush() string {
	if d == nil || len(d.pending) == 0 {
		return ""
	}
	out := appendValidUTF8(nil, d.pending)
	d.pending = d.pending[:0]
	return string(out)
}

// decodeAll decodes ids with a fresh decoder and flushes it.
func decodeAll(t *decodeTable, ids []int, showControl bool) string {
	d := Decoder{t: t, ShowControl: showControl}
	var out []byte
	for _, id := range ids {
		out = d.appendNext(out, id)
	}
	out = appendValidUTF8(out, d.pending)
	return string(out)
}

// incompleteTail returns the length of the longest suffix of b that is a
// proper prefix of a valid UTF-8 sequence (0 to 3 bytes): the bytes a
// streaming decoder must hold back.
func incompleteTail(b []byte) int {
	// Find the last lead byte among the final 3 bytes.
	for back := 1; back <= 3 && back <= len(b); back++ {
		c := b[len(b)-back]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 {
			// A lead byte: the tail is incomplete if it is a valid
			// prefix shorter than the sequence length.
			need := seqLen(c)
			if need == 0 || back >= need {
				return 0
			}
			if validPrefix(b[len(b)-back:]) == back {
				return back
			}
			return 0
		}
	}
	return 0
}

// seqLen is the length of the UTF-8 sequence that lead byte c opens, or 0
// if c cannot open one.
func seqLen(c byte) int {
	switch {
	case c < 0x80:
		return 1
	case c >= 0xC2 && c <= 0xDF:
		return 2
	case c >= 0xE0 && c <= 0xEF:
		return 3
	case c >= 0xF0 && c <= 0xF4:
		return 4
	}
	return 0
}

// validPrefix returns how many bytes at the start of b (at most one
// sequence) form a valid UTF-8 sequence or a valid prefix of one, following
// the WHATWG decoder's byte ranges; 0 if b[0] cannot open a sequence.
func validPrefix(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	c := b[0]
	n := seqLen(c)
	if n == 0 {
		return 0
	}
	if n == 1 {
		return 1
	}
	lo, hi := byte(0x80), byte(0xBF)
	switch c {
	case 0xE0:
		lo = 0xA0
	case 0xED:
		hi = 0x9F
	case 0xF0:
		lo = 0x90
	case 0xF4:
		hi = 0x8F
	}
	i := 1
	for ; i < n && i < len(b); i++ {
		if b[i] < lo || b[i] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return i
}

// appendValidUTF8 appends b to out, replacing each maximal subpart of an
// ill-formed sequence with U+FFFD (the WHATWG and Unicode "substitution of
// maximal subparts" practice).
func appendValidUTF8(out, b []byte) []byte {
	for len(b) > 0 {
		// ASCII run.
		i := 0
		for i < len(b) && b[i] < utf8.RuneSelf {
			i++
		}
		out = append(out, b[:i]...)
		b = b[i:]
		if len(b) == 0 {
			break
		}
		n := validPrefix(b)
		if n > 0 && n == seqLen(b[0]) {
			out = append(out, b[:n]...)
			b = b[n:]
			continue
		}
		if n == 0 {
			n = 1
		}
		out = append(out, "\uFFFD"...)
		b = b[n:]
	}
	return out
}

// validUTF8String returns s with each maximal ill-formed subpart replaced
// by U+FFFD.
func validUTF8String(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(appendValidUTF8(nil, []byte(s)))
}
