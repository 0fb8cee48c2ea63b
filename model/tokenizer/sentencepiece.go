package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// spaceMark is SentencePiece's visible space, U+2581, as GGUF stores it.
const spaceMark = "\u2581"

// SentencePiece encodes with SentencePiece-style BPE over scored pieces:
// the algorithm of llama2.c's tokenizer and of GGUF's "llama" tokenizer
// model.
//
// Encoding puts a space before the text (the dummy prefix; not with
// SPVocab.NoSpacePrefix), starts from one
// symbol per UTF-8 code point (or, for a code point that is no piece, one
// byte-fallback symbol per byte), and then repeatedly merges the adjacent
// pair whose concatenation is the piece with the highest score, the leftmost
// pair on ties.
type SentencePiece struct {
	tokens  []string
	types   []int32
	scores  []float32
	pieces  map[string]int32 // text with real spaces -> id, for normal and user-defined pieces
	maxLen  int              // longest key of pieces, in bytes
	byteID  [256]int32       // byte-fallback ids, -1 where absent
	bos     int
	eos     int
	unk     int
	addBOS  bool
	noPre   bool // no dummy prefix
	special *specialMatcher
	dec     *decodeTable
	eog     map[int]bool
	// chunked: no piece has a space after another character, so no merge
	// crosses the start of a space run and each run of spaces plus the
	// word after it is encoded alone (and cached).
	chunked bool
	cache   wordCache

	pool sync.Pool // *spScratch
}

var _ Tokenizer = (*SentencePiece)(nil)

type spScratch struct {
	syms []symbol
	heap candHeap
	buf  []byte
}

// NewSentencePiece builds a tokenizer from a SentencePiece-style vocabulary.
// Pieces may write spaces as U+2581 (GGUF) or as real spaces (llama2.c).
func NewSentencePiece(v SPVocab) (*SentencePiece, error) {
	return newSentencePiece(v, true)
}

func newSentencePiece(v SPVocab, matchSpecial bool) (*SentencePiece, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: SentencePiece vocabulary is empty")
	}
	if len(v.Scores) != 0 && len(v.Scores) != n {
		return nil, fmt.Errorf("tokenizer: SentencePiece vocabulary has %d tokens but %d scores", n, len(v.Scores))
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("tokenizer: SentencePiece vocabulary has %d tokens but %d token types", n, len(v.Types))
	}
	for _, f := range []struct {
		name string
		id   int
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}} {
		if f.id < -1 || f.id >= n {
			return nil, fmt.Errorf("tokenizer: %s id %d is outside the vocabulary of %d tokens", f.name, f.id, n)
		}
	}
	t := &SentencePiece{
		tokens: v.Tokens,
		scores: v.Scores,
		pieces: make(map[string]int32, n),
		bos:    v.BOS,
		eos:    v.EOS,
		unk:    v.UNK,
		addBOS: v.AddBOS,
		noPre:  v.NoSpacePrefix,
		eog:    map[int]bool{},
	}
	if t.scores == nil {
		t.scores = make([]float32, n)
	}
	types := v.Types
	if types == nil {
		types = make([]int32, n)
		for id, s := range v.Tokens {
			types[id] = TypeNormal
			if _, ok := parseBytePiece(s); ok {
				types[id] = TypeByte
			}
		}
		if v.UNK >= 0 {
			types[v.UNK] = TypeUnknown
		}
		for _, id := range []int{v.BOS, v.EOS} {
			if id >= 0 {
				types[id] = TypeControl
			}
		}
	}
	t.types = types
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	t.dec = newDecodeTable(n, !v.NoSpacePrefix)
	var tmp []byte
	chunkable := true
	for id, s := range v.Tokens {
		typ := types[id]
		switch typ {
		case TypeByte:
			b, ok := parseBytePiece(s)
			if !ok {
				return nil, fmt.Errorf("tokenizer: token %d %q has the byte type but is not <0xXX>", id, s)
			}
			if t.byteID[b] < 0 {
				t.byteID[b] = int32(id)
			}
			t.dec.add([]byte{b}, kindText)
		case TypeControl:
			t.dec.add([]byte(s), kindBreak)
		case TypeUnknown, TypeUnused:
			t.dec.add([]byte(s), kindControl)
		default: // normal, user-defined, and anything unexpected
			text := strings.ReplaceAll(s, spaceMark, " ")
			if strings.Contains(strings.TrimLeft(text, " "), " ") {
				chunkable = false
			}
			if _, dup := t.pieces[text]; !dup && text != "" {
				t.pieces[text] = int32(id)
				t.maxLen = max(t.maxLen, len(text))
			}
			tmp = append(tmp[:0], text...)
			t.dec.add(tmp, kindText)
		}
		if typ == TypeControl && eogNames[s] {
			t.eog[id] = true
		}
	}
	if t.eos >= 0 {
		t.eog[t.eos] = true
	}
	t.chunked = chunkable
	t.cache.m = make(map[string][]int32)
	if matchSpecial {
		t.special = newSpecialMatcher(v.Tokens, types)
	}
	t.pool.New = func() any { return new(spScratch) }
	return t, nil
}

// parseBytePiece parses "<0xXX>" (upper- or lower-case hex).
func parseBytePiece(s string) (byte, bool) {
	if len(s) != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(s[3])
	lo, ok2 := hexVal(s[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Encode converts text to ids. Invalid UTF-8 is encoded byte by byte
// through the byte-fallback pieces (or UNK where the vocabulary has none).
func (t *SentencePiece) Encode(text string, o EncodeOptions) []int {
	ids := make([]int, 0, len(text)/3+2)
	if o.BOS && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	sc := t.pool.Get().(*spScratch)
	afterSpecial := true
	t.special.split(text, o.ParseSpecial,
		func(frag string) {
			if afterSpecial && !t.noPre {
				// The dummy prefix opens the text and follows each
				// added token.
				sc.buf = append(append(sc.buf[:0], ' '), frag...)
				ids = t.encodeFragment(ids, sc, sc.buf)
			} else {
				ids = t.encodeFragment(ids, sc, []byte(frag))
			}
			afterSpecial = false
		},
		func(id int) {
			ids = append(ids, id)
			afterSpecial = true
		})
	t.pool.Put(sc)
	return ids
}

// encodeFragment appends the ids of s, which holds no added tokens.
func (t *SentencePiece) encodeFragment(ids []int, sc *spScratch, s []byte) []int {
	if !t.chunked {
		return t.encodeChunk(ids, sc, s)
	}
	from := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			ids = t.encodeCached(ids, sc, s[from:i])
			from = i
		}
	}
	return t.encodeCached(ids, sc, s[from:])
}

// encodeCached is encodeChunk through the word cache.
func (t *SentencePiece) encodeCached(ids []int, sc *spScratch, s []byte) []int {
	if cached, ok := t.cache.getBytes(s); ok {
		for _, id := range cached {
			ids = append(ids, int(id))
		}
		return ids
	}
	start := len(ids)
	ids = t.encodeChunk(ids, sc, s)
	t.cache.put(string(s), ids[start:])
	return ids
}

// encodeChunk runs the merge loop over s.
func (t *SentencePiece) encodeChunk(ids []int, sc *spScratch, s []byte) []int {
	syms := sc.syms[:0]
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRune(s[i:])
		if id, ok := t.pieces[string(s[i:i+w])]; ok {
			syms = append(syms, symbol{start: int32(i), end: int32(i + w), id: id})
		} else {
			for j := i; j < i+w; j++ {
				id := t.byteID[s[j]]
				if id < 0 {
					id = int32(t.unk)
				}
				syms = append(syms, symbol{start: int32(j), end: int32(j + 1), id: id, fixed: true})
			}
		}
		i += w
	}
	for i := range syms {
		syms[i].prev = int32(i - 1)
		syms[i].next = int32(i + 1)
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	sc.heap = mergeAll(syms, sc.heap, func(l, r *symbol) (int32, float64, bool) {
		if int(r.end-l.start) > t.maxLen {
			return 0, 0, false
		}
		id, ok := t.pieces[string(s[l.start:r.end])]
		if !ok {
			return 0, 0, false
		}
		return id, -float64(t.scores[id]), true
	})
	for i := 0; i >= 0 && len(syms) > 0; i = int(syms[i].next) {
		if syms[i].id >= 0 {
			ids = append(ids, int(syms[i].id))
		}
	}
	sc.syms = syms
	return ids
}

// Decode converts ids to text. Control tokens print nothing, the space
// that opens the text (or follows a control token such as BOS) is
// dropped, and byte pieces that do not form valid UTF-8 become U+FFFD.
func (t *SentencePiece) Decode(ids []int) string { return decodeAll(t.dec, ids, false) }

// NewDecoder returns a streaming decoder.
func (t *SentencePiece) NewDecoder() *Decoder { return newDecoder(t.dec) }

// Piece is the stored vocabulary string of id ("" if out of range).
func (t *SentencePiece) Piece(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Score is the stored score of id (0 if out of range).
func (t *SentencePiece) Score(id int) float32 {
	if id < 0 || id >= len(t.scores) {
		return 0
	}
	return t.scores[id]
}

// Type is the token type of id (0 if out of range).
func (t *SentencePiece) Type(id int) int32 {
	if id < 0 || id >= len(t.types) {
		return 0
	}
	return t.types[id]
}

// VocabSize is the number of ids.
func (t *SentencePiece) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id, -1 if none.
func (t *SentencePiece) BOS() int { return t.bos }

// EOS is the end-of-sequence id, -1 if none.
func (t *SentencePiece) EOS() int { return t.eos }

// AddBOS is the vocabulary's default for EncodeOptions.BOS.
func (t *SentencePiece) AddBOS() bool { return t.addBOS }

// SpacePrefix says whether encoding puts a space before the text (false
// with SPVocab.NoSpacePrefix).
func (t *SentencePiece) SpacePrefix() bool { return !t.noPre }

// IsEOG reports whether id is EOS or a control token named like an end of
// turn.
func (t *SentencePiece) IsEOG(id int) bool { return t.eog[id] }

// DecodeSpecial is Decode with control tokens printed as their stored text.
func (t *SentencePiece) DecodeSpecial(ids []int) string { return decodeAll(t.dec, ids, true) }
