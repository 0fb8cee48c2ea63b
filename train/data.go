package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// Data set formats.
const (
	// FormatText is plain text: the whole file is one example.
	FormatText = "text"
	// FormatJSONText is JSON lines, each an object with a "text" field.
	FormatJSONText = "jsonl-text"
	// FormatJSONPair is JSON lines, each with "prompt" and "completion":
	// the loss counts on the completion only (supervised fine-tuning).
	FormatJSONPair = "jsonl-pair"
)

// Record is one example of a data set as stored: text, or a prompt and the
// completion to learn. A data set keeps text, not tokens, so that one set
// trains models of any tokenizer.
type Record struct {
	Text       string `json:"text,omitempty"`
	Prompt     string `json:"prompt,omitempty"`
	Completion string `json:"completion,omitempty"`
}

// Limits of what a data set file may hold.
const (
	// MaxDataBytes bounds a data set file.
	MaxDataBytes = 1 << 30
	// MaxLineBytes bounds one JSON line.
	MaxLineBytes = 16 << 20
)

// ErrBadData marks a data set that does not parse.
var ErrBadData = errors.New("bad data set")

// ParseData reads a data set: JSON lines when the first non-blank byte is
// '{', plain text otherwise. JSON lines must all have "text", or all have
// "prompt" and "completion"; a line that does not parse, mixes the two
// kinds or has unknown fields is refused, naming its number.
func ParseData(data []byte) (format string, recs []Record, err error) {
	if len(data) > MaxDataBytes {
		return "", nil, fmt.Errorf("%w: %d bytes, more than the %d a data set may hold", ErrBadData, len(data), MaxDataBytes)
	}
	if !utf8.Valid(data) {
		return "", nil, fmt.Errorf("%w: not UTF-8 text", ErrBadData)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return "", nil, fmt.Errorf("%w: empty", ErrBadData)
	}
	if trimmed[0] != '{' {
		return FormatText, []Record{{Text: string(data)}}, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var r Record
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return "", nil, fmt.Errorf("%w: line %d: %w", ErrBadData, line, err)
		}
		if dec.More() {
			return "", nil, fmt.Errorf("%w: line %d: more than one JSON value", ErrBadData, line)
		}
		var f string
		switch {
		case r.Text != "" && r.Prompt == "" && r.Completion == "":
			f = FormatJSONText
		case r.Text == "" && r.Completion != "":
			f = FormatJSONPair
		default:
			return "", nil, fmt.Errorf("%w: line %d: want a non-empty \"text\", or \"prompt\" and a non-empty \"completion\"", ErrBadData, line)
		}
		if format == "" {
			format = f
		} else if f != format {
			return "", nil, fmt.Errorf("%w: line %d: a %s line among %s lines", ErrBadData, line, f, format)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return "", nil, fmt.Errorf("%w: line %d: %w", ErrBadData, line+1, err)
	}
	return format, recs, nil
}

// Example is a tokenized record: Tokens, and for each token whether
// predicting it counts in the loss (the first token never does: nothing
// predicts it).
type Example struct {
	Tokens []int
	Loss   []bool
}

// Tokenize turns records into examples with tok: BOS (when the tokenizer
// has one) then the text, every token trained; or BOS, the prompt (not
// trained), the completion and EOS (trained, so that the model learns to
// stop). A prompt and its completion are encoded as one text; the
// completion's tokens are those after the longest run that matches the
// prompt encoded alone.
func Tokenize(recs []Record, tok tokenizer.Tokenizer) []Example {
	out := make([]Example, 0, len(recs))
	for _, r := range recs {
		var ex Example
		add := func(ids []int, loss bool) {
			for _, id := range ids {
				ex.Tokens = append(ex.Tokens, id)
				ex.Loss = append(ex.Loss, loss)
			}
		}
		if bos := tok.BOS(); bos >= 0 {
			add([]int{bos}, false)
		}
		if r.Completion == "" {
			add(tok.Encode(r.Text, tokenizer.EncodeOptions{}), true)
		} else {
			// Encode the pair as one text (a tokenizer may merge across
			// the seam, or add a prefix to every text it encodes) and
			// train from where it stops matching the prompt alone.
			all := tok.Encode(r.Prompt+r.Completion, tokenizer.EncodeOptions{})
			prompt := tok.Encode(r.Prompt, tokenizer.EncodeOptions{})
			k := 0
			for k < len(prompt) && k < len(all) && prompt[k] == all[k] {
				k++
			}
			add(all[:k], false)
			add(all[k:], true)
			if eos := tok.EOS(); eos >= 0 {
				add([]int{eos}, true)
			}
		}
		out = append(out, ex)
	}
	return out
}

// Sequence is one training row: SeqLen+1 tokens, where position t's input
// is Tokens[t] and its target Tokens[t+1], and Weights[t] (0 or 1) says
// whether that target counts.
type Sequence struct {
	Tokens  []int
	Weights []float32
}

// Targets counts the weighted targets of s.
func (s Sequence) Targets() int {
	n := 0
	for _, w := range s.Weights {
		if w != 0 {
			n++
		}
	}
	return n
}

// Pack packs examples into sequences of seqLen positions, in order: an
// example that fits in what is left of the current sequence goes there,
// otherwise it starts the next one; the unused end of a sequence is padding
// that trains nothing. An example longer than a whole sequence is split
// across sequences when all its tokens train (plain text), and refused,
// naming it, when it has a prompt (a completion cut off from its prompt
// would teach the wrong thing).
func Pack(examples []Example, seqLen int, pad int) ([]Sequence, error) {
	var out []Sequence
	var cur Sequence
	flush := func() {
		if len(cur.Tokens) == 0 {
			return
		}
		for len(cur.Tokens) < seqLen+1 {
			cur.Tokens = append(cur.Tokens, pad)
			cur.Weights = append(cur.Weights, 0)
		}
		cur.Weights = cur.Weights[:seqLen]
		out = append(out, cur)
		cur = Sequence{}
	}
	// put appends a run of tokens to cur; the first of them is not a
	// target of the token before it (a new example starts).
	put := func(toks []int, loss []bool) {
		for i, id := range toks {
			if len(cur.Tokens) > 0 {
				w := float32(0)
				if i > 0 && loss[i] {
					w = 1
				}
				cur.Weights = append(cur.Weights, w)
			}
			cur.Tokens = append(cur.Tokens, id)
		}
	}
	for i, ex := range examples {
		if len(ex.Tokens) < 2 {
			continue
		}
		if len(ex.Tokens) > seqLen+1 {
			if !allTrained(ex.Loss[1:]) {
				return nil, fmt.Errorf("%w: example %d is %d tokens, longer than seq_len %d + 1, and has a prompt: shorten it or raise seq_len", ErrBadData, i+1, len(ex.Tokens), seqLen)
			}
			flush()
			// Overlap one token, so that every token but the first is a
			// target exactly once.
			for at := 0; at < len(ex.Tokens)-1; at += seqLen {
				end := min(at+seqLen+1, len(ex.Tokens))
				put(ex.Tokens[at:end], ex.Loss[at:end])
				flush()
			}
			continue
		}
		if len(cur.Tokens)+len(ex.Tokens) > seqLen+1 {
			flush()
		}
		put(ex.Tokens, ex.Loss)
	}
	flush()
	return out, nil
}

func allTrained(loss []bool) bool {
	for _, l := range loss {
		if !l {
			return false
		}
	}
	return true
}

// Split shuffles seqs with seed and holds out a fraction for evaluation
// (at least one sequence when the fraction is positive and there are two
// or more). The same seed gives the same order and split on any machine.
func Split(seqs []Sequence, seed uint64, evalFraction float64) (trainSet, evalSet []Sequence) {
	s := append([]Sequence(nil), seqs...)
	r := rand.New(rand.NewPCG(seed, 0x6d7963656c2d6461))
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	nEval := int(float64(len(s)) * evalFraction)
	if evalFraction > 0 && nEval == 0 && len(s) >= 2 {
		nEval = 1
	}
	return s[:len(s)-nEval], s[len(s)-nEval:]
}

// Sets are a job's data as its trainers use it.
type Sets struct {
	// Format and Records are the data set file as ParseData read it.
	Format  string
	Records []Record
	// Train and Eval are the job's training and evaluation sequences.
	Train, Eval []Sequence
}

// JobSets turns a data set file into job j's sequences the way every
// trainer of the job does, on one machine or with others: parsed,
// tokenized with the model's tokenizer, packed into sequences of seq_len
// tokens (padded with its end-of-sequence token) and split by the job's
// seed. A set with no training sequence is an error.
func JobSets(j *Job, data []byte, tok tokenizer.Tokenizer) (*Sets, error) {
	format, recs, err := ParseData(data)
	if err != nil {
		return nil, err
	}
	seqs, err := Pack(Tokenize(recs, tok), j.SeqLen, max(tok.EOS(), 0))
	if err != nil {
		return nil, err
	}
	s := &Sets{Format: format, Records: recs}
	s.Train, s.Eval = Split(seqs, j.Seed, j.EvalFraction)
	if len(s.Train) == 0 {
		return nil, fmt.Errorf("no training sequence of seq_len %d tokens: the data set is empty after tokenizing", j.SeqLen)
	}
	return s, nil
}

// Describe is a one-line summary of records of a format.
func Describe(format string, recs []Record) string {
	var chars int
	for _, r := range recs {
		chars += len(r.Text) + len(r.Prompt) + len(r.Completion)
	}
	kind := map[string]string{FormatText: "plain text", FormatJSONText: "JSON lines of text", FormatJSONPair: "JSON lines of prompt and completion"}[format]
	return strings.TrimSpace(fmt.Sprintf("%s: %d examples, %d bytes", kind, len(recs), chars))
}
