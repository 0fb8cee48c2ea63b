// Package checkpoints reads model files into model.Weights, writes GGUF,
// and makes synthetic models for tests and benchmarks.
//
// # Entry points
//
//	Load(path, opts...)      any supported model file → *Model (weights, tokenizer, format)
//	LoadTokenizer(path, n)   a GGUF file's vocabulary, or a llama2.c tokenizer.bin of n entries
//	OpenGGUF / ParseGGUF     GGUF metadata and tensor windows, without building a model
//	WriteGGUF                GGUF v3 writer, streaming tensor data
//	Synth, SynthShapes       seeded random-weight GGUF models of named shapes
//	ConvertHF                a Hugging Face model directory (safetensors) → GGUF
//	OpenSafeTensors          the tensors of a safetensors file or of a model's shards
//	HFTokenizerKVs           a Hugging Face tokenizer.json → GGUF tokenizer metadata
//
// Load detects the format from the first bytes: "GGUF", the llama2.c
// "ak42" magic, or else a legacy llama2.c header, which is accepted only
// when the file's size is exactly what the header implies. The file is
// memory-mapped and tensors are used in place wherever their stored form
// is one the kernels run, so a 4 GB model costs page cache, not heap.
// Weights that come from the map are read-only and valid until
// Model.Close; so are a GGUF's tensor windows until GGUF.Close. (If the
// file is truncated by another process while mapped, reading the lost
// pages faults; do not rewrite model files in place.)
//
// # GGUF (versions 2 and 3, little-endian)
//
//	uint32 magic "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count
//	kv_count × { string key, uint32 type, value }
//	tensor_count × { string name, uint32 n_dims, n_dims × uint64 (innermost first),
//	                 uint32 ggml_type, uint64 offset (from the data section) }
//	padding to general.alignment (default 32), then the data section
//
// A string is a uint64 length and that many bytes; an array is a uint32
// element type, a uint64 count and the elements (arrays may nest). Value
// types: u8 0, i8 1, u16 2, i16 3, u32 4, i32 5, f32 6, bool 7, string 8,
// array 9, u64 10, i64 11, f64 12.
//
// The reader treats the file as hostile: every count and length is
// checked against the bytes that remain before anything is allocated, array
// nesting and n_dims are limited, element counts are checked for overflow,
// and each tensor must be aligned, inside the file and disjoint from the
// others. Errors name the key or tensor at fault. Arrays are checked when
// the file is parsed but decoded only when asked for (Strings, Int32s,
// ...): opening the Qwen3 fixture (151,669 tokens and 151,387 merges)
// takes about 2 ms, decoding its tokens a few more.
//
// Tensor types F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS map to the kernels' types and are
// used as stored (layouts in docs/formats.md). Every other GGML type with a
// known block layout (IQ2_XS, TQ1_0, ...) parses, but Load rejects a model
// that uses one with one line naming the file, the tensor and the type.
//
// # GGUF "llama" models
//
// The config comes from llama.* keys: embedding_length, feed_forward_length,
// block_count, attention.head_count, context_length (required);
// attention.head_count_kv (default head_count), rope.freq_base (10000),
// attention.layer_norm_rms_epsilon (1e-5); attention.key_length, if
// present, is the head size (embedding_length/head_count without it), and
// attention.value_length and rope.dimension_count, if present, must equal
// it; rope.scaling.factor, with rope.scaling.type "linear" or absent,
// scales positions down linearly. The other architectures read the same
// keys under their own name (docs/formats.md). The vocabulary size is token_embd's
// row count. RoPE rotates adjacent pairs. A matrix with GGUF dims
// [in, out] becomes Matrix{Rows: out, Cols: in}. Without output.weight the
// classifier is the token embedding. Norms become []float32 (F16 and BF16
// norms are converted). tokenizer.ggml.model "llama" builds a SentencePiece
// tokenizer (add_bos_token default true), "gpt2" a byte-level BPE one
// (default false).
//
// # llama2.c checkpoints
//
// Legacy (v0): 7 × int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len), then float32 arrays: token embedding [vocab, dim],
// rms_att [L, dim], wq [L, dim, dim], wk and wv [L, kv_dim, dim], wo
// [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim,
// hidden], w3 [L, hidden, dim], rms_final [dim], freq_cis (seq_len ×
// head_size floats, skipped), and the classifier [vocab, dim] when
// vocab_size is negative (unshared). All tensors are used from the map.
//
// "ak42" files start with a 256-byte header: uint32 0x616b3432, int32
// version, the same 7 int32 values, uint8 shared_classifier, and for
// version 2 an int32 group size, zero-padded. Both versions then store
// the norms (rms_att ×L, rms_ffn ×L, rms_final) as float32, followed by
// the token embedding, wq ×L, wk ×L, wv ×L, wo ×L, w1 ×L, w2 ×L, w3 ×L and
// the classifier if unshared. Version 1 stores those as float32. Version 2
// stores each as its int8 values followed by one float32 scale per group
// of consecutive values (groups may run across rows: stories260K's w2 has
// rows of 172). A version 2 tensor whose groups are 32 and whose rows are
// a multiple of 32 is repacked into Q8_0 blocks (the scale rounded to f16,
// the int8 values exact); any other is dequantized to f32, as is every
// tensor with the DequantizeQ8 option. Exact file sizes are checked for
// every version.
//
// # Synthetic models
//
// Synth writes a GGUF llama model of a named shape (tiny, stories260K,
// stories15M, stories42M, stories110M) from a splitmix64 stream: matrices
// uniform with standard deviation 0.02, norms uniform around 1, a shared
// classifier, and a SentencePiece-style vocabulary (<unk>, <s>, </s>, the
// 256 byte pieces, then printable pieces) so that the model runs end to
// end. A matrix whose rows do not fit the requested type's 32-value blocks
// (stories260K's FFN down projection) is written as f32.
package checkpoints
