package train

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strconv"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// ggufProj is each LoRA target's tensor name in a llama GGUF.
var ggufProj = map[string]string{
	"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
	"gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down",
}

// WriteMerged writes the trained model as a llama GGUF: the adapters
// merged into float32 weights (full fine-tuning: the trained weights),
// converted to dt (see checkpoints.ConvertWeights), with the metadata of
// the base's config, name and the tokenizer entries tokKVs.
func (t *Trainer) WriteMerged(out io.Writer, name string, tokKVs []checkpoints.KV, dt kernels.DType) error {
	kvs, err := checkpoints.LlamaKVs(t.W.Config, name)
	if err != nil {
		return err
	}
	w, err := checkpoints.ConvertWeights(t.Merged(), dt)
	if err != nil {
		return err
	}
	return checkpoints.WriteWeights(out, w, append(kvs, tokKVs...))
}

// WriteAdapter writes the LoRA adapters as a GGUF adapter in the layout
// llama.cpp reads: general.type "adapter", adapter.type "lora",
// adapter.lora.alpha, and for each adapted weight W its pair
// "W.lora_a" ([rank, in] rows, float32) and "W.lora_b" ([out, rank]).
func (t *Trainer) WriteAdapter(out io.Writer, name string) error {
	if t.Job.Method != MethodLoRA {
		return errors.New("train: a full fine-tuning has no adapter to write; write the merged model")
	}
	kvs := []checkpoints.KV{
		{Key: "general.architecture", Value: checkpoints.Str("llama")},
		{Key: "general.type", Value: checkpoints.Str("adapter")},
		{Key: "adapter.type", Value: checkpoints.Str("lora")},
		{Key: "adapter.lora.alpha", Value: checkpoints.F32(float32(t.Job.LoRAAlpha))},
	}
	if name != "" {
		kvs = append(kvs, checkpoints.KV{Key: "general.name", Value: checkpoints.Str(name)})
	}
	var specs []checkpoints.TensorSpec
	i := 0
	for li := range t.W.Config.Layers {
		for _, target := range t.Job.LoRATargets {
			l := t.LoRAs[i]
			i++
			base := fmt.Sprintf("blk.%d.%s.weight", li, ggufProj[target])
			specs = append(specs,
				checkpoints.TensorSpec{Name: base + ".lora_a", Type: checkpoints.GGMLF32, Dims: []uint64{uint64(l.In), uint64(l.Rank)}, Data: kernels.F32Bytes(l.A)},
				checkpoints.TensorSpec{Name: base + ".lora_b", Type: checkpoints.GGMLF32, Dims: []uint64{uint64(l.Rank), uint64(l.Out)}, Data: kernels.F32Bytes(l.B)})
		}
	}
	return checkpoints.WriteGGUF(out, kvs, specs)
}

// Adapter is a LoRA adapter read from a GGUF adapter file.
type Adapter struct {
	Alpha float64
	// Pairs are the adapted weights: layer, target and the A and B
	// matrices as float32.
	Pairs []AdapterPair
}

// AdapterPair is the adapter of one weight.
type AdapterPair struct {
	Layer  int
	Target string // "q", "k", "v", "o", "gate", "up" or "down"
	Rank   int
	In     int
	Out    int
	A, B   []float32
}

var adapterTensor = regexp.MustCompile(`^blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight\.lora_(a|b)$`)

// ErrBadAdapter marks an adapter file that is not a LoRA adapter Mycel can
// apply, or does not fit the model.
var ErrBadAdapter = errors.New("bad LoRA adapter")

// ParseAdapter reads a GGUF LoRA adapter (see WriteAdapter; llama.cpp's
// adapters of llama models read the same): every tensor must be a lora_a
// or lora_b of a llama weight, in f32, f16 or bf16, each a with its b.
func ParseAdapter(g *checkpoints.GGUF) (*Adapter, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadAdapter, fmt.Sprintf(format, args...))
	}
	str := func(key string) string {
		v, _ := g.Get(key)
		s, _ := v.Str()
		return s
	}
	if t := str("general.type"); t != "adapter" {
		if t == "" {
			t = "missing"
		} else {
			t = strconv.Quote(t)
		}
		return nil, bad("general.type is %s, not \"adapter\": is this a model rather than an adapter?", t)
	}
	if t := str("adapter.type"); t != "lora" {
		return nil, bad("adapter.type is %q, not \"lora\"", t)
	}
	if a := str("general.architecture"); a != "llama" {
		return nil, bad("an adapter of architecture %q; Mycel applies adapters of llama models", a)
	}
	v, ok := g.Get("adapter.lora.alpha")
	alpha, isF := v.Float()
	if !ok || !isF || !(alpha > 0) {
		return nil, bad("adapter.lora.alpha missing or not a positive number")
	}
	byName := map[string]*AdapterPair{}
	var order []string // keys in file order
	a := &Adapter{Alpha: alpha}
	for i := range g.Tensors {
		ti := &g.Tensors[i]
		m := adapterTensor.FindStringSubmatch(ti.Name)
		if m == nil {
			return nil, bad("tensor %q is not the lora_a or lora_b of a llama weight", ti.Name)
		}
		if len(ti.Dims) != 2 || !ti.Supported || (ti.DType != kernels.F32 && ti.DType != kernels.F16 && ti.DType != kernels.BF16) {
			return nil, bad("tensor %s: want a 2-D f32, f16 or bf16 matrix", ti.Name)
		}
		layer, err := strconv.Atoi(m[1])
		if err != nil || layer > 1<<16 {
			return nil, bad("tensor %s: layer %s", ti.Name, m[1])
		}
		key := m[1] + "." + m[2]
		p := byName[key]
		if p == nil {
			p = &AdapterPair{Layer: layer}
			for t, n := range ggufProj {
				if n == m[2] {
					p.Target = t
				}
			}
			byName[key] = p
			order = append(order, key)
		}
		cols, rows := int(ti.Dims[0]), int(ti.Dims[1])
		f := make([]float32, rows*cols)
		kernels.Decode(f, ti.DType, ti.Data)
		if m[3] == "a" {
			p.A, p.In, p.Rank = f, cols, rows
		} else {
			p.B, p.Out = f, rows
			if p.Rank != 0 && p.Rank != cols {
				return nil, bad("tensor %s: rank %d, its lora_a has rank %d", ti.Name, cols, p.Rank)
			}
			p.Rank = cols
		}
	}
	for _, key := range order {
		p := byName[key]
		if p.A == nil || p.B == nil {
			return nil, bad("layer %d %s: lora_a and lora_b must come in pairs", p.Layer, p.Target)
		}
		if len(p.A) != p.Rank*p.In {
			return nil, bad("layer %d %s: lora_a is not [rank %d, in]", p.Layer, p.Target, p.Rank)
		}
		a.Pairs = append(a.Pairs, *p)
	}
	if len(a.Pairs) == 0 {
		return nil, bad("no adapter tensors")
	}
	return a, nil
}

// Apply wraps the adapted maps of e (whose weights are w) in frozen LoRA
// maps: e then runs base + adapter without merging. Every pair must fit
// the model's shapes.
func (a *Adapter) Apply(be kernels.Backend, e *model.Engine) error {
	w := e.Weights()
	for _, p := range a.Pairs {
		if p.Layer >= w.Config.Layers || w.Layers[p.Layer] == nil {
			return fmt.Errorf("%w: layer %d %s: the model has %d layers", ErrBadAdapter, p.Layer, p.Target, w.Config.Layers)
		}
		m := layerMatrix(w.Layers[p.Layer], projOfTarget[p.Target])
		if m.Cols != p.In || m.Rows != p.Out {
			return fmt.Errorf("%w: layer %d %s is %d×%d, the model's weight %d×%d", ErrBadAdapter, p.Layer, p.Target, p.Out, p.In, m.Rows, m.Cols)
		}
		l, err := NewLoRA(be, e.Linear(p.Layer, projOfTarget[p.Target]), p.In, p.Out, p.Rank, a.Alpha, rand.New(rand.NewPCG(0, 0)))
		if err != nil {
			return fmt.Errorf("%w: layer %d %s: %w", ErrBadAdapter, p.Layer, p.Target, err)
		}
		copy(l.A, p.A)
		copy(l.B, p.B)
		e.SetLinear(p.Layer, projOfTarget[p.Target], l)
	}
	return nil
}
