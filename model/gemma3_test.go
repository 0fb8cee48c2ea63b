package model_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// gemma3Config is a small Gemma 3: seven layers (0–4 sliding, 5 global,
// 6 sliding), a window of 5 over prompts of 16, heads of 24 where
// dim/heads is 16, one KV head for three query heads, and linear rope
// scaling of the global layers.
func gemma3Config() model.Config {
	return model.Config{
		Arch: "gemma3", Dim: 48, Hidden: 64, Layers: 7, Heads: 3, KVHeads: 1, HeadSize: 24,
		Vocab: 320, Context: 64, RopeTheta: 1e6, RopeStyle: kernels.RopeNeoX, NormEps: 1e-6,
		SharedClassifier: true, Act: model.ActGELU, EmbedScale: float32(math.Sqrt(48)),
		SlidingWindow: 5, SlidingEvery: 6, RopeLocalTheta: 10000, RopeScale: 8,
	}
}

// synthGemma3 writes the model of c with random weights.
func synthGemma3(t *testing.T, c model.Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := checkpoints.SynthArch(&buf, c, "gemma3-test", 7); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gemma3Ref is Gemma 3's forward pass written from its definition in
// float64 over the file's tensors, read by name. The switches change
// one step each, so that the test can show each one matters.
type gemma3Ref struct {
	g *checkpoints.GGUF
	c model.Config
	// noWindow lets sliding layers see everything; oneBase rotates every
	// layer with the global base and scaling; noScale drops the scaling.
	noWindow, oneBase, noScale bool
}

func (r *gemma3Ref) vec(t *testing.T, name string) []float64 {
	ti, ok := r.g.Tensor(name)
	if !ok {
		t.Fatalf("reference: tensor %s missing", name)
	}
	out := make([]float64, len(ti.Data)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(ti.Data[4*i:])))
	}
	return out
}

// mul is W·x for W of rows×len(x), row-major.
func mul(w, x []float64) []float64 {
	n := len(x)
	out := make([]float64, len(w)/n)
	for i := range out {
		for j, v := range x {
			out[i] += w[i*n+j] * v
		}
	}
	return out
}

func rmsNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * s * w[i]
	}
	return out
}

// logits runs ids through the model and returns the logits of every
// position, [len(ids), Vocab].
func (r *gemma3Ref) logits(t *testing.T, ids []int) []float64 {
	c := r.c
	d, hd, eps := c.Dim, c.HeadSize, float64(c.NormEps)
	n := len(ids)
	emb := r.vec(t, "token_embd.weight")
	xs := make([][]float64, n)
	for p, id := range ids {
		xs[p] = make([]float64, d)
		for i := range d {
			xs[p][i] = emb[id*d+i] * float64(float32(math.Sqrt(float64(d))))
		}
	}
	group := c.Heads / c.KVHeads
	for l := range c.Layers {
		w := func(s string) []float64 { return r.vec(t, "blk."+strconv.Itoa(l)+"."+s+".weight") }
		local := (l+1)%6 != 0
		theta, scale := 1e6, 8.0
		if r.noScale {
			scale = 1
		}
		if local && !r.oneBase {
			theta, scale = 10000, 1
		}
		qs, ks, vs := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for p := range n {
			h := rmsNorm(xs[p], w("attn_norm"), eps)
			q, k, v := mul(w("attn_q"), h), mul(w("attn_k"), h), mul(w("attn_v"), h)
			for _, x := range []struct {
				vals []float64
				norm string
			}{{q, "attn_q_norm"}, {k, "attn_k_norm"}} {
				nw := w(x.norm)
				for h0 := 0; h0 < len(x.vals); h0 += hd {
					head := x.vals[h0 : h0+hd]
					copy(head, rmsNorm(head, nw, eps))
					// NeoX rotation: pair i is (i, i+hd/2).
					for i := range hd / 2 {
						ang := float64(p) * math.Pow(theta, -float64(2*i)/float64(hd)) / scale
						a, b := head[i], head[i+hd/2]
						head[i] = a*math.Cos(ang) - b*math.Sin(ang)
						head[i+hd/2] = a*math.Sin(ang) + b*math.Cos(ang)
					}
				}
			}
			qs[p], ks[p], vs[p] = q, k, v
		}
		for p := range n {
			att := make([]float64, c.Heads*hd)
			first := 0
			if local && !r.noWindow {
				first = max(0, p-c.SlidingWindow+1)
			}
			for h := range c.Heads {
				kh := h / group
				q := qs[p][h*hd : (h+1)*hd]
				scores := make([]float64, p+1-first)
				top := math.Inf(-1)
				for j := range scores {
					k := ks[first+j][kh*hd : (kh+1)*hd]
					for i := range hd {
						scores[j] += q[i] * k[i]
					}
					scores[j] /= math.Sqrt(float64(hd))
					top = max(top, scores[j])
				}
				var sum float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - top)
					sum += scores[j]
				}
				for j, s := range scores {
					v := vs[first+j][kh*hd : (kh+1)*hd]
					for i := range hd {
						att[h*hd+i] += s / sum * v[i]
					}
				}
			}
			o := rmsNorm(mul(w("attn_output"), att), w("post_attention_norm"), eps)
			for i := range d {
				xs[p][i] += o[i]
			}
			f := rmsNorm(xs[p], w("ffn_norm"), eps)
			gate, up := mul(w("ffn_gate"), f), mul(w("ffn_up"), f)
			for i, g := range gate {
				gelu := 0.5 * g * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(g+0.044715*g*g*g)))
				gate[i] = gelu * up[i]
			}
			down := rmsNorm(mul(w("ffn_down"), gate), w("post_ffw_norm"), eps)
			for i := range d {
				xs[p][i] += down[i]
			}
		}
	}
	out := make([]float64, 0, n*c.Vocab)
	for p := range n {
		out = append(out, mul(emb, rmsNorm(xs[p], r.vec(t, "output_norm.weight"), eps))...)
	}
	return out
}

// TestGemma3Reference: a random-weight Gemma 3 loads with its config as
// written (the window pattern, the two rotary bases, the heads' width),
// and its logits at every position of a 16-token prompt, run as one
// prefill and again a position at a time, match a float64 forward written
// from the definition to within 1e-4. Float32 arithmetic over seven layers
// of products at most 72 long leaves a few 1e-6 of the logits' scale
// (they reach about 4 here; measured at most 3.2e-6); an error in any one
// step is far larger: the same reference without the window, with one
// rotary base for all layers, or without the global layers' scaling is
// 0.3 to 5 away from it (it must be more than 1e-2 away).
func TestGemma3Reference(t *testing.T) {
	c := gemma3Config()
	data := synthGemma3(t, c)
	m, err := checkpoints.LoadBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Weights.Config; got != c {
		t.Fatalf("loaded config %+v, written %+v", got, c)
	}
	ids := []int{1, 300, 17, 42, 259, 7, 99, 120, 3, 250, 64, 18, 201, 33, 5, 300}
	n, v := len(ids), c.Vocab
	ref := &gemma3Ref{g: m.GGUF, c: c}
	want := ref.logits(t, ids)

	e := model.NewEngine(m.Weights, openBackend(t, 2), model.KVType(kernels.F32))
	cache, err := e.NewCache(0, c.Layers, c.Context)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, n*c.Dim)
	if err := e.Embed(x, ids); err != nil {
		t.Fatal(err)
	}
	if err := e.Forward(cache, x, n); err != nil {
		t.Fatal(err)
	}
	prefill := make([]float32, n*v)
	if err := e.LogitsRows(prefill, x, n); err != nil {
		t.Fatal(err)
	}
	steps := make([]float32, n*v)
	sc, err := e.NewCache(0, c.Layers, c.Context)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float32, c.Dim)
	for p, id := range ids {
		if err := e.Embed(row, []int{id}); err != nil {
			t.Fatal(err)
		}
		if err := e.Forward(sc, row, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.Logits(steps[p*v:(p+1)*v], row); err != nil {
			t.Fatal(err)
		}
	}
	const tol = 1e-4
	var scale float64
	for _, w := range want {
		scale = max(scale, math.Abs(w))
	}
	for _, run := range []struct {
		name string
		got  []float32
	}{{"prefill", prefill}, {"decode", steps}} {
		var worst float64
		for i, w := range want {
			worst = max(worst, math.Abs(float64(run.got[i])-w))
		}
		t.Logf("%s: max |Δlogit| %.3g (logits up to %.3g)", run.name, worst, scale)
		if !(worst <= tol) {
			t.Errorf("%s: max |Δlogit| %.4g from the reference > %g", run.name, worst, tol)
		}
	}
	for _, alt := range []struct {
		name string
		ref  gemma3Ref
	}{
		{"no window", gemma3Ref{g: m.GGUF, c: c, noWindow: true}},
		{"one rotary base", gemma3Ref{g: m.GGUF, c: c, oneBase: true}},
		{"no rope scaling", gemma3Ref{g: m.GGUF, c: c, noScale: true}},
	} {
		other := alt.ref.logits(t, ids)
		var gap float64
		for i, w := range want {
			gap = max(gap, math.Abs(other[i]-w))
		}
		t.Logf("the reference with %s: %.3g away", alt.name, gap)
		if !(gap > 1e-2) {
			t.Errorf("the reference with %s is within %.3g of the model's: the test does not tell them apart", alt.name, gap)
		}
	}
}

// TestGemma3Errors: a Gemma 3 file without a block's q norm, or with
// values narrower than its keys, fails to load with one line naming the
// file and what is wrong.
func TestGemma3Errors(t *testing.T) {
	g, err := checkpoints.ParseGGUF(synthGemma3(t, gemma3Config()))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dropTensor, key string
		value                 checkpoints.Value
		want                  string
	}{
		{"no-q-norm", "blk.3.attn_q_norm.weight", "", checkpoints.Value{}, "tensor blk.3.attn_q_norm.weight missing (every gemma3 block has one)"},
		{"value-length", "", "gemma3.attention.value_length", checkpoints.U32(16), "gemma3.attention.value_length 16 differs from gemma3.attention.key_length 24"},
	} {
		var kvs []checkpoints.KV
		for _, kv := range g.KVs {
			if kv.Key == c.key {
				kv.Value = c.value
			}
			kvs = append(kvs, kv)
		}
		var specs []checkpoints.TensorSpec
		for _, ti := range g.Tensors {
			if ti.Name != c.dropTensor {
				specs = append(specs, checkpoints.TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data})
			}
		}
		p, err := loadWritten(t, c.name, kvs, specs)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line naming the file and %q", c.name, err, c.want)
		}
	}
}
