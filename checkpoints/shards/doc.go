// Package shards is the content-addressed layout of a model: how a model
// becomes blocks that peers exchange, and how a node rebuilds the whole
// model, or only a span of its layers, from them.
//
// A model is a manifest block, whose CID is the model's identity. The
// manifest holds the architecture config and links to parts: one for the
// token embedding, one per layer and one for the head (final norm and
// output matrix). A part lists its tensors (name, dtype, shape, size) and,
// for each, the ordered CIDs of the 1 MiB raw blocks its bytes are cut
// into. The tokenizer travels as a blob: a small GGUF file holding only the
// tokenizer's metadata, cut into blocks the same way. Every block is
// CIDv1, raw codec, sha2-256, so the same input always gives the same
// model CID, and a node that hosts layers 10 to 19 fetches exactly those
// parts' blocks, verified one by one. docs/formats.md specifies the JSON of
// manifests and parts.
package shards
