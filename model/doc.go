// Package model is the Llama-family transformer: its configuration, its
// weights, a forward pass over any span of layers for a batch of positions
// (prompt prefill) or a single one (decode) with a KV cache, the embedding,
// final norm and output head as separate steps, and sampling.
//
// The steps are separate because in a swarm no single node holds the whole
// model: a client embeds tokens and computes logits, and servers run spans
// of layers on hidden states they receive. On one machine the same steps
// run back to back:
//
//	e := model.NewEngine(weights, backend)
//	c, _ := e.NewCache(0, cfg.Layers, 512)
//	e.Embed(x, ids)          // x: [len(ids), Dim]
//	e.Forward(c, x, len(ids)) // layers [0, Layers), positions appended to c
//	e.Logits(logits, x[(len(ids)-1)*Dim:])
//
// The KV cache keeps each layer's keys and values in half precision by
// default (rounded once as they are stored; attention still computes in
// float32), which halves what a decode step reads from it and what a
// session holds. model.NewEngine(weights, backend, model.KVType(kernels.F32))
// keeps them as computed instead.
//
// Every forward pass runs one block function (block.go): decode, prefill,
// a batch of decode steps of many sequences (ForwardRows) and the training
// forward differ only in which rows belong to which sequence and cache,
// and in where the block's intermediates go. Its matrix products go
// through Linear maps, a Dense over the layer's weight unless SetLinear
// puts an adapter (such as LoRA) in its place.
//
// Training follows the forward with its mirror, op by op in reverse, each
// op adding into the gradients of its inputs. It needs a backend with
// training kernels (kernels.Trainer):
//
//	g := model.NewGrads(weights)   // every parameter's gradient, one allocation
//	e.SetGrads(g)                  // full fine-tuning; nil freezes the base weights
//	a, _ := e.NewActivations(0, cfg.Layers, batch, seq) // the record, one allocation
//	g.Zero()
//	loss, _ := e.TrainForward(a, ids, targets) // [batch·seq] each; target < 0: no loss
//	e.TrainBackward(a)             // adds ∂loss/∂θ into g (and adapters' own)
//
// A pipeline stage runs SpanForward and SpanBackward on its span of layers;
// the node that holds the head and the embedding runs HeadForward,
// HeadBackward and EmbedBackward.
//
// Package model knows nothing of networks or file formats; checkpoints
// builds Weights from files, and kernels does the math.
package model
