package checkpoints

import (
	"os"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
)

// seedPrefixes adds prefixes of a real file as fuzz seeds, when present.
func seedPrefixes(f *testing.F, name string, sizes ...int) {
	seedFilePrefixes(f, testmodels.Dir()+"/"+name, sizes...)
}

// seedFilePrefixes adds prefixes of the file at p as fuzz seeds, when it
// is there.
func seedFilePrefixes(f *testing.F, p string, sizes ...int) {
	data, err := os.ReadFile(p)
	if err != nil {
		return
	}
	for _, n := range sizes {
		f.Add(data[:min(n, len(data))])
	}
}

// touchValue decodes a value completely, as a user of the metadata would.
func touchValue(v Value, depth int) {
	_ = v.String()
	a, ok := v.Array()
	if !ok || depth > ggufMaxDepth {
		return
	}
	a.Strings()
	a.Float32s()
	a.Int32s()
	vals, _ := a.Values()
	for i, e := range vals {
		if i > 64 {
			break
		}
		touchValue(e, depth+1)
	}
}

func FuzzGGUF(f *testing.F) {
	f.Add(smallGGUF(f, nanoConfig, kernels.F32))
	f.Add(smallGGUF(f, nanoConfig, kernels.F16))
	f.Add(microGGUF(f, kernels.Q4_0)[:2048])
	f.Add(newRaw(1, 1).str("general.alignment").u32(uint32(TypeUint32)).u32(64).tensor("t", GGMLF32, 0, 4).pad(80).b)
	seedFilePrefixes(f, testmodels.Builtin(f), 64, 1024, 38368, 38368+4096)
	seedPrefixes(f, "stories260K.gguf", 64, 1024, 14176, 14176+4096)
	seedPrefixes(f, "llama-2-tiny-random.gguf", 64, 4096)
	seedPrefixes(f, "tokenizers/qwen3-tokenizer-random.gguf", 1024)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGGUF(data)
		if err != nil {
			if g != nil {
				t.Fatal("error with a result")
			}
			return
		}
		for _, kv := range g.KVs {
			touchValue(kv.Value, 0)
			g.String(kv.Key)
			g.Uint(kv.Key)
			g.Float(kv.Key)
			g.Bool(kv.Key)
		}
		for i := range g.Tensors {
			ti := &g.Tensors[i]
			if n, _ := tensorBytes(ti); n != uint64(len(ti.Data)) {
				t.Fatalf("tensor %s: %d bytes for %d", ti.Name, len(ti.Data), n)
			}
		}
		if m, err := LoadBytes(data); err == nil {
			if err := m.Weights.Validate(); err != nil {
				t.Fatalf("loaded weights fail validation: %v", err)
			}
			m.Close()
		}
	})
}

func FuzzLlama2C(f *testing.F) {
	for _, shared := range []bool{true, false} {
		c := nanoConfig
		c.SharedClassifier = shared
		for v := 0; v <= 2; v++ {
			f.Add(makeLlama2C(f, c, v, 1))
		}
	}
	d := makeLlama2C(f, nanoConfig, 2, 1)
	f.Add(d[:300])
	seedPrefixes(f, "stories260K.bin", 28, 1024)
	seedPrefixes(f, "stories260K_q80.bin", 256, 1024)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range [][]Option{nil, {DequantizeQ8()}} {
			w, _, err := ParseLlama2C(data, opts...)
			if err != nil {
				continue
			}
			if err := w.Validate(); err != nil {
				t.Fatalf("parsed weights fail validation: %v", err)
			}
		}
		if m, err := LoadBytes(data); err == nil {
			m.Close()
		}
	})
}
