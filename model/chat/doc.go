// Package chat turns a conversation into the prompt text a model was
// trained on, and says where the model's answer ends.
//
// A GGUF file carries its chat format as a Jinja template
// (tokenizer.chat_template, [MetadataKey]). [Compile] compiles one, with
// the model's special-token strings ([Special]) as bos_token and
// eos_token, and [Template.Render] runs it over a conversation the way
// Hugging Face's apply_chat_template does: messages is a list of
// {"role", "content"} mappings (in that key order), add_generation_prompt
// is a boolean, blocks trim the newline after them and the indentation
// before them (trim_blocks and lstrip_blocks), and raise_exception(msg)
// ends the rendering with msg. A template that does not render gives a
// one-line error that starts "chat template: " and names the problem,
// such as the alternation check of Mistral's and Gemma's templates.
//
// A model without a template (llama2.c checkpoints, base models) gets a
// built-in format chosen by [Detect] from the template's markers or the
// vocabulary: ChatML, Llama 3, Llama 2 (the [INST] family), Gemma, Phi-3,
// or plain "Role: text" lines. [ForModel] makes that choice for a model.
// Every template also knows its [Family], which gives the strings and
// tokens that end an assistant turn ([Template.Stops], [Template.StopRule]).
//
// # The Jinja engine
//
// Templates run on github.com/ardanlabs/jinja (v1.8.0, the newest release
// that builds with this module's Go), a pure-Go engine written for chat
// templates, with no dependencies of its own. Tried against the templates
// of Llama 3 and 3.1, Qwen 2.5 and 3 (the one stored in the Qwen3 test
// GGUF), Mistral v0.3, Gemma 2 and 3, Phi-3, ChatML and Llama 2, it gave
// Python Jinja2's output byte for byte for every conversation tried,
// raise_exception included. github.com/nikolalohinski/gonja/v2 (v2.9.1)
// was the other candidate: it cannot parse Gemma 3's template (a
// conditional expression in parentheses), writes tojson without the
// spaces Python puts after ':' and ',' and with '<' escaped, has no
// argument-less .strip() or .split(), panics on '%' string formatting,
// and brings logrus and other modules along.
//
// The engine's known gaps, none of which the templates above touch: dicts
// made from Go maps iterate in sorted key order (this package builds the
// messages in Jinja's order itself); floor division of negative numbers
// truncates; none prints as an empty string, and whole floats print
// without ".0"; str.split(sep, maxsplit) ignores maxsplit; '%'
// formatting and the center filter are missing; an attribute of an
// undefined name is undefined rather than an error.
//
// A template is code that comes with the model and is trusted like the
// model: rendering has no time limit. This package caps range() at
// [MaxRange] items and turns an engine panic into an error, but a
// template that loops for ever or builds a huge string is not stopped.
package chat
