package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// BPE is a byte-level BPE tokenizer (GPT-2's scheme, GGUF tokenizer model
// "gpt2"), as Llama 3, Qwen2/3 and SmolLM use.
//
// Encoding splits out added tokens (control tokens only with
// EncodeOptions.ParseSpecial, user-defined tokens always, the longest match
// at each position), normalizes the rest to NFC, splits it into words with
// the vocabulary's pre-tokenizer, and runs BPE on the bytes of each word:
// starting from one symbol per byte, it repeatedly merges the adjacent pair
// with the lowest merge rank, the leftmost on ties.
type BPE struct {
	tokens  []string
	types   []int32
	vocab   map[string]int32 // normal tokens, in the byte-level alphabet
	byteTok [256]int32       // the token of each single byte
	merges  map[uint64]merge // (left id, right id) -> merge
	pre     preTokenizer
	// ignoreMerges: a word that is itself a token is emitted as that token.
	ignoreMerges bool
	bos, eos     int
	addBOS       bool
	special      *specialMatcher
	dec          *decodeTable
	eog          map[int]bool
	cache        wordCache
	pool         sync.Pool // *bpeScratch
}

var _ Tokenizer = (*BPE)(nil)

type merge struct {
	rank int32
	id   int32
}

type bpeScratch struct {
	syms []symbol
	heap candHeap
	buf  []byte
}

func pairKey(l, r int32) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

// eogNames are the end-of-generation token names: end of text, end of
// turn, and fill-in-the-middle separators after which a model stops.
var eogNames = map[string]bool{
	"</s>":            true,
	"<|endoftext|>":   true,
	"<|end_of_text|>": true,
	"<|im_end|>":      true,
	"<|eot_id|>":      true,
	"<|eom_id|>":      true,
	"<|end|>":         true,
	"<end_of_turn>":   true,
	"<|fim_pad|>":     true,
	"<|repo_name|>":   true,
	"<|file_sep|>":    true,
}

// byteToRune is GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes
// stand for themselves, the other bytes for U+0100 onward, in byte order.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			b2r[b] = rune(b)
		} else {
			b2r[b] = next
			next++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// NewBPE builds a byte-level BPE tokenizer. It fails if a byte has no
// token, if a merge is malformed, or if the pre-tokenizer is unknown.
func NewBPE(v BPEVocab) (*BPE, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: BPE vocabulary is empty")
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("tokenizer: BPE vocabulary has %d tokens but %d token types", n, len(v.Types))
	}
	for _, f := range []struct {
		name string
		id   int
	}{{"BOS", v.BOS}, {"EOS", v.EOS}} {
		if f.id < -1 || f.id >= n {
			return nil, fmt.Errorf("tokenizer: %s id %d is outside the vocabulary of %d tokens", f.name, f.id, n)
		}
	}
	pre, err := lookupPreTokenizer(v.Pre)
	if err != nil {
		return nil, err
	}
	types := v.Types
	if types == nil {
		types = make([]int32, n)
		for i := range types {
			types[i] = TypeNormal
		}
	}
	t := &BPE{
		tokens:       v.Tokens,
		types:        types,
		vocab:        make(map[string]int32, n),
		merges:       make(map[uint64]merge, len(v.Merges)),
		pre:          pre,
		ignoreMerges: ignoreMergesPre[v.Pre],
		bos:          v.BOS,
		eos:          v.EOS,
		addBOS:       v.AddBOS,
		eog:          map[int]bool{},
	}
	t.dec = newDecodeTable(n, false)
	var tmp []byte
	for id, s := range v.Tokens {
		switch types[id] {
		case TypeControl, TypeUnknown, TypeUnused:
			t.dec.add([]byte(s), kindControl)
		case TypeUserDefined:
			t.dec.add([]byte(s), kindText)
		default:
			if _, dup := t.vocab[s]; !dup {
				t.vocab[s] = int32(id)
			}
			tmp = tmp[:0]
			for _, r := range s {
				if b, ok := runeToByte[r]; ok {
					tmp = append(tmp, b)
				} else {
					tmp = utf8.AppendRune(tmp, r)
				}
			}
			t.dec.add(tmp, kindText)
		}
		if eogNames[s] {
			t.eog[id] = true
		}
	}
	if t.eos >= 0 {
		t.eog[t.eos] = true
	}
	for b := 0; b < 256; b++ {
		id, ok := t.vocab[string(byteToRune[b])]
		if !ok {
			return nil, fmt.Errorf("tokenizer: BPE vocabulary has no token for byte 0x%02X (%q)", b, string(byteToRune[b]))
		}
		t.byteTok[b] = id
	}
	for rank, m := range v.Merges {
		left, right, ok := strings.Cut(m, " ")
		if !ok || left == "" || right == "" || strings.Contains(right, " ") {
			return nil, fmt.Errorf("tokenizer: BPE merge %d %q is not two tokens separated by a space", rank, m)
		}
		l, okL := t.vocab[left]
		r, okR := t.vocab[right]
		id, okM := t.vocab[left+right]
		if !okL || !okR || !okM {
			// A merge whose parts or result are not tokens can never
			// apply to ids; skip it as other implementations do.
			continue
		}
		k := pairKey(l, r)
		if _, dup := t.merges[k]; !dup {
			t.merges[k] = merge{rank: int32(rank), id: id}
		}
	}
	t.special = newSpecialMatcher(v.Tokens, types)
	t.cache.m = make(map[string][]int32)
	t.pool.New = func() any { return new(bpeScratch) }
	return t, nil
}

// Encode converts text to ids.
func (t *BPE) Encode(text string, o EncodeOptions) []int {
	ids := make([]int, 0, len(text)/4+2)
	if o.BOS && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	sc := t.pool.Get().(*bpeScratch)
	t.special.split(text, o.ParseSpecial,
		func(frag string) {
			if !norm.NFC.IsNormalString(frag) {
				frag = norm.NFC.String(frag)
			}
			t.pre(frag, func(word string) { ids = t.encodeWord(ids, sc, word) })
		},
		func(id int) { ids = append(ids, id) })
	t.pool.Put(sc)
	return ids
}

// encodeWord appends the BPE ids of one pre-tokenized word.
func (t *BPE) encodeWord(ids []int, sc *bpeScratch, word string) []int {
	if cached, ok := t.cache.get(word); ok {
		for _, id := range cached {
			ids = append(ids, int(id))
		}
		return ids
	}
	if len(word) == 1 {
		return append(ids, int(t.byteTok[word[0]]))
	}
	start := len(ids)
	if t.ignoreMerges {
		sc.buf = sc.buf[:0]
		for i := 0; i < len(word); i++ {
			sc.buf = utf8.AppendRune(sc.buf, byteToRune[word[i]])
		}
		if id, ok := t.vocab[string(sc.buf)]; ok {
			ids = append(ids, int(id))
			t.cache.put(word, ids[start:])
			return ids
		}
	}
	syms := sc.syms[:0]
	for i := 0; i < len(word); i++ {
		syms = append(syms, symbol{start: int32(i), end: int32(i + 1), id: t.byteTok[word[i]], prev: int32(i - 1), next: int32(i + 1)})
	}
	syms[len(syms)-1].next = -1
	sc.heap = mergeAll(syms, sc.heap, func(l, r *symbol) (int32, float64, bool) {
		m, ok := t.merges[pairKey(l.id, r.id)]
		return m.id, float64(m.rank), ok
	})
	for i := 0; i >= 0; i = int(syms[i].next) {
		ids = append(ids, int(syms[i].id))
	}
	sc.syms = syms
	t.cache.put(word, ids[start:])
	return ids
}

// Decode converts ids to text, leaving out control tokens. Bytes that do
// not form valid UTF-8 become U+FFFD, one per maximal ill-formed subpart.
func (t *BPE) Decode(ids []int) string { return decodeAll(t.dec, ids, false) }

// DecodeSpecial is Decode with control tokens printed as their text.
func (t *BPE) DecodeSpecial(ids []int) string { return decodeAll(t.dec, ids, true) }

// NewDecoder returns a streaming decoder.
func (t *BPE) NewDecoder() *Decoder { return newDecoder(t.dec) }

// Piece is the stored vocabulary string of id ("" if out of range).
func (t *BPE) Piece(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Type is the token type of id (0 if out of range).
func (t *BPE) Type(id int) int32 {
	if id < 0 || id >= len(t.types) {
		return 0
	}
	return t.types[id]
}

// VocabSize is the number of ids.
func (t *BPE) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id, -1 if none.
func (t *BPE) BOS() int { return t.bos }

// EOS is the end-of-sequence id, -1 if none.
func (t *BPE) EOS() int { return t.eos }

// AddBOS is the vocabulary's default for EncodeOptions.BOS.
func (t *BPE) AddBOS() bool { return t.addBOS }

// IsEOG reports whether id is EOS or a token named like an end of text or
// of a turn ("<|im_end|>", "<|eot_id|>", "</s>" and the like, whatever
// its stored type, as llama.cpp decides).
func (t *BPE) IsEOG(id int) bool { return t.eog[id] }

// wordCache remembers the ids of recent words. It is bounded: when full it
// starts over, which keeps the common words of the current text hot.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const (
	wordCacheEntries = 1 << 14
	wordCacheMaxWord = 64 // bytes; longer words are not cached
)

func (c *wordCache) get(word string) ([]int32, bool) {
	if len(word) > wordCacheMaxWord {
		return nil, false
	}
	c.mu.RLock()
	v, ok := c.m[word]
	c.mu.RUnlock()
	return v, ok
}

func (c *wordCache) getBytes(word []byte) ([]int32, bool) {
	if len(word) > wordCacheMaxWord {
		return nil, false
	}
	c.mu.RLock()
	v, ok := c.m[string(word)]
	c.mu.RUnlock()
	return v, ok
}

func (c *wordCache) put(word string, ids []int) {
	if len(word) > wordCacheMaxWord {
		return
	}
	v := make([]int32, len(ids))
	for i, id := range ids {
		v[i] = int32(id)
	}
	c.mu.Lock()
	if len(c.m) >= wordCacheEntries {
		clear(c.m)
	}
	c.m[strings.Clone(word)] = v
	c.mu.Unlock()
}
