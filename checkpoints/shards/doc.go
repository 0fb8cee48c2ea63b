// Package shards is the content-addressed layout of a model: how a model
// becomes blocks that peers exchange, and how a node rebuilds the whole
// model, or only a span of its layers, from them.
//
// A model is a manifest block, whose CID is the model's identity. The
// manifest holds the architecture config and links to parts: one for the
// token embedding, one per layer and one for the head (final norm and,
// unless it is shared with the embedding, the output matrix). A part lists
// its tensors (GGUF name, dtype, shape as [rows, cols], size) and, for
// each, the ordered CIDs of the 1 MiB raw blocks its bytes are cut into.
// The tokenizer travels as a blob: a small GGUF file holding only the
// tokenizer's metadata (the chat template, tokenizer.chat_template,
// included; Loaded.ChatTemplate), cut into blocks the same way.
//
// Two manifest versions are read. ManifestFormat holds Llama 2's block
// and is what a model with nothing more is written as, so that its CID
// does not change. ManifestFormat2 holds every architecture that runs:
// its config carries the block's switches (activation, scales, soft-caps,
// sliding window), LayerTensors names the optional tensors every layer
// part holds after Llama 2's nine (q/k/v biases, q/k norms, post-norms),
// and RopeFreqs links the rotary frequency factors, which every span of
// layers loads. Any other version is refused, naming it.
//
// Manifests and parts are canonical DAG-JSON (sorted keys, no whitespace)
// addressed with NodePrefix (CIDv1, dag-json, sha2-256); chunks are raw
// blocks (block.Prefix). The same input always gives the same model CID,
// and a node that hosts layers 10 to 19 fetches exactly those parts'
// blocks, verified one by one.
//
// The caller's duties:
//
//   - Import writes every block through a Putter (a *blocks.Store) and
//     returns the CIDs to announce on the DHT: the root and each part.
//   - BlocksFor plans a pull: the blocks a Span needs, after checking each
//     part against the config. Fetch those, then Load the span from the
//     local store. Load, BlocksFor, Inspect and Export take any Getter (the
//     local store, or the network exchange) and re-hash every block.
//   - Export streams a GGUF file; importing it gives the same CID.
//
// docs/formats.md specifies the JSON of manifests and parts and the
// limits enforced when decoding them.
package shards
