// Package checkpoints reads and writes model files: GGUF (read v2/v3,
// write v3) and llama2.c checkpoints, and turns them into model.Weights.
package checkpoints
