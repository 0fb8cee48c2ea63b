package chat

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// MetadataKey is the GGUF metadata key that holds a model's chat template.
const MetadataKey = "tokenizer.chat_template"

// MaxRange is the most items range() makes in a template.
const MaxRange = 1 << 20

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Special holds the special-token strings a template may write: the
// bos_token and eos_token variables.
type Special struct {
	BOS, EOS string
}

// SpecialOf reads the beginning- and end-of-sequence strings of a
// vocabulary ("" where it has none). Surrounding white space is dropped:
// llama2.c vocabularies store BOS as "\n<s>\n".
func SpecialOf(tok tokenizer.Tokenizer) Special {
	var s Special
	if tok == nil {
		return s
	}
	if id := tok.BOS(); id >= 0 && id < tok.VocabSize() {
		s.BOS = strings.TrimSpace(tok.Piece(id))
	}
	if id := tok.EOS(); id >= 0 && id < tok.VocabSize() {
		s.EOS = strings.TrimSpace(tok.Piece(id))
	}
	return s
}

// Template formats conversations for one model: a compiled Jinja template
// or a built-in format.
type Template struct {
	family  Family
	special Special
	src     string          // Jinja source; "" for a built-in format
	jt      *jinja.Template // nil for a built-in format
}

// Compile compiles a Jinja chat template with the model's special-token
// strings. Its family (for the stop strings) comes from the markers it
// writes; one with none known is Custom.
func Compile(src string, sp Special) (*Template, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("chat template: empty")
	}
	jt, err := compile(src)
	if err != nil {
		return nil, err
	}
	f := familyOf(src)
	if f == "" {
		f = Custom
	}
	return &Template{family: f, special: sp, src: src, jt: jt}, nil
}

func compile(src string) (jt *jinja.Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			jt, err = nil, fmt.Errorf("chat template: does not compile: %s", oneLine(fmt.Sprint(r)))
		}
	}()
	jt, err = jinja.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("chat template: does not compile: %s", oneLine(strings.TrimPrefix(strings.TrimPrefix(err.Error(), "jinja scan: "), "jinja parse: ")))
	}
	return jt, nil
}

// Builtin returns the built-in format of a family (Plain for Custom or an
// unknown family).
func Builtin(f Family) *Template {
	switch f {
	case ChatML, Llama3, Llama2, Gemma, Phi3:
	default:
		f = Plain
	}
	return &Template{family: f}
}

// ForModel returns the template for a model: its own Jinja template src
// (GGUF tokenizer.chat_template; "" when it has none) with the special
// tokens of tok, or, without one, the built-in format Detect picks. A
// template that does not compile gives the built-in format together with
// the error, so that a caller can say so and go on.
func ForModel(src string, tok tokenizer.Tokenizer) (*Template, error) {
	if strings.TrimSpace(src) == "" {
		return Builtin(Detect("", tok)), nil
	}
	t, err := Compile(src, SpecialOf(tok))
	if err != nil {
		return Builtin(Detect(src, tok)), err
	}
	return t, nil
}

// Family is the chat format the template belongs to.
func (t *Template) Family() Family { return t.family }

// Source is the Jinja source, "" for a built-in format.
func (t *Template) Source() string { return t.src }

// Special is the bos_token and eos_token the template renders with.
func (t *Template) Special() Special { return t.special }

// Render formats msgs as the model's prompt. With addGenerationPrompt the
// prompt ends where the assistant's answer begins. An error is one line
// that starts "chat template: ", such as the message of the template's
// raise_exception.
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	if t.jt == nil {
		return t.builtin(msgs, addGenerationPrompt), nil
	}
	return t.render(msgs, addGenerationPrompt)
}

// errRaised marks a raise_exception call.
type errRaised struct{ msg string }

func (e *errRaised) Error() string { return e.msg }

func (t *Template) render(msgs []Message, agp bool) (out string, err error) {
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	var raised *errRaised
	data := map[string]jinja.Value{
		"messages":              jinja.NewList(list),
		"add_generation_prompt": jinja.NewBool(agp),
		"bos_token":             jinja.NewString(t.special.BOS),
		"eos_token":             jinja.NewString(t.special.EOS),
		"raise_exception": jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			msg := "raise_exception called"
			if len(args) > 0 {
				msg = str(args[0])
			}
			raised = &errRaised{msg: msg}
			return jinja.Undefined(), raised
		}),
		"range": jinja.NewCallable("range", boundedRange),
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat template: %s", oneLine(fmt.Sprint(r)))
		}
	}()
	out, err = t.jt.RenderValues(data)
	if err != nil {
		if raised != nil {
			return "", fmt.Errorf("chat template: %s", oneLine(raised.msg))
		}
		return "", fmt.Errorf("chat template: %s", oneLine(err.Error()))
	}
	return out, nil
}

// boundedRange is Python's range over integers, of at most MaxRange items.
func boundedRange(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	var n [3]int64
	for i, a := range args {
		if i >= 3 {
			break
		}
		switch {
		case a.IsInt():
			n[i] = a.AsInt()
		case a.IsBool():
			if a.AsBool() {
				n[i] = 1
			}
		default:
			return jinja.Undefined(), fmt.Errorf("range: %s is not an integer", str(a))
		}
	}
	start, stop, step := int64(0), int64(0), int64(1)
	switch len(args) {
	case 1:
		stop = n[0]
	case 2:
		start, stop = n[0], n[1]
	case 3:
		start, stop, step = n[0], n[1], n[2]
	default:
		return jinja.Undefined(), fmt.Errorf("range: takes 1 to 3 arguments, got %d", len(args))
	}
	if step == 0 {
		return jinja.Undefined(), errors.New("range: step is zero")
	}
	var count int64
	if step > 0 && stop > start {
		count = (stop - start + step - 1) / step
	} else if step < 0 && start > stop {
		count = (start - stop - step - 1) / -step
	}
	if count > MaxRange || count < 0 {
		return jinja.Undefined(), fmt.Errorf("range: %d items, more than the %d a chat template may make", count, MaxRange)
	}
	items := make([]jinja.Value, count)
	for i := range items {
		items[i] = jinja.NewInt(start + int64(i)*step)
	}
	return jinja.NewList(items), nil
}

// str is a value as Jinja prints it.
func str(v jinja.Value) string {
	if v.IsString() {
		return v.AsString()
	}
	return v.String()
}

// oneLine folds an error message onto one line of at most 300 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		cut := 300
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// Encode turns a rendered prompt into token ids: special-token text such
// as "<|im_start|>" becomes its token, and BOS comes first when the
// vocabulary asks for it and the prompt does not already begin with it
// (Llama 3's template writes <|begin_of_text|> itself).
func Encode(tok tokenizer.Tokenizer, prompt string) []int {
	bos := tok.AddBOS()
	if b := SpecialOf(tok).BOS; bos && b != "" && strings.HasPrefix(prompt, b) {
		bos = false
	}
	return tok.Encode(prompt, tokenizer.EncodeOptions{BOS: bos, ParseSpecial: true})
}
