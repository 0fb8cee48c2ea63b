package chat

import (
	"strings"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// Family is a chat format: the markers its prompts use, and the strings
// that end an assistant turn.
type Family string

// The families Mycel knows. Each but Custom has a built-in format.
const (
	// ChatML: <|im_start|>role\ncontent<|im_end|>\n (Qwen, SmolLM, ...).
	ChatML Family = "chatml"
	// Llama3: <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>.
	Llama3 Family = "llama3"
	// Llama2: [INST] <<SYS>>...<</SYS>> user [/INST] assistant </s><s>[INST] ...
	// (Llama 2 and Mistral).
	Llama2 Family = "llama2"
	// Gemma: <start_of_turn>user\ncontent<end_of_turn>\n, the assistant
	// being "model" and the system prompt opening the first user turn.
	Gemma Family = "gemma"
	// Phi3: <|user|>\ncontent<|end|>\n.
	Phi3 Family = "phi3"
	// Plain: "Role: content" lines, for models trained without a chat
	// format (TinyStories and the like).
	Plain Family = "plain"
	// Custom: a Jinja template with none of the markers above; its turns
	// end at the model's end-of-sequence token.
	Custom Family = "custom"
)

// Detect picks the built-in format for a model from its Jinja template
// (may be empty) and its vocabulary (may be nil): the template's markers
// first, then the vocabulary's control tokens, else Plain.
func Detect(jinja string, tok tokenizer.Tokenizer) Family {
	if f := familyOf(jinja); f != "" {
		return f
	}
	if tok != nil {
		var gemma, phiUser, phiEnd bool
		for id := 0; id < tok.VocabSize(); id++ {
			switch tok.Piece(id) {
			case "<|im_start|>":
				return ChatML
			case "<|start_header_id|>":
				return Llama3
			case "<start_of_turn>":
				gemma = true
			case "<|user|>":
				phiUser = true
			case "<|end|>":
				phiEnd = true
			}
		}
		switch {
		case gemma:
			return Gemma
		case phiUser && phiEnd:
			return Phi3
		}
	}
	return Plain
}

// familyOf recognizes a template by the markers it writes, "" if none.
func familyOf(src string) Family {
	switch {
	case strings.Contains(src, "<|im_start|>"):
		return ChatML
	case strings.Contains(src, "<|start_header_id|>"):
		return Llama3
	case strings.Contains(src, "[INST]"):
		return Llama2
	case strings.Contains(src, "<start_of_turn>"):
		return Gemma
	case strings.Contains(src, "<|user|>") && strings.Contains(src, "<|end|>"):
		return Phi3
	}
	return ""
}

// stops are the strings that end an assistant turn of each family.
var stops = map[Family][]string{
	ChatML: {"<|im_end|>"},
	Llama3: {"<|eot_id|>"},
	Llama2: {"[INST]"},
	Gemma:  {"<end_of_turn>"},
	Phi3:   {"<|end|>"},
	Plain:  {"\nUser:", "\nSystem:"},
}

// Stops returns the strings that end an assistant turn, for a model that
// writes them as text rather than as their token: the family's, and for a
// Jinja template also the eos_token string.
func (t *Template) Stops() []string {
	s := append([]string(nil), stops[t.family]...)
	if t.jt != nil && t.special.EOS != "" && !contains(s, t.special.EOS) {
		s = append(s, t.special.EOS)
	}
	return s
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// StopIDs returns the ids of the stop strings that are single tokens of
// tok (such as <|im_end|> or <end_of_turn>).
func (t *Template) StopIDs(tok tokenizer.Tokenizer) []int {
	var ids []int
	for _, s := range t.Stops() {
		enc := tok.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true})
		if len(enc) == 1 && tok.Piece(enc[0]) == s {
			ids = append(ids, enc[0])
		}
	}
	return ids
}

// StopRule is tokenizer.StopRule (the model's end of text, end of turn or
// BOS) that also stops at the template's single-token stop strings; nil
// with ignoreEOS.
func (t *Template) StopRule(tok tokenizer.Tokenizer, ignoreEOS bool) func(id int) bool {
	base := tokenizer.StopRule(tok, ignoreEOS)
	if base == nil {
		return nil
	}
	ids := t.StopIDs(tok)
	if len(ids) == 0 {
		return base
	}
	return func(id int) bool {
		if base(id) {
			return true
		}
		for _, s := range ids {
			if id == s {
				return true
			}
		}
		return false
	}
}

// builtin renders the built-in format of t's family.
func (t *Template) builtin(msgs []Message, agp bool) string {
	var b strings.Builder
	switch t.family {
	case ChatML:
		for _, m := range msgs {
			b.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		if agp {
			b.WriteString("<|im_start|>assistant\n")
		}
	case Llama3:
		b.WriteString("<|begin_of_text|>")
		for _, m := range msgs {
			b.WriteString("<|start_header_id|>" + m.Role + "<|end_header_id|>\n\n" + strings.TrimSpace(m.Content) + "<|eot_id|>")
		}
		if agp {
			b.WriteString("<|start_header_id|>assistant<|end_header_id|>\n\n")
		}
	case Llama2:
		// The tokenizer adds the first BOS; later turns start with </s><s>.
		sys := ""
		first := true
		for _, m := range msgs {
			switch m.Role {
			case "system":
				sys += m.Content
			case "user":
				if !first {
					b.WriteString("<s>")
				}
				b.WriteString("[INST] ")
				if sys != "" {
					b.WriteString("<<SYS>>\n" + sys + "\n<</SYS>>\n\n")
					sys = ""
				}
				b.WriteString(strings.TrimSpace(m.Content) + " [/INST]")
				first = false
			case "assistant":
				b.WriteString(" " + strings.TrimSpace(m.Content) + " </s>")
			}
		}
	case Gemma:
		// Gemma has no system role: the system prompt opens the first
		// user turn.
		sys := ""
		for _, m := range msgs {
			role := m.Role
			switch role {
			case "system":
				sys += strings.TrimSpace(m.Content) + "\n\n"
				continue
			case "assistant":
				role = "model"
			}
			content := strings.TrimSpace(m.Content)
			if role == "user" && sys != "" {
				content, sys = sys+content, ""
			}
			b.WriteString("<start_of_turn>" + role + "\n" + content + "<end_of_turn>\n")
		}
		if agp {
			b.WriteString("<start_of_turn>model\n")
		}
	case Phi3:
		for _, m := range msgs {
			b.WriteString("<|" + m.Role + "|>\n" + m.Content + "<|end|>\n")
		}
		if agp {
			b.WriteString("<|assistant|>\n")
		}
	default:
		for _, m := range msgs {
			b.WriteString(roleTitle(m.Role) + ": " + m.Content + "\n")
		}
		if agp {
			b.WriteString("Assistant:")
		}
	}
	return b.String()
}

func roleTitle(r string) string {
	if r == "" {
		return ""
	}
	return strings.ToUpper(r[:1]) + r[1:]
}
