package shards

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
)

// Export writes the model root as a GGUF file: general.name (when the
// manifest has one), llama.* metadata from the config, the stored
// tokenizer's metadata, and every tensor with exactly the bytes that were
// imported, streamed chunk by chunk, each chunk verified against its CID.
// Importing the result gives the same model CID. Tensors are listed in
// part order (embedding, layers, head), so a GGUF source's tensor bytes
// come back bit for bit, though its metadata other than the name, the
// config and the tokenizer does not.
func Export(ctx context.Context, get Getter, root cid.Cid, w io.Writer) error {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return err
	}
	c := m.Config
	kvs, err := checkpoints.LlamaKVs(c, m.Name)
	if err != nil {
		return fmt.Errorf("shards: export: %w", err)
	}
	if m.Tokenizer != nil {
		data, err := readBlob(ctx, get, "tokenizer", m.Tokenizer)
		if err != nil {
			return err
		}
		g, err := checkpoints.ParseGGUF(data)
		if err != nil {
			return fmt.Errorf("shards: export: tokenizer: %w", err)
		}
		for _, kv := range g.KVs {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				kvs = append(kvs, kv)
			}
		}
	}
	var specs []checkpoints.TensorSpec
	for _, r := range m.PartRefs(Whole(c.Layers)) {
		p, err := m.GetPart(ctx, get, r)
		if err != nil {
			return err
		}
		for _, t := range p.Tensors {
			dt, _ := kernels.DTypeNamed(t.DType)
			gt, err := checkpoints.GGMLTypeOf(dt)
			if err != nil {
				return fmt.Errorf("shards: export: tensor %s: %w", t.Name, err)
			}
			dims := make([]uint64, len(t.Shape))
			for i, d := range t.Shape {
				dims[len(t.Shape)-1-i] = uint64(d) // GGUF lists the innermost first
			}
			blob := t.Blob
			what := "tensor " + t.Name
			specs = append(specs, checkpoints.TensorSpec{
				Name: t.Name, Type: gt, Dims: dims,
				Write: func(w io.Writer) error {
					return eachChunk(ctx, get, what, &blob, func(d []byte) error {
						_, err := w.Write(d)
						return err
					})
				},
			})
		}
	}
	return checkpoints.WriteGGUF(w, kvs, specs)
}
