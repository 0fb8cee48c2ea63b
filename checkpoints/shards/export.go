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
// manifest has one), the "<arch>." metadata of the config
// (checkpoints.ArchKVs), the stored tokenizer's metadata, and every
// tensor with exactly the bytes that were imported, streamed chunk by
// chunk, each chunk verified against its CID. Importing the result gives
// the same model CID. Tensors are listed in part order (embedding, rotary
// frequency factors, layers, head); for an architecture whose GGUF form
// fuses q, k and v, or the gate and up projections, into one matrix
// (phi3), the parts' separate matrices are written as that one, their
// rows one after another, as the loader splits it. So a GGUF source's
// tensor bytes come back bit for bit, though its metadata other than the
// name, the config and the tokenizer does not.
func Export(ctx context.Context, get Getter, root cid.Cid, w io.Writer) error {
	m, err := GetManifest(ctx, get, root)
	if err != nil {
		return err
	}
	c := m.Config
	if c.KVLoRA > 0 {
		return fmt.Errorf("shards: export: %s's latent attention and YaRN have no GGUF form here yet", c.Arch)
	}
	kvs, err := checkpoints.ArchKVs(c, m.Name)
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
	fusedQKV, fusedGateUp := checkpoints.Fused(c.Arch)
	var specs []checkpoints.TensorSpec
	// addAs writes the tensors ts, rows of one another, as one named
	// name; stacked, as the planes of a three-dimensional one, which
	// needs them all of one shape.
	addAs := func(stacked bool, name string, ts ...Tensor) error {
		dt, _ := kernels.DTypeNamed(ts[0].DType)
		gt, err := checkpoints.GGMLTypeOf(dt)
		if err != nil {
			return fmt.Errorf("shards: export: tensor %s: %w", name, err)
		}
		dims := make([]uint64, len(ts[0].Shape))
		for i, d := range ts[0].Shape {
			dims[len(dims)-1-i] = uint64(d) // GGUF lists the innermost first
		}
		for _, t := range ts[1:] {
			if t.DType != ts[0].DType || len(t.Shape) != 2 || len(ts[0].Shape) != 2 || t.Shape[1] != ts[0].Shape[1] || stacked && t.Shape[0] != ts[0].Shape[0] {
				return fmt.Errorf("shards: export: %s and %s (%s %v, %s %v) cannot be joined into %s", ts[0].Name, t.Name, ts[0].DType, ts[0].Shape, t.DType, t.Shape, name)
			}
			if !stacked {
				dims[1] += uint64(t.Shape[0])
			}
		}
		if stacked {
			dims = append(dims, uint64(len(ts)))
		}
		specs = append(specs, checkpoints.TensorSpec{
			Name: name, Type: gt, Dims: dims,
			Write: func(w io.Writer) error {
				for _, t := range ts {
					if err := eachChunk(ctx, get, "tensor "+t.Name, &t.Blob, func(d []byte) error {
						_, err := w.Write(d)
						return err
					}); err != nil {
						return err
					}
				}
				return nil
			},
		})
		return nil
	}
	add := func(name string, ts ...Tensor) error { return addAs(false, name, ts...) }
	for _, r := range m.PartRefs(Whole(c.Layers)) {
		p, err := m.GetPart(ctx, get, r)
		if err != nil {
			return err
		}
		ts := p.Tensors
		if r.Kind == LayerPart && m.expertLayer(r.Layer) {
			if err := exportExpertLayer(ctx, get, m, r, p, add, addAs); err != nil {
				return err
			}
			continue
		}
		if r.Kind == LayerPart {
			// The nine of Llama 2's block, in CheckPart's order, then
			// the optional ones.
			pre := fmt.Sprintf("blk.%d.", r.Layer)
			norm, q, k, v, o, ffnNorm, gate, down, up := ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ts[6], ts[7], ts[8]
			groups := [][]Tensor{{norm}}
			if fusedQKV {
				groups = append(groups, []Tensor{q, k, v})
			} else {
				groups = append(groups, []Tensor{q}, []Tensor{k}, []Tensor{v})
			}
			groups = append(groups, []Tensor{o}, []Tensor{ffnNorm})
			if fusedGateUp {
				groups = append(groups, []Tensor{gate, up}, []Tensor{down})
			} else {
				groups = append(groups, []Tensor{gate}, []Tensor{down}, []Tensor{up})
			}
			for _, t := range ts[9:] {
				groups = append(groups, []Tensor{t})
			}
			for _, g := range groups {
				name := g[0].Name
				switch {
				case len(g) == 3:
					name = pre + "attn_qkv.weight"
				case len(g) == 2:
					name = pre + "ffn_up.weight"
				}
				if err := add(name, g...); err != nil {
					return err
				}
			}
			continue
		}
		for _, t := range ts {
			if err := add(t.Name, t); err != nil {
				return err
			}
		}
		if r.Kind == EmbeddingPart && m.RopeFreqs != nil {
			if err := add(ropeFreqsName, *m.RopeFreqs); err != nil {
				return err
			}
		}
	}
	return checkpoints.WriteGGUF(w, kvs, specs)
}

// exportExpertLayer adds the tensors of the layer part p of routed
// experts: the attention's and the router's as the part lists them, then
// each expert matrix of its expert parts stacked into the file's
// ffn_gate_exps, ffn_down_exps and ffn_up_exps, then the optional ones.
func exportExpertLayer(ctx context.Context, get Getter, m *Manifest, r PartRef, p *Part,
	add func(string, ...Tensor) error, addAs func(bool, string, ...Tensor) error) error {
	if fq, fg := checkpoints.Fused(m.Config.Arch); fq || fg {
		return fmt.Errorf("shards: export: %s layers of experts with fused matrices have no GGUF form here", m.Config.Arch)
	}
	n := len(m.expected(r)) - len(m.LayerTensors) // up to the router's tensors
	for _, t := range p.Tensors[:n] {
		if err := add(t.Name, t); err != nil {
			return err
		}
	}
	var gate, down, up []Tensor
	for _, er := range p.ExpertRefs(r) {
		ep, err := m.GetPart(ctx, get, er)
		if err != nil {
			return err
		}
		gate, down, up = append(gate, ep.Tensors[0]), append(down, ep.Tensors[1]), append(up, ep.Tensors[2])
	}
	pre := fmt.Sprintf("blk.%d.", r.Layer)
	for _, g := range []struct {
		name string
		ts   []Tensor
	}{{"ffn_gate_exps.weight", gate}, {"ffn_down_exps.weight", down}, {"ffn_up_exps.weight", up}} {
		if err := addAs(true, pre+g.name, g.ts...); err != nil {
			return err
		}
	}
	for _, t := range p.Tensors[n:] {
		if err := add(t.Name, t); err != nil {
			return err
		}
	}
	return nil
}
