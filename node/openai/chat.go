package openai

import (
	"strings"

	"github.com/mycel-net/mycel/model/tokenizer"
)

// ChatTemplate turns a conversation into the prompt a model family was
// trained on. GGUF files carry their template as Jinja source, which Mycel
// does not run; instead it recognizes the family from the template's
// markers (or from the vocabulary) and renders that family's format.
type ChatTemplate string

// The formats Mycel renders.
const (
	// ChatML: <|im_start|>role\ncontent<|im_end|>\n (Qwen, SmolLM, ...).
	ChatML ChatTemplate = "chatml"
	// Llama3: <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>.
	Llama3 ChatTemplate = "llama3"
	// Llama2: [INST] <<SYS>>...<</SYS>> user [/INST] assistant </s><s>[INST] ...
	Llama2 ChatTemplate = "llama2"
	// Plain: "role: content" lines, for models trained without a chat
	// format (TinyStories and the like).
	Plain ChatTemplate = "plain"
)

// DetectChatTemplate picks the format from a GGUF tokenizer.chat_template
// (may be empty) and the vocabulary.
func DetectChatTemplate(jinja string, tok tokenizer.Tokenizer) ChatTemplate {
	switch {
	case strings.Contains(jinja, "<|im_start|>"):
		return ChatML
	case strings.Contains(jinja, "<|start_header_id|>"):
		return Llama3
	case strings.Contains(jinja, "[INST]"):
		return Llama2
	}
	if tok != nil {
		for id := 0; id < tok.VocabSize(); id++ {
			switch tok.Piece(id) {
			case "<|im_start|>":
				return ChatML
			case "<|start_header_id|>":
				return Llama3
			}
		}
	}
	return Plain
}

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Render formats messages as a prompt that ends where the assistant's
// answer begins, and returns the strings that end an assistant turn (to
// use as stop strings, in case the model writes them as text).
func (t ChatTemplate) Render(msgs []Message) (prompt string, stops []string) {
	var b strings.Builder
	switch t {
	case ChatML:
		for _, m := range msgs {
			b.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		b.WriteString("<|im_start|>assistant\n")
		return b.String(), []string{"<|im_end|>"}
	case Llama3:
		b.WriteString("<|begin_of_text|>")
		for _, m := range msgs {
			b.WriteString("<|start_header_id|>" + m.Role + "<|end_header_id|>\n\n" + strings.TrimSpace(m.Content) + "<|eot_id|>")
		}
		b.WriteString("<|start_header_id|>assistant<|end_header_id|>\n\n")
		return b.String(), []string{"<|eot_id|>"}
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
		return b.String(), []string{"[INST]"}
	}
	for _, m := range msgs {
		b.WriteString(roleTitle(m.Role) + ": " + m.Content + "\n")
	}
	b.WriteString("Assistant:")
	return b.String(), []string{"\nUser:", "\nSystem:"}
}

func roleTitle(r string) string {
	if r == "" {
		return ""
	}
	return strings.ToUpper(r[:1]) + r[1:]
}
