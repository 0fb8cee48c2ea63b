// Package kernels defines the tensor math that the transformer in package
// model runs on: the element types weights are stored in (f32, f16, bf16 and
// the GGUF block-quantized Q8_0 and Q4_0), the Matrix that carries a weight
// tensor in its stored form, and the Backend interface that a compute device
// implements.
//
// A backend that can also train implements Trainer: the products and the
// backward of each op that a backward pass needs, deterministic whatever
// the number of threads.
//
// The CPU implementation lives in kernels/cpu. A GPU backend can be added
// beside it without touching package model, which only ever sees Backend.
//
// Conventions shared by every backend:
//
//   - A weight matrix is [Rows, Cols], row-major, one output per row: the
//     product of W with a vector x is y[r] = Σ_c W[r,c]·x[c].
//   - Activations are float32, tightly packed: n positions of width w are
//     n·w floats, position t at [t·w, (t+1)·w).
//   - Quantized types store blocks of 32 consecutive values of one row; a row
//     of a quantized matrix therefore needs Cols to be a multiple of 32.
//   - A KV cache is host memory in the layout of AttnParams, float32
//     (StoreKV, Attention) or half precision (StoreKV16, Attention16:
//     binary16 bits rounded to nearest even on store); either way the
//     attention computes in float32.
//
// Reference implementations in float64, used by tests of every backend, are
// in package kernels/kerneltest.
package kernels
