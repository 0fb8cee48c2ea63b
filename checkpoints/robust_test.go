package checkpoints

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
)

func TestLlama2CVersions(t *testing.T) {
	for _, shared := range []bool{true, false} {
		c := microConfig
		c.SharedClassifier = shared
		v0, err := LoadBytes(makeLlama2C(t, c, 0, 5))
		if err != nil {
			t.Fatal(err)
		}
		v1, err := LoadBytes(makeLlama2C(t, c, 1, 5))
		if err != nil {
			t.Fatal(err)
		}
		v2, err := LoadBytes(makeLlama2C(t, c, 2, 5))
		if err != nil {
			t.Fatal(err)
		}
		if v0.Format != FormatLlama2CV0 || v1.Format != FormatLlama2CV1 || v2.Format != FormatLlama2CV2 {
			t.Fatalf("formats %s %s %s", v0.Format, v1.Format, v2.Format)
		}
		if v0.Weights.Config != c || v1.Weights.Config != c || v2.Weights.Config != c {
			t.Fatalf("shared=%v: configs\n%+v\n%+v\n%+v", shared, v0.Weights.Config, v1.Weights.Config, v2.Weights.Config)
		}
		if (v0.Weights.Output == v0.Weights.Embedding) != shared {
			t.Errorf("shared=%v: v0 output sharing wrong", shared)
		}
		m0, m1, m2 := matrices(v0.Weights), matrices(v1.Weights), matrices(v2.Weights)
		for name, a := range m0 {
			if !bytes.Equal(a.Data, m1[name].Data) {
				t.Errorf("shared=%v: v1 %s differs from v0", shared, name)
			}
			if m2[name].Type != kernels.Q8_0 && m2[name].Cols%32 == 0 {
				t.Errorf("v2 %s is %s", name, m2[name].Type)
			}
			fa, fb := decodeAll(a), decodeAll(m2[name])
			for i := range fa {
				if math.Abs(float64(fa[i]-fb[i])) > 0.1/127*0.6 {
					t.Fatalf("v2 %s[%d] = %g, v0 %g", name, i, fb[i], fa[i])
				}
			}
		}
		n0, n1, n2 := norms(v0.Weights), norms(v1.Weights), norms(v2.Weights)
		for name, a := range n0 {
			if !equalBits(a, n1[name]) || !equalBits(a, n2[name]) {
				t.Errorf("norm %s differs", name)
			}
		}
	}
}

func TestGGUFWriteReadAllTypes(t *testing.T) {
	nested, err := ArrayOf(TypeArray, []Value{Strs([]string{"x", ""}), I32s([]int32{-1, 2})})
	if err != nil {
		t.Fatal(err)
	}
	u16s, _ := ArrayOf(TypeUint16, []Value{U16(1), U16(65535)})
	bools, _ := ArrayOf(TypeBool, []Value{Bool(true), Bool(false)})
	f64s, _ := ArrayOf(TypeFloat64, []Value{F64(math.Pi), F64(-0.5)})
	i8s, _ := ArrayOf(TypeInt8, []Value{I8(-128), I8(127)})
	empty, _ := ArrayOf(TypeUint64, nil)
	kvs := []KV{
		{"general.alignment", U32(64)},
		{"u8", U8(200)}, {"i8", I8(-100)}, {"u16", U16(60000)}, {"i16", I16(-30000)},
		{"u32", U32(4e9)}, {"i32", I32(-2e9)}, {"f32", F32(1.5)}, {"bool", Bool(true)},
		{"string", Str("héllo\x00")}, {"empty", Str("")}, {"u64", U64(1 << 63)}, {"i64", I64(-1 << 62)},
		{"f64", F64(1e-300)}, {"strs", Strs([]string{"a", "", "ccc"})}, {"f32s", F32s([]float32{1, -2})},
		{"i32s", I32s([]int32{7, -8})}, {"nested", nested}, {"u16s", u16s}, {"bools", bools},
		{"f64s", f64s}, {"i8s", i8s}, {"emptyarr", empty},
	}
	q := kernels.Encode(nil, kernels.Q8_0, make([]float32, 64))
	var buf bytes.Buffer
	err = WriteGGUF(&buf, kvs, []TensorSpec{
		{Name: "a", Type: GGMLF32, Dims: []uint64{3}, Data: kernels.Encode(nil, kernels.F32, []float32{1, 2, 3})},
		{Name: "b", Type: GGMLQ8_0, Dims: []uint64{32, 2}, Data: q},
		{Name: "c", Type: GGMLIQ2_XXS, Dims: []uint64{256}, Data: make([]byte, 66)},
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseGGUF(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != 3 || g.Alignment != 64 || g.DataOffset%64 != 0 || len(g.KVs) != len(kvs) {
		t.Fatalf("version %d alignment %d data %d kvs %d", g.Version, g.Alignment, g.DataOffset, len(g.KVs))
	}
	for i, kv := range kvs {
		got := g.KVs[i]
		if got.Key != kv.Key || got.Value.Type() != kv.Value.Type() || got.Value.String() != kv.Value.String() {
			t.Errorf("kv %d: %s=%s, want %s=%s", i, got.Key, got.Value, kv.Key, kv.Value)
		}
		var a, b []byte
		a, b = appendValue(nil, got.Value), appendValue(nil, kv.Value)
		if !bytes.Equal(a, b) {
			t.Errorf("kv %s: encodings differ", kv.Key)
		}
	}
	if s, _ := g.String("string"); s != "héllo\x00" {
		t.Errorf("string %q", s)
	}
	if u, _ := g.Uint("u64"); u != 1<<63 {
		t.Errorf("u64 %d", u)
	}
	if _, err := g.Uint("i32"); err == nil {
		t.Error("negative Uint: no error")
	}
	if f, _ := g.Float("f64"); f != 1e-300 {
		t.Errorf("f64 %g", f)
	}
	if s, _ := g.Strings("strs"); len(s) != 3 || s[2] != "ccc" || s[1] != "" {
		t.Errorf("strs %q", s)
	}
	if x, _ := g.Int32s("i8s"); len(x) != 2 || x[0] != -128 {
		t.Errorf("i8s %v", x)
	}
	v, _ := g.Get("nested")
	arr, _ := v.Array()
	vals, err := arr.Values()
	if err != nil || len(vals) != 2 {
		t.Fatal(err)
	}
	inner, _ := vals[0].Array()
	if s, _ := inner.Strings(); len(s) != 2 || s[0] != "x" {
		t.Errorf("nested %q", s)
	}
	b, _ := g.Tensor("b")
	c, _ := g.Tensor("c")
	if !bytes.Equal(b.Data, q) || b.Offset%64 != 0 || c.Supported || c.Type.String() != "IQ2_XXS" {
		t.Errorf("tensors %+v %+v", b, c)
	}
	if err := WriteGGUF(&bytes.Buffer{}, nil, []TensorSpec{{Name: "x", Type: GGMLF32, Dims: []uint64{2}, Data: []byte{1}}}); err == nil {
		t.Error("short tensor data: no error")
	}
	if err := WriteGGUF(&bytes.Buffer{}, []KV{{"a", U8(1)}, {"a", U8(2)}}, nil); err == nil {
		t.Error("duplicate key: no error")
	}
}

// ggufRaw builds GGUF bytes by hand for hostile-input tests.
type ggufRaw struct{ b []byte }

func newRaw(nTensors, nKV uint64) *ggufRaw {
	r := &ggufRaw{}
	r.b = binary.LittleEndian.AppendUint32(r.b, ggufMagic)
	r.b = binary.LittleEndian.AppendUint32(r.b, 3)
	r.u64(nTensors)
	r.u64(nKV)
	return r
}
func (r *ggufRaw) u32(x uint32) *ggufRaw { r.b = binary.LittleEndian.AppendUint32(r.b, x); return r }
func (r *ggufRaw) u64(x uint64) *ggufRaw { r.b = binary.LittleEndian.AppendUint64(r.b, x); return r }
func (r *ggufRaw) str(s string) *ggufRaw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *ggufRaw) tensor(name string, typ GGMLType, off uint64, dims ...uint64) *ggufRaw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(off)
}
func (r *ggufRaw) pad(n int) *ggufRaw { r.b = append(r.b, make([]byte, n)...); return r }

func TestGGUFHostile(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"magic", []byte("GGML\x03\x00\x00\x00"), "bad magic"},
		{"version", newRaw(0, 0).b[:4], "unexpected end"},
		{"v1", append([]byte("GGUF\x01\x00\x00\x00"), make([]byte, 16)...), "version 1"},
		{"bigendian", append([]byte("GGUF\x00\x00\x00\x03"), make([]byte, 16)...), "big-endian"},
		{"v9", append([]byte("GGUF\x09\x00\x00\x00"), make([]byte, 16)...), "unknown version"},
		{"kv count", newRaw(0, 1<<62).b, "metadata entries"},
		{"tensor count", newRaw(1<<40, 0).pad(100).b, "tensors"},
		{"key length", newRaw(0, 1).u64(1 << 63).pad(8).b, "string length 9223372036854775808"},
		{"string length", newRaw(0, 1).str("k").u32(uint32(TypeString)).u64(1<<63 + 5).pad(8).b, "string length"},
		{"array length", newRaw(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint8)).u64(1 << 40).pad(8).b, "array of 1099511627776 u8"},
		{"array of strings", newRaw(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(1 << 40).pad(8).b, "array of 1099511627776 strings"},
		{"array u64 overflow", newRaw(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint64)).u64(1 << 61).pad(8).b, "array of"},
		{"array type", newRaw(0, 1).str("k").u32(uint32(TypeArray)).u32(99).u64(1).pad(8).b, "unknown type 99"},
		{"value type", newRaw(0, 1).str("k").u32(13).pad(8).b, "unknown value type 13"},
		{"deep arrays", func() []byte {
			r := newRaw(0, 1).str("k").u32(uint32(TypeArray))
			for i := 0; i < 10; i++ {
				r.u32(uint32(TypeArray)).u64(1)
			}
			return r.pad(64).b
		}(), "nested deeper"},
		{"duplicate key", newRaw(0, 2).str("k").u32(uint32(TypeUint8)).pad(1).str("k").u32(uint32(TypeUint8)).pad(1).b, "appears twice"},
		{"alignment", newRaw(0, 1).str("general.alignment").u32(uint32(TypeUint32)).u32(3).b, "power of two"},
		{"n_dims", newRaw(1, 0).str("t").u32(1000).pad(64).b, "1000 dimensions"},
		{"ggml type", newRaw(1, 0).tensor("t", 31, 0, 4).pad(64).b, "unknown ggml type 31"},
		{"element overflow", newRaw(1, 0).tensor("t", GGMLF32, 0, 1<<32, 1<<32, 1<<32).pad(64).b, "overflows"},
		{"block", newRaw(1, 0).tensor("t", GGMLQ8_0, 0, 33).pad(64).b, "multiple of 32"},
		{"past eof", newRaw(1, 0).tensor("blk.3.attn_q.weight", GGMLF32, 0, 8, 8).pad(64).b, "gguf: tensor blk.3.attn_q.weight: data [96,352) beyond end of file (147 bytes)"},
		{"huge offset", newRaw(1, 0).tensor("t", GGMLF32, 1<<63, 8).pad(64).b, "beyond end of file"},
		{"misaligned", newRaw(1, 0).tensor("t", GGMLF32, 4, 1).pad(64).b, "not a multiple of the alignment"},
		{"overlap", newRaw(2, 0).tensor("a", GGMLF32, 0, 16).tensor("b", GGMLF32, 32, 16).pad(256).b, "overlaps"},
		{"dup tensor", newRaw(2, 0).tensor("a", GGMLF32, 0, 8).tensor("a", GGMLF32, 32, 8).pad(256).b, "appears twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGGUF(tc.data)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestGGUFAllocGuard checks that a header claiming huge counts fails
// without allocating in proportion to the claim.
func TestGGUFAllocGuard(t *testing.T) {
	inputs := [][]byte{
		newRaw(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(1 << 40).pad(4096).b,
		newRaw(0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint32)).u64(1 << 40).pad(4096).b,
		newRaw(1<<40, 1<<40).pad(4096).b,
		newRaw(0, 200).pad(4096).b,
		newRaw(170, 0).pad(4096).b,
	}
	for i, in := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := ParseGGUF(in)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("input %d: no error", i)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("input %d: allocated %d bytes", i, d)
		}
	}
}

func TestLoadUnsupported(t *testing.T) {
	data := microGGUF(t, kernels.F32)
	g, err := ParseGGUF(data)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the file with one tensor in IQ2_XXS (a type the kernels do not
	// read) and another architecture.
	rewrite := func(arch string, qType GGMLType) []byte {
		var kvs []KV
		for _, kv := range g.KVs {
			if kv.Key == "general.architecture" {
				kv.Value = Str(arch)
			}
			kvs = append(kvs, kv)
		}
		var ts []TensorSpec
		for _, ti := range g.Tensors {
			s := TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data}
			if ti.Name == "blk.0.attn_k.weight" {
				s.Type, s.Dims, s.Data = qType, []uint64{256}, make([]byte, 66)
			}
			ts = append(ts, s)
		}
		var buf bytes.Buffer
		if err := WriteGGUF(&buf, kvs, ts); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	path := filepath.Join(t.TempDir(), "iq2.gguf")
	if err := os.WriteFile(path, rewrite("llama", GGMLIQ2_XXS), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "blk.0.attn_k.weight") || !strings.Contains(err.Error(), "IQ2_XXS") {
		t.Fatalf("IQ2_XXS: want one line naming the file, the tensor and the type, got %v", err)
	}
	_, err = LoadBytes(rewrite("mamba", GGMLIQ2_XXS))
	if err == nil || !strings.Contains(err.Error(), `architecture "mamba" is not supported`) {
		t.Fatalf("arch: %v", err)
	}
	for _, dt := range allDTypes {
		if _, err := LoadBytes(microGGUF(t, dt)); err != nil {
			t.Errorf("micro %s: %v", dt, err)
		}
	}
}

// realFiles are model files made by other tools (llama.cpp's and
// llama2.c's converters), in the shared test models.
var realFiles = []string{
	"stories260K.bin", "stories260K.gguf", "stories260K_q80.bin", "llama-2-tiny-random.gguf",
	"tokenizers/qwen3-tokenizer-random.gguf",
}

// robustInput is a file that the damage tests cut and flip.
type robustInput struct {
	name string
	data func(t *testing.T) []byte
}

// robustInputs are the built-in model, llama2.c files of each version
// written here, and the real files.
func robustInputs() []robustInput {
	in := []robustInput{{"builtin", func(t *testing.T) []byte { return readFile(t, testmodels.Builtin(t)) }}}
	for v := 0; v <= 2; v++ {
		in = append(in, robustInput{"llama2c-v" + string(rune('0'+v)), func(t *testing.T) []byte { return makeLlama2C(t, microConfig, v, 7) }})
	}
	for _, name := range realFiles {
		in = append(in, robustInput{name, func(t *testing.T) []byte { return readFile(t, testmodels.Path(t, name)) }})
	}
	return in
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// cutPoints are offsets to truncate a file of n bytes at: every byte of
// the first 2 KB, and about 200 more spread over the rest.
func cutPoints(n int) []int {
	var out []int
	for i := 0; i < min(n, 2048); i++ {
		out = append(out, i)
	}
	rng := splitmix64(uint64(n))
	for i := 0; i < 200 && n > 2048; i++ {
		out = append(out, 2048+int(rng.next()%uint64(n-2048)))
	}
	return append(out, n-1, n-4, n/2)
}

func TestTruncatedFiles(t *testing.T) {
	for _, in := range robustInputs() {
		t.Run(in.name, func(t *testing.T) {
			data := in.data(t)
			gguf := bytes.HasPrefix(data, []byte("GGUF"))
			for _, n := range cutPoints(len(data)) {
				if n < 0 || n >= len(data) {
					continue
				}
				cut := bytes.Clone(data[:n])
				if m, err := LoadBytes(cut); err == nil {
					m.Close()
					t.Errorf("cut at %d: no error", n)
				}
				if gguf {
					if _, err := ParseGGUF(cut); err == nil && n < len(data)-4 {
						t.Errorf("cut at %d: parsed", n)
					}
				}
			}
		})
	}
}

func TestFlippedBytes(t *testing.T) {
	for _, in := range robustInputs() {
		t.Run(in.name, func(t *testing.T) {
			data := in.data(t)
			rng := splitmix64(1)
			tries := 300
			if len(data) > 10<<20 {
				tries = 40 // each parse that succeeds builds a 150k-token tokenizer
			}
			hdr := min(len(data), 16<<10)
			for i := 0; i < tries; i++ {
				d := bytes.Clone(data)
				for k := 0; k < 1+i%3; k++ {
					at := int(rng.next() % uint64(hdr))
					if i%4 == 3 {
						at = int(rng.next() % uint64(len(d)))
					}
					d[at] ^= byte(rng.next()) | 1
				}
				if m, err := LoadBytes(d); err == nil {
					m.Close() // flipping weights or free text is fine
				}
			}
		})
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.gguf"))
	if err == nil || !strings.Contains(err.Error(), "nope.gguf") {
		t.Fatalf("error %v", err)
	}
	p := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(p, nil, 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty: %v", err)
	}
}

// rewriteGGUF re-encodes a parsed GGUF, letting edit change each tensor.
func rewriteGGUF(t *testing.T, g *GGUF, edit func(*TensorSpec)) []byte {
	t.Helper()
	var ts []TensorSpec
	for _, ti := range g.Tensors {
		s := TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data}
		edit(&s)
		ts = append(ts, s)
	}
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, g.KVs, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGGUFNormTypesAndVersion2(t *testing.T) {
	ref := loadBuiltin(t)
	for _, dt := range []kernels.DType{kernels.F16, kernels.BF16} {
		gt, _ := GGMLTypeOf(dt)
		data := rewriteGGUF(t, ref.GGUF, func(s *TensorSpec) {
			if strings.HasSuffix(s.Name, "norm.weight") {
				s.Type, s.Data = gt, kernels.Encode(nil, dt, kernels.BytesF32(s.Data))
			}
		})
		m, err := LoadBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		got, want := norms(m.Weights), norms(ref.Weights)
		for name, v := range want {
			for i := range v {
				if d := math.Abs(float64(got[name][i] - v[i])); d > math.Abs(float64(v[i]))/128 {
					t.Fatalf("%s norm %s[%d] = %g, want %g", dt, name, i, got[name][i], v[i])
				}
			}
		}
	}
	v2 := bytes.Clone(ref.GGUF.Bytes())
	v2[4] = 2
	m, err := LoadBytes(v2)
	if err != nil {
		t.Fatal(err)
	}
	if m.GGUF.Version != 2 || m.Weights.Config != ref.Weights.Config {
		t.Fatal("v2")
	}
}
