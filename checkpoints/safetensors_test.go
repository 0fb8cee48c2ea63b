package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// stBytes returns n bytes that differ from tensor to tensor (by seed).
func stBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// stWrite writes tensors and metadata as one safetensors file.
func stWrite(tb testing.TB, tensors []SafeTensor, metadata map[string]string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := WriteSafeTensors(&buf, tensors, metadata); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// stRaw builds a file from a header written by hand and a data section.
func stRaw(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// stSample is a set of tensors of several dtypes and shapes, including a
// scalar and zero-size tensors.
func stSample() []SafeTensor {
	return []SafeTensor{
		{Name: "model.embed.weight", DType: "F32", Shape: []int{2, 3}, Data: stBytes(24, 1)},
		{Name: "layers.0.norm", DType: "F16", Shape: []int{4}, Data: stBytes(8, 2)},
		{Name: "layers.0.attn", DType: "BF16", Shape: []int{1, 2, 2}, Data: stBytes(8, 3)},
		{Name: "scalar", DType: "I64", Shape: []int{}, Data: stBytes(8, 4)},
		{Name: "empty", DType: "U8", Shape: []int{0}, Data: []byte{}},
		{Name: "mask", DType: "BOOL", Shape: []int{3}, Data: []byte{1, 0, 1}},
		{Name: "empty3d", DType: "F64", Shape: []int{2, 0, 5}, Data: nil},
		{Name: "q", DType: "I8", Shape: []int{5}, Data: stBytes(5, 5)},
		{Name: "fp8", DType: "F8_E4M3", Shape: []int{2, 1}, Data: stBytes(2, 6)},
	}
}

// stCheckSame fails unless s holds exactly the tensors want.
func stCheckSame(t *testing.T, s *SafeTensors, want []SafeTensor) {
	t.Helper()
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
		got, ok := s.Tensor(w.Name)
		if !ok {
			t.Errorf("tensor %q missing", w.Name)
			continue
		}
		if got.Name != w.Name || got.DType != w.DType || !slices.Equal(got.Shape, w.Shape) || !bytes.Equal(got.Data, w.Data) {
			t.Errorf("tensor %q: got %s %v % x, want %s %v % x", w.Name, got.DType, got.Shape, got.Data, w.DType, w.Shape, w.Data)
		}
		if cap(got.Data) != len(got.Data) {
			t.Errorf("tensor %q: window has capacity %d beyond its %d bytes", w.Name, cap(got.Data), len(got.Data))
		}
	}
	slices.Sort(names)
	if got := s.Names(); !slices.Equal(got, names) {
		t.Errorf("Names() = %q, want %q", got, names)
	}
}

func TestSafeTensorsRoundTrip(t *testing.T) {
	tensors := stSample()
	md := map[string]string{"format": "pt", "note": `<a & "b"> ü`}
	file := stWrite(t, tensors, md)
	n := binary.LittleEndian.Uint64(file)
	if (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not a multiple of 8", 8+n)
	}
	if !json.Valid(file[8 : 8+n]) {
		t.Errorf("header is not valid JSON: %s", file[8:8+n])
	}
	s, err := ParseSafeTensors(file, "rt.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	stCheckSame(t, s, tensors)
	if got := s.Metadata(); !maps.Equal(got, md) {
		t.Errorf("Metadata() = %v, want %v", got, md)
	}
	s.Metadata()["format"] = "changed"
	if s.Metadata()["format"] != "pt" {
		t.Error("Metadata returns the set's own map")
	}
	if sc, _ := s.Tensor("scalar"); sc.Elements() != 1 {
		t.Errorf("scalar has %d elements, want 1", sc.Elements())
	}
	if e, _ := s.Tensor("empty3d"); e.Elements() != 0 {
		t.Errorf("empty3d has %d elements, want 0", e.Elements())
	}
	// The data follow the header in the order given.
	var data []byte
	for _, tn := range tensors {
		data = append(data, tn.Data...)
	}
	if !bytes.Equal(file[8+n:], data) {
		t.Error("data section is not the tensors' bytes in order")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := s.Tensor("scalar"); ok {
		t.Error("Tensor finds a tensor after Close")
	}

	// No metadata, no tensors.
	s, err = ParseSafeTensors(stWrite(t, nil, nil), "empty")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Names()) != 0 || s.Metadata() != nil {
		t.Errorf("empty file: names %q, metadata %v", s.Names(), s.Metadata())
	}
}

// TestSafeTensorsForeignLayout reads a header laid out as other writers do:
// metadata last, keys in another order, zero-size tensors at their
// neighbours' offsets, white space and padding, and a dtype this package
// does not know (whose size is then not checked).
func TestSafeTensorsForeignLayout(t *testing.T) {
	hdr := `{ "b": {"shape": [2], "data_offsets": [8, 12], "dtype": "F16"},
		"a": {"data_offsets": [0, 8], "dtype": "F32", "shape": [1, 2]},
		"z0": {"dtype": "F32", "shape": [0, 4], "data_offsets": [8, 8]},
		"z1": {"dtype": "I32", "shape": [3, 0], "data_offsets": [12, 12]},
		"f4": {"dtype": "F4", "shape": [4], "data_offsets": [12, 14]},
		"__metadata__": {"format": "pt"} }      `
	s, err := ParseSafeTensors(stRaw(hdr, stBytes(14, 9)), "foreign")
	if err != nil {
		t.Fatal(err)
	}
	data := stBytes(14, 9)
	stCheckSame(t, s, []SafeTensor{
		{Name: "a", DType: "F32", Shape: []int{1, 2}, Data: data[0:8]},
		{Name: "b", DType: "F16", Shape: []int{2}, Data: data[8:12]},
		{Name: "z0", DType: "F32", Shape: []int{0, 4}, Data: []byte{}},
		{Name: "z1", DType: "I32", Shape: []int{3, 0}, Data: []byte{}},
		{Name: "f4", DType: "F4", Shape: []int{4}, Data: data[12:14]},
	})
	if got := s.Metadata(); !maps.Equal(got, map[string]string{"format": "pt"}) {
		t.Errorf("Metadata() = %v", got)
	}
	if _, ok := SafeTensorDTypeSize("F4"); ok {
		t.Error("F4 has a byte size")
	}
	for dt, want := range map[string]int{"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1} {
		if got, ok := SafeTensorDTypeSize(dt); !ok || got != want {
			t.Errorf("SafeTensorDTypeSize(%s) = %d, %t; want %d", dt, got, ok, want)
		}
	}
}

// writeFile writes a file of the test's directory.
func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// stIndex returns an index file mapping tensors to shards.
func stIndex(t *testing.T, weightMap map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1234}, "weight_map": weightMap})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stShards writes a two-shard model into a new directory and returns it.
func stShards(t *testing.T) (dir string, shard1, shard2 []SafeTensor) {
	dir = t.TempDir()
	all := stSample()
	shard1, shard2 = all[:4], all[4:]
	writeFile(t, dir, "model-00001-of-00002.safetensors", stWrite(t, shard1, map[string]string{"format": "pt", "shard": "1"}))
	writeFile(t, dir, "model-00002-of-00002.safetensors", stWrite(t, shard2, map[string]string{"format": "pt", "shard": "2"}))
	wm := map[string]string{}
	for _, tn := range shard1 {
		wm[tn.Name] = "model-00001-of-00002.safetensors"
	}
	for _, tn := range shard2 {
		wm[tn.Name] = "model-00002-of-00002.safetensors"
	}
	writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, wm))
	return dir, shard1, shard2
}

func TestOpenSafeTensorsSharded(t *testing.T) {
	dir, shard1, shard2 := stShards(t)
	s, err := OpenSafeTensors(dir)
	if err != nil {
		t.Fatal(err)
	}
	stCheckSame(t, s, append(slices.Clone(shard1), shard2...))
	if got := s.Metadata(); got["shard"] != "1" {
		t.Errorf("Metadata() = %v, want the first shard's", got)
	}
	if len(s.unmaps) != 2 {
		t.Errorf("%d files mapped, want 2 (each shard once)", len(s.unmaps))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenSafeTensorsSingle(t *testing.T) {
	dir := t.TempDir()
	tensors := stSample()
	writeFile(t, dir, SafeTensorsFile, stWrite(t, tensors, map[string]string{"format": "pt"}))
	s, err := OpenSafeTensors(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stCheckSame(t, s, tensors)
	if s.Metadata()["format"] != "pt" {
		t.Errorf("Metadata() = %v", s.Metadata())
	}

	_, err = OpenSafeTensors(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory: %v, want fs.ErrNotExist", err)
	}
}

// stBadFile is a file ParseSafeTensors must refuse, with the words its
// error must contain.
type stBadFile struct {
	name string
	data []byte
	want []string
}

// stBadFiles lists malformed files (also used as fuzz seeds).
func stBadFiles() []stBadFile {
	f32 := func(name, offsets string) string {
		return `"` + name + `":{"dtype":"F32","shape":[2],"data_offsets":` + offsets + `}`
	}
	huge := binary.LittleEndian.AppendUint64(nil, 1<<40)
	return []stBadFile{
		{"truncated", []byte{1, 2, 3, 4, 5}, []string{"too short"}},
		{"empty", nil, []string{"too short"}},
		{"header past end", binary.LittleEndian.AppendUint64(nil, 100), []string{"header length 100", "exceeds"}},
		{"oversized header length", append(huge, "{}"...), []string{"exceeds the limit"}},
		{"empty header", stRaw("", nil), []string{"header", "unexpected EOF"}},
		{"bad JSON", stRaw(`{"w":`, nil), []string{`tensor "w"`, "unexpected EOF"}},
		{"bad JSON syntax", stRaw(`{1:2}`, nil), []string{"header", "invalid character"}},
		{"not an object", stRaw(`[1,2]`, nil), []string{"header is an array, not a JSON object"}},
		{"trailing data", stRaw(`{} x`, nil), []string{"header"}},
		{"two objects", stRaw(`{}{}`, nil), []string{"after the object"}},
		{"not UTF-8", stRaw("{\"\xff\":1}", nil), []string{"UTF-8"}},
		{"entry not object", stRaw(`{"w":3}`, nil), []string{`tensor "w"`, "not a JSON object"}},
		{"wrong size for dtype", stRaw(`{`+f32("w", "[0,4]")+`}`, make([]byte, 8)), []string{`tensor "w"`, "hold 4 bytes", "needs 8"}},
		{"overlapping ranges", stRaw(`{`+f32("a", "[0,8]")+`,`+f32("b", "[4,12]")+`}`, make([]byte, 12)), []string{"overlaps", `"a"`, `"b"`}},
		{"same range twice", stRaw(`{`+f32("a", "[0,8]")+`,`+f32("b", "[0,8]")+`}`, make([]byte, 8)), []string{"overlaps"}},
		{"offsets past the end", stRaw(`{`+f32("w", "[8,16]")+`}`, make([]byte, 12)), []string{`tensor "w"`, "past the end"}},
		{"offsets reversed", stRaw(`{"w":{"dtype":"X","shape":[2],"data_offsets":[8,4]}}`, make([]byte, 12)), []string{`tensor "w"`, "end before"}},
		{"huge offsets", stRaw(`{`+f32("w", "[18446744073709551608,18446744073709551615]")+`}`, nil), []string{`tensor "w"`, "past the end"}},
		{"offsets too big", stRaw(`{`+f32("w", "[0,18446744073709551616]")+`}`, nil), []string{`tensor "w"`, "data_offsets"}},
		{"three offsets", stRaw(`{`+f32("w", "[0,4,8]")+`}`, make([]byte, 8)), []string{`tensor "w"`, "data_offsets has 3"}},
		{"negative shape", stRaw(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,0]}}`, nil), []string{`tensor "w"`, "shape"}},
		{"fractional shape", stRaw(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}`, nil), []string{`tensor "w"`, "shape", "1.5"}},
		{"string in shape", stRaw(`{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{`tensor "w"`, "shape"}},
		{"shape not array", stRaw(`{"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, make([]byte, 8)), []string{`tensor "w"`, "shape"}},
		{"shape overflows", stRaw(`{"w":{"dtype":"Q","shape":[1099511627776,1099511627776,1099511627776],"data_offsets":[0,0]}}`, nil), []string{`tensor "w"`, "overflows"}},
		{"dtype not string", stRaw(`{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "w"`, "dtype"}},
		{"no dtype", stRaw(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "w"`, `no "dtype"`}},
		{"no offsets", stRaw(`{"w":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), []string{`tensor "w"`, `no "data_offsets"`}},
		{"unknown key", stRaw(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}`, make([]byte, 4)), []string{`tensor "w"`, `unknown key "extra"`}},
		{"duplicate key in entry", stRaw(`{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "w"`, "twice"}},
		{"duplicate tensor", stRaw(`{`+f32("w", "[0,8]")+`,`+f32("w", "[8,16]")+`}`, make([]byte, 16)), []string{`"w"`, "twice"}},
		{"metadata not strings", stRaw(`{"__metadata__":{"a":1}}`, nil), []string{"__metadata__", `key "a"`}},
		{"metadata not object", stRaw(`{"__metadata__":["a"]}`, nil), []string{"__metadata__", "not an object"}},
	}
}

func TestParseSafeTensorsBad(t *testing.T) {
	for _, c := range stBadFiles() {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSafeTensors(c.data, "bad.safetensors")
			if err == nil {
				t.Fatalf("accepted: %q", s.Names())
			}
			if s != nil {
				t.Error("an error with a result")
			}
			for _, w := range append([]string{"bad.safetensors"}, c.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestWriteSafeTensorsBad(t *testing.T) {
	f32 := func(name string, shape []int, n int) SafeTensor {
		return SafeTensor{Name: name, DType: "F32", Shape: shape, Data: make([]byte, n)}
	}
	for _, c := range []struct {
		name    string
		tensors []SafeTensor
		md      map[string]string
		want    string
	}{
		{"wrong size", []SafeTensor{f32("w", []int{3}, 8)}, nil, `tensor "w": 8 bytes of data`},
		{"duplicate", []SafeTensor{f32("w", []int{1}, 4), f32("w", []int{1}, 4)}, nil, `tensor "w" appears twice`},
		{"unknown dtype", []SafeTensor{{Name: "w", DType: "F4", Shape: []int{2}, Data: []byte{0}}}, nil, `unknown dtype "F4"`},
		{"reserved name", []SafeTensor{f32("__metadata__", []int{1}, 4)}, nil, "reserved"},
		{"negative shape", []SafeTensor{f32("w", []int{-1}, 0)}, nil, "negative"},
		{"bad UTF-8 name", []SafeTensor{f32("w\xff", []int{1}, 4)}, nil, "UTF-8"},
		{"bad UTF-8 metadata", nil, map[string]string{"k": "\xff"}, `metadata "k"`},
	} {
		err := WriteSafeTensors(&bytes.Buffer{}, c.tensors, c.md)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}

func TestOpenSafeTensorsBad(t *testing.T) {
	const s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"malformed index", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, []byte(`{"weight_map": {"a": `))
		}, []string{SafeTensorsIndexFile}},
		{"index not an object", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, []byte(`["a"]`))
		}, []string{SafeTensorsIndexFile, "not a JSON object"}},
		{"weight_map not strings", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, []byte(`{"weight_map": {"a": 1}}`))
		}, []string{SafeTensorsIndexFile, `tensor "a"`, "not a string"}},
		{"no weight_map", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, []byte(`{"metadata": {}}`))
		}, []string{SafeTensorsIndexFile, `no "weight_map"`}},
		{"empty weight_map", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, []byte(`{"weight_map": {}}`))
		}, []string{SafeTensorsIndexFile, "empty"}},
		{"traversal", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"a": "../x.safetensors"}))
		}, []string{SafeTensorsIndexFile, `tensor "a"`, `"../x.safetensors"`, "inside the model's directory"}},
		{"traversal inside path", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"a": "sub/../../x.safetensors"}))
		}, []string{`"sub/../../x.safetensors"`, "inside the model's directory"}},
		{"absolute shard", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"a": "/etc/x.safetensors"}))
		}, []string{`"/etc/x.safetensors"`, "inside the model's directory"}},
		{"index too large", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, nil)
			if err := os.Truncate(filepath.Join(dir, SafeTensorsIndexFile), safeTensorsMaxIndex+1); err != nil {
				t.Fatal(err)
			}
		}, []string{SafeTensorsIndexFile, "limit"}},
		{"tensor missing from its shard", func(t *testing.T, dir string) {
			writeFile(t, dir, s1, stWrite(t, stSample()[:1], nil))
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"model.embed.weight": s1, "missing.weight": s1}))
		}, []string{`tensor "missing.weight"`, s1, "lacks it"}},
		{"tensor in another shard", func(t *testing.T, dir string) {
			writeFile(t, dir, s1, stWrite(t, stSample()[:1], nil))
			writeFile(t, dir, s2, stWrite(t, stSample()[1:2], nil))
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"model.embed.weight": s2, "layers.0.norm": s1}))
		}, []string{"is mapped to", "but is in"}},
		{"tensor in two shards", func(t *testing.T, dir string) {
			writeFile(t, dir, s1, stWrite(t, stSample()[:2], nil))
			writeFile(t, dir, s2, stWrite(t, stSample()[1:3], nil))
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"model.embed.weight": s1, "layers.0.attn": s2}))
		}, []string{`tensor "layers.0.norm"`, "in both", s1, s2}},
		{"missing shard", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"a": s1}))
		}, []string{s1}},
		{"broken shard", func(t *testing.T, dir string) {
			writeFile(t, dir, s1, stRaw(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8)))
			writeFile(t, dir, SafeTensorsIndexFile, stIndex(t, map[string]string{"a": s1}))
		}, []string{s1, `tensor "a"`, "past the end"}},
		{"broken single file", func(t *testing.T, dir string) {
			writeFile(t, dir, SafeTensorsFile, []byte{1, 2, 3})
		}, []string{SafeTensorsFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.setup(t, dir)
			s, err := OpenSafeTensors(dir)
			if err == nil {
				s.Close()
				t.Fatalf("accepted: %q", s.Names())
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func FuzzParseSafeTensors(f *testing.F) {
	f.Add(stWrite(f, stSample(), map[string]string{"format": "pt"}))
	f.Add(stWrite(f, nil, nil))
	f.Add(stRaw(`{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]},"b":{"dtype":"F16","shape":[],"data_offsets":[2,4]}}  `, make([]byte, 4)))
	for _, c := range stBadFiles() {
		f.Add(c.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSafeTensors(data, "fuzz")
		if err != nil {
			if s != nil {
				t.Fatal("an error with a result")
			}
			return
		}
		n := binary.LittleEndian.Uint64(data) // parsing checked the length
		base := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
		lo, hi := base+8+uintptr(n), base+uintptr(len(data))
		names := s.Names()
		if !slices.IsSorted(names) {
			t.Fatalf("names not sorted: %q", names)
		}
		allKnown := true
		var tensors []SafeTensor
		for _, name := range names {
			tn, ok := s.Tensor(name)
			if !ok || tn.Name != name {
				t.Fatalf("Names lists %q, Tensor finds %v", name, tn)
			}
			if len(tn.Data) > 0 {
				p := uintptr(unsafe.Pointer(unsafe.SliceData(tn.Data)))
				if p < lo || p+uintptr(len(tn.Data)) > hi {
					t.Fatalf("tensor %q: data at [%d,%d) of the file, outside the data section [%d,%d)",
						name, p-base, p-base+uintptr(len(tn.Data)), lo-base, hi-base)
				}
			}
			for _, d := range tn.Shape {
				if d < 0 {
					t.Fatalf("tensor %q: shape %v", name, tn.Shape)
				}
			}
			if size, ok := SafeTensorDTypeSize(tn.DType); ok {
				if want := tn.Elements() * size; len(tn.Data) != want {
					t.Fatalf("tensor %q: %d bytes, its shape %v of %s needs %d", name, len(tn.Data), tn.Shape, tn.DType, want)
				}
			} else {
				allKnown = false
			}
			tensors = append(tensors, *tn)
		}
		if !allKnown {
			return
		}
		// What parses, writes back and reads the same.
		md := s.Metadata()
		again, err := ParseSafeTensors(stWrite(t, tensors, md), "rewritten")
		if err != nil {
			t.Fatalf("rewritten file: %v", err)
		}
		stCheckSame(t, again, tensors)
		if len(md) > 0 && !maps.Equal(again.Metadata(), md) {
			t.Fatalf("metadata %v rewritten as %v", md, again.Metadata())
		}
	})
}
