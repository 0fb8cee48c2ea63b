// Package openai is the node's OpenAI-compatible API: GET /v1/models, POST
// /v1/completions and POST /v1/chat/completions, with server-sent events
// when "stream" is true and errors in OpenAI's shape, so that any OpenAI
// client pointed at http://127.0.0.1:5150/v1 works with a node.
//
// The adapter translates; it runs nothing. A Backend (the daemon) names
// the models and hands out a Completer for each: a model on the node, or
// a client of the swarm. A Completer turns a prompt into text; Generate is
// the loop every Completer runs over its own token generator (the prompt
// encoded, the context checked, stop strings held back and cut). A chat
// request's conversation is rendered with the model's chat template
// (model/chat: the Jinja template its GGUF carries, or a built-in format),
// encoded with its control tokens, and ends at the template's end of turn;
// a conversation the template refuses answers 400 with its message.
//
// docs/protocol.md specifies the requests, answers and errors.
package openai
