package checkpoints

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// llama2.c format constants.
const (
	ak42Magic        = 0x616b3432 // "ak42" as a little-endian uint32 (bytes "24ka")
	ak42HeaderBytes  = 256
	llama2cV0Header  = 7 * 4
	maxQ8GroupSize   = 1 << 20
	llama2cRopeTheta = 10000
	llama2cNormEps   = 1e-5
)

// Format names, as Model.Format reports them.
const (
	FormatGGUF       = "gguf"
	FormatLlama2CV0  = "llama2c-v0"
	FormatLlama2CV1  = "llama2c-v1"
	FormatLlama2CV2  = "llama2c-v2"
	formatLlama2CAny = "llama2c"
)

// ParseLlama2C reads a llama2.c checkpoint held in memory: the legacy
// headerless v0 format, or the "ak42" v1 (f32) and v2 (Q8_0) formats. It
// returns the weights and the format's name. F32 tensors and norms are
// windows into data, which must not change while the weights are in use.
func ParseLlama2C(data []byte, opts ...Option) (*model.Weights, string, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, "", err
	}
	return parseLlama2C(data, o)
}

func parseLlama2C(data []byte, o *options) (*model.Weights, string, error) {
	if len(data) >= 8 && binary.LittleEndian.Uint32(data) == ak42Magic {
		if len(data) < ak42HeaderBytes {
			return nil, "", fmt.Errorf("llama2.c ak42 file is %d bytes, shorter than its %d-byte header", len(data), ak42HeaderBytes)
		}
		switch v := int32(binary.LittleEndian.Uint32(data[4:])); v {
		case 1:
			w, err := parseAK42V1(data)
			return w, FormatLlama2CV1, err
		case 2:
			w, err := parseAK42V2(data, o)
			return w, FormatLlama2CV2, err
		default:
			return nil, "", fmt.Errorf("llama2.c ak42 version %d is not supported (want 1 or 2)", v)
		}
	}
	w, err := parseLlama2CV0(data)
	return w, FormatLlama2CV0, err
}

// llama2cConfig reads the 7 int32 config values at b and checks them.
// The vocabulary size is negative in v0 files with an unshared classifier.
func llama2cConfig(b []byte, allowNegVocab bool) (model.Config, error) {
	var h [7]int32
	for i := range h {
		h[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	c := model.Config{
		Arch: "llama", Dim: int(h[0]), Hidden: int(h[1]), Layers: int(h[2]), Heads: int(h[3]),
		KVHeads: int(h[4]), Vocab: int(h[5]), Context: int(h[6]),
		RopeTheta: llama2cRopeTheta, RopeStyle: kernels.RopeAdjacent, NormEps: llama2cNormEps,
		SharedClassifier: true,
	}
	if c.Vocab < 0 && allowNegVocab && h[5] != math.MinInt32 {
		c.Vocab = -c.Vocab
		c.SharedClassifier = false
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("llama2.c header (dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d seq_len=%d): %w",
			h[0], h[1], h[2], h[3], h[4], h[5], h[6], err)
	}
	return c, nil
}

// llama2cLayout is the sequence of float32 arrays of the f32 formats.
type f32Cursor struct {
	data []byte
	off  int
}

func (c *f32Cursor) take(n int) []byte {
	b := c.data[c.off : c.off+4*n : c.off+4*n]
	c.off += 4 * n
	return b
}

// f32Size is the number of float32 values in the weights of c (without
// freq_cis), and the number of values in one layer's matrices.
func f32Count(c *model.Config) int64 {
	return c.Params()
}

func parseLlama2CV0(data []byte) (*model.Weights, error) {
	if len(data) < llama2cV0Header {
		return nil, fmt.Errorf("file is %d bytes, too short for a llama2.c header", len(data))
	}
	c, err := llama2cConfig(data, true)
	if err != nil {
		return nil, err
	}
	freq := int64(c.Context) * int64(c.HeadDim())
	want := llama2cV0Header + 4*(f32Count(&c)+freq)
	if int64(len(data)) != want {
		return nil, fmt.Errorf("llama2.c v0 file is %d bytes, its header (dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d seq_len=%d shared=%v) needs %d",
			len(data), c.Dim, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Vocab, c.Context, c.SharedClassifier, want)
	}
	cur := &f32Cursor{data: data, off: llama2cV0Header}
	emb := cur.take(c.Vocab * c.Dim)
	w, err := f32Weights(&c, cur, emb, true)
	if err != nil {
		return nil, err
	}
	cur.take(int(freq))
	if !c.SharedClassifier {
		if w.Output, err = f32Matrix(cur.take(c.Vocab*c.Dim), c.Vocab, c.Dim); err != nil {
			return nil, fmt.Errorf("classifier: %w", err)
		}
	}
	return w, w.Validate()
}

func parseAK42V1(data []byte) (*model.Weights, error) {
	c, err := llama2cConfig(data[8:], false)
	if err != nil {
		return nil, err
	}
	c.SharedClassifier = data[36] != 0
	want := ak42HeaderBytes + 4*f32Count(&c)
	if int64(len(data)) != want {
		return nil, fmt.Errorf("llama2.c v1 file is %d bytes, its header (dim=%d hidden=%d layers=%d vocab=%d shared=%v) needs %d",
			len(data), c.Dim, c.Hidden, c.Layers, c.Vocab, c.SharedClassifier, want)
	}
	// v1 stores the norms first, then the embedding and the matrices.
	cur := &f32Cursor{data: data, off: ak42HeaderBytes}
	normBytes := 4 * (2*c.Layers*c.Dim + c.Dim)
	norms := &f32Cursor{data: data[:cur.off+normBytes], off: cur.off}
	cur.off += normBytes
	emb := cur.take(c.Vocab * c.Dim)
	w, err := f32Weights(&c, cur, emb, false)
	if err != nil {
		return nil, err
	}
	setNorms(w, &c, norms)
	if !c.SharedClassifier {
		if w.Output, err = f32Matrix(cur.take(c.Vocab*c.Dim), c.Vocab, c.Dim); err != nil {
			return nil, fmt.Errorf("classifier: %w", err)
		}
	}
	return w, w.Validate()
}

// setNorms fills the norms from rms_att ×L, rms_ffn ×L, rms_final.
func setNorms(w *model.Weights, c *model.Config, cur *f32Cursor) {
	for _, l := range w.Layers {
		l.AttnNorm = f32View(cur.take(c.Dim))
	}
	for _, l := range w.Layers {
		l.FFNNorm = f32View(cur.take(c.Dim))
	}
	w.FinalNorm = f32View(cur.take(c.Dim))
}

// f32Weights builds the weights of the f32 formats from cur, which is at
// the first per-layer tensor. With norms (v0) the norms are interleaved in
// the legacy order; without (v1) the caller sets them.
func f32Weights(c *model.Config, cur *f32Cursor, emb []byte, norms bool) (*model.Weights, error) {
	w := &model.Weights{Config: *c, Layers: make([]*model.Layer, c.Layers)}
	var err error
	if w.Embedding, err = f32Matrix(emb, c.Vocab, c.Dim); err != nil {
		return nil, fmt.Errorf("token embedding: %w", err)
	}
	w.Output = w.Embedding
	for i := range w.Layers {
		w.Layers[i] = &model.Layer{}
	}
	L, d, h, kv := c.Layers, c.Dim, c.Hidden, c.KVDim()
	if norms {
		for _, l := range w.Layers {
			l.AttnNorm = f32View(cur.take(d))
		}
	}
	mats := []struct {
		name       string
		rows, cols int
		set        func(*model.Layer, *kernels.Matrix)
	}{
		{"wq", d, d, func(l *model.Layer, m *kernels.Matrix) { l.Wq = m }},
		{"wk", kv, d, func(l *model.Layer, m *kernels.Matrix) { l.Wk = m }},
		{"wv", kv, d, func(l *model.Layer, m *kernels.Matrix) { l.Wv = m }},
		{"wo", d, d, func(l *model.Layer, m *kernels.Matrix) { l.Wo = m }},
		{"rms_ffn", 0, 0, nil},
		{"w1", h, d, func(l *model.Layer, m *kernels.Matrix) { l.W1 = m }},
		{"w2", d, h, func(l *model.Layer, m *kernels.Matrix) { l.W2 = m }},
		{"w3", h, d, func(l *model.Layer, m *kernels.Matrix) { l.W3 = m }},
	}
	for _, mt := range mats {
		if mt.set == nil {
			if norms {
				for _, l := range w.Layers {
					l.FFNNorm = f32View(cur.take(d))
				}
			}
			continue
		}
		for i := 0; i < L; i++ {
			m, err := f32Matrix(cur.take(mt.rows*mt.cols), mt.rows, mt.cols)
			if err != nil {
				return nil, fmt.Errorf("layer %d %s: %w", i, mt.name, err)
			}
			mt.set(w.Layers[i], m)
		}
	}
	if norms {
		w.FinalNorm = f32View(cur.take(d))
	}
	return w, nil
}

func parseAK42V2(data []byte, o *options) (*model.Weights, error) {
	c, err := llama2cConfig(data[8:], false)
	if err != nil {
		return nil, err
	}
	c.SharedClassifier = data[36] != 0
	gs := int64(int32(binary.LittleEndian.Uint32(data[37:])))
	if gs <= 0 || gs > maxQ8GroupSize {
		return nil, fmt.Errorf("llama2.c v2 group size %d is outside [1, %d]", gs, maxQ8GroupSize)
	}
	d, h, kv, L, V := int64(c.Dim), int64(c.Hidden), int64(c.KVDim()), int64(c.Layers), int64(c.Vocab)
	type qt struct {
		name       string
		rows, cols int64
		count      int64
	}
	tensors := []qt{
		{"token embedding", V, d, 1},
		{"wq", d, d, L}, {"wk", kv, d, L}, {"wv", kv, d, L}, {"wo", d, d, L},
		{"w1", h, d, L}, {"w2", d, h, L}, {"w3", h, d, L},
	}
	if !c.SharedClassifier {
		tensors = append(tensors, qt{"classifier", V, d, 1})
	}
	want := int64(ak42HeaderBytes) + 4*(2*L*d+d)
	for _, t := range tensors {
		n := t.rows * t.cols
		if n%gs != 0 {
			return nil, fmt.Errorf("llama2.c v2: %s has %d values, not a multiple of the group size %d", t.name, n, gs)
		}
		want += t.count * (n + 4*(n/gs))
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("llama2.c v2 file is %d bytes, its header (dim=%d hidden=%d layers=%d heads=%d kv_heads=%d vocab=%d shared=%v group=%d) needs %d",
			len(data), c.Dim, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Vocab, c.SharedClassifier, gs, want)
	}
	w := &model.Weights{Config: c, Layers: make([]*model.Layer, c.Layers)}
	for i := range w.Layers {
		w.Layers[i] = &model.Layer{}
	}
	cur := &f32Cursor{data: data, off: ak42HeaderBytes}
	setNorms(w, &c, cur)
	off := cur.off
	next := func(t qt) (*kernels.Matrix, error) {
		n := int(t.rows * t.cols)
		q := data[off : off+n]
		s := data[off+n : off+n+4*(n/int(gs))]
		off += n + 4*(n/int(gs))
		return q8Matrix(q, s, int(t.rows), int(t.cols), int(gs), o.dequantizeQ8)
	}
	for _, t := range tensors {
		for i := int64(0); i < t.count; i++ {
			m, err := next(t)
			if err != nil {
				return nil, fmt.Errorf("llama2.c v2: %s: %w", t.name, err)
			}
			switch t.name {
			case "token embedding":
				w.Embedding = m
			case "classifier":
				w.Output = m
			case "wq":
				w.Layers[i].Wq = m
			case "wk":
				w.Layers[i].Wk = m
			case "wv":
				w.Layers[i].Wv = m
			case "wo":
				w.Layers[i].Wo = m
			case "w1":
				w.Layers[i].W1 = m
			case "w2":
				w.Layers[i].W2 = m
			case "w3":
				w.Layers[i].W3 = m
			}
		}
	}
	if c.SharedClassifier {
		w.Output = w.Embedding
	}
	return w, w.Validate()
}

// q8Matrix turns int8 values q with one float32 scale per group of gs
// consecutive values (groups may run across rows) into a matrix: Q8_0
// blocks (the scale rounded to f16) when groups are 32 and line up with
// rows, f32 otherwise or when dequantize is set.
func q8Matrix(q, scales []byte, rows, cols, gs int, dequantize bool) (*kernels.Matrix, error) {
	ngroups := len(scales) / 4
	if !dequantize && gs == kernels.QK && cols%kernels.QK == 0 {
		out := make([]byte, 0, ngroups*kernels.Q8_0BlockBytes)
		ok := true
		for g := 0; g < ngroups; g++ {
			s := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*g:]))
			h := kernels.F32ToF16(s)
			if f := kernels.F16ToF32(h); math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
				ok = false // a scale beyond f16's range: keep the tensor in f32
				break
			}
			out = binary.LittleEndian.AppendUint16(out, h)
			out = append(out, q[g*gs:(g+1)*gs]...)
		}
		if ok {
			return kernels.NewMatrix(kernels.Q8_0, rows, cols, out)
		}
	}
	f := make([]float32, rows*cols)
	for g := 0; g < ngroups; g++ {
		s := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*g:]))
		for j, v := range q[g*gs : (g+1)*gs] {
			f[g*gs+j] = float32(int8(v)) * s
		}
	}
	return kernels.NewMatrix(kernels.F32, rows, cols, kernels.F32Bytes(f))
}

// f32Matrix wraps float32 bytes as a matrix, copying them only if they are
// not 4-byte aligned in memory.
func f32Matrix(b []byte, rows, cols int) (*kernels.Matrix, error) {
	return kernels.NewMatrix(kernels.F32, rows, cols, alignedBytes(b, 4))
}

// f32View views float32 bytes as floats, copying only when misaligned.
func f32View(b []byte) []float32 {
	return kernels.BytesF32(alignedBytes(b, 4))
}

// alignedBytes returns b, or a copy of it whose address is a multiple of
// align (at most 8) when b's is not.
func alignedBytes(b []byte, align uintptr) []byte {
	if len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%align == 0 {
		return b
	}
	u := make([]uint64, (len(b)+7)/8)
	c := unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), len(b))
	copy(c, b)
	return c
}
