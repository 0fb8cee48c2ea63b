package checkpoints

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Safetensors layout (Hugging Face):
//
//	uint64 N, little-endian: the length of the header
//	N bytes of UTF-8 JSON, an object, possibly padded with trailing spaces:
//	  { "__metadata__": {string: string, ...},            (optional)
//	    "<tensor>": {"dtype": "F32", "shape": [d0, d1, ...],
//	                 "data_offsets": [begin, end]}, ... }
//	the data section: each tensor's bytes, row-major and little-endian, at
//	[begin, end) relative to the start of the data section
//
// A sharded model keeps its tensors in several such files, and
// model.safetensors.index.json maps each tensor name to the file that
// holds it: {"metadata": {...}, "weight_map": {"<tensor>": "<file>", ...}}.
//
// The reader treats every file as hostile: the header length is bounded
// before anything is read, the JSON is walked token by token (so duplicate
// keys and unknown fields are seen), shapes are checked for overflow,
// each tensor's byte count must match its dtype and shape, and the ranges
// must lie inside the data section without overlapping.

// Safetensors limits. Real files are far inside them.
const (
	// safeTensorsMaxHeader is the largest header a file may declare.
	safeTensorsMaxHeader = 100 << 20
	// safeTensorsMaxIndex is the largest index file read.
	safeTensorsMaxIndex = 64 << 20
	// safeTensorsMaxElements bounds a tensor's element count, so that its
	// byte count cannot overflow for any dtype.
	safeTensorsMaxElements = min(1<<60, math.MaxInt)
)

// The file names of a Hugging Face model directory.
const (
	// SafeTensorsFile is the name of a single-file model.
	SafeTensorsFile = "model.safetensors"
	// SafeTensorsIndexFile is the name of a sharded model's index.
	SafeTensorsIndexFile = "model.safetensors.index.json"
)

// safeTensorsMetadataKey is the header key that holds the file's metadata
// instead of a tensor.
const safeTensorsMetadataKey = "__metadata__"

// safeTensorDTypeSizes gives the bytes per element of each dtype whose
// elements are whole bytes. Sub-byte types (F4, F6_E2M3, F6_E3M2) and
// dtypes newer than this table parse with only their bounds checked.
var safeTensorDTypeSizes = map[string]int{
	"BOOL":    1,
	"U8":      1,
	"I8":      1,
	"F8_E4M3": 1,
	"F8_E5M2": 1,
	"F8_E8M0": 1,
	"U16":     2,
	"I16":     2,
	"F16":     2,
	"BF16":    2,
	"U32":     4,
	"I32":     4,
	"F32":     4,
	"U64":     8,
	"I64":     8,
	"F64":     8,
	"C64":     8,
}

// SafeTensorDTypeSize returns the bytes per element of a known dtype, as
// the file names it ("F32", "BF16", ...), and false for any other.
func SafeTensorDTypeSize(dtype string) (int, bool) {
	n, ok := safeTensorDTypeSizes[dtype]
	return n, ok
}

// SafeTensor is one tensor of a safetensors file.
type SafeTensor struct {
	Name  string
	DType string // as the file names it: "F32", "F16", "BF16", ...
	Shape []int  // outermost first, as stored
	// Data is the tensor's bytes: a window into the file (or its memory
	// map), read-only and valid until the SafeTensors is closed.
	Data []byte
}

// Elements is the number of values the tensor's shape holds (1 for a
// scalar, whose shape is empty).
func (t *SafeTensor) Elements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d // bounded when the file was parsed
	}
	return n
}

// SafeTensors is a set of tensors read from one safetensors file or from
// the shards of one model. Tensor data are windows into the files' bytes
// (memory maps for OpenSafeTensors), so Close must come after the last use
// of them.
type SafeTensors struct {
	tensors  map[string]*SafeTensor
	names    []string // sorted
	metadata map[string]string
	unmaps   []func() error
}

// ParseSafeTensors parses one safetensors file held in memory; name (a
// path, usually) is used in errors. The tensors refer to data, which must
// not change while they are in use.
func ParseSafeTensors(data []byte, name string) (*SafeTensors, error) {
	f, err := parseSafeTensorsFile(data, name)
	if err != nil {
		return nil, err
	}
	s := &SafeTensors{tensors: make(map[string]*SafeTensor, len(f.tensors)), metadata: f.metadata}
	for _, t := range f.tensors {
		s.tensors[t.Name] = t
	}
	s.sortNames()
	return s, nil
}

// OpenSafeTensors opens the weights of a Hugging Face model directory:
// model.safetensors when it is there, or else the shards that
// model.safetensors.index.json names in its "weight_map". Each file is
// memory-mapped, not copied; Close unmaps them. Every tensor the index
// names must be in the shard it names, no tensor may be in two shards,
// and the shard names must stay inside dir (symbolic links are followed,
// as in the Hugging Face cache, whose snapshot files link to blobs). When
// neither file exists the error wraps fs.ErrNotExist.
func OpenSafeTensors(dir string) (*SafeTensors, error) {
	single := filepath.Join(dir, SafeTensorsFile)
	if _, err := os.Stat(single); err == nil {
		s := &SafeTensors{tensors: map[string]*SafeTensor{}}
		f, err := s.mapShard(single)
		if err != nil {
			return nil, err
		}
		for _, t := range f.tensors {
			s.tensors[t.Name] = t
		}
		s.metadata = f.metadata
		s.sortNames()
		return s, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}

	indexPath := filepath.Join(dir, SafeTensorsIndexFile)
	raw, err := readBounded(indexPath, safeTensorsMaxIndex)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %s has neither %s nor %s: %w", dir, SafeTensorsFile, SafeTensorsIndexFile, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	weightMap, shards, err := parseSafeTensorsIndex(raw, indexPath)
	if err != nil {
		return nil, err
	}

	s := &SafeTensors{tensors: map[string]*SafeTensor{}}
	owner := map[string]string{} // tensor name → shard it was found in
	// The first shard by name (model-00001-of-...) gives the metadata.
	slices.Sort(shards)
	for i, shard := range shards {
		p := filepath.Join(dir, filepath.FromSlash(shard))
		f, err := s.mapShard(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		for _, t := range f.tensors {
			if prev, dup := owner[t.Name]; dup {
				s.Close()
				return nil, fmt.Errorf("safetensors: %s: tensor %q is in both %s and %s", dir, t.Name, prev, shard)
			}
			owner[t.Name] = shard
			s.tensors[t.Name] = t
		}
		if i == 0 {
			s.metadata = f.metadata
		}
	}
	for _, e := range weightMap {
		if owner[e.tensor] != e.shard {
			s.Close()
			if where, ok := owner[e.tensor]; ok {
				return nil, fmt.Errorf("safetensors: %s: tensor %q is mapped to %s but is in %s", indexPath, e.tensor, e.shard, where)
			}
			return nil, fmt.Errorf("safetensors: %s: tensor %q is mapped to %s, which lacks it", indexPath, e.tensor, e.shard)
		}
	}
	s.sortNames()
	return s, nil
}

// mapShard maps and parses one file, keeping its unmap function for Close.
func (s *SafeTensors) mapShard(path string) (*safeTensorsFile, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := parseSafeTensorsFile(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	s.unmaps = append(s.unmaps, unmap)
	return f, nil
}

// sortNames records the tensor names in order.
func (s *SafeTensors) sortNames() {
	s.names = slices.Sorted(maps.Keys(s.tensors))
}

// Close releases the memory maps, if any. Tensor data must not be used
// afterwards; Tensor and Names find nothing once the set is closed. Close
// is safe to call twice.
func (s *SafeTensors) Close() error {
	var errs []error
	for _, unmap := range s.unmaps {
		if err := unmap(); err != nil {
			errs = append(errs, fmt.Errorf("safetensors: unmap: %w", err))
		}
	}
	s.unmaps = nil
	s.tensors = nil
	s.names = nil
	return errors.Join(errs...)
}

// Tensor returns the named tensor.
func (s *SafeTensors) Tensor(name string) (*SafeTensor, bool) {
	t, ok := s.tensors[name]
	return t, ok
}

// Names returns the tensor names, sorted.
func (s *SafeTensors) Names() []string { return slices.Clone(s.names) }

// Metadata returns a copy of the "__metadata__" of the file (of the first
// shard, by file name, for a sharded model); nil when it has none.
func (s *SafeTensors) Metadata() map[string]string { return maps.Clone(s.metadata) }

// safeTensorsFile is one parsed file, before it joins a set.
type safeTensorsFile struct {
	tensors  []*SafeTensor
	metadata map[string]string
}

// safeTensorsErrorf formats a parse error as "safetensors: [name: ]message".
func safeTensorsErrorf(name, format string, args ...any) error {
	if name != "" {
		return fmt.Errorf("safetensors: %s: "+format, append([]any{name}, args...)...)
	}
	return fmt.Errorf("safetensors: "+format, args...)
}

// parseSafeTensorsFile parses and checks one file; name is used in errors.
func parseSafeTensorsFile(data []byte, name string) (*safeTensorsFile, error) {
	if len(data) < 8 {
		return nil, safeTensorsErrorf(name, "file is %d bytes, too short for the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > safeTensorsMaxHeader {
		return nil, safeTensorsErrorf(name, "header length %d exceeds the limit of %d bytes", n, safeTensorsMaxHeader)
	}
	if n > uint64(len(data)-8) {
		return nil, safeTensorsErrorf(name, "header length %d exceeds the %d bytes after it", n, len(data)-8)
	}
	header := data[8 : 8+n]
	body := data[8+n:]
	if !utf8.Valid(header) {
		return nil, safeTensorsErrorf(name, "header is not valid UTF-8")
	}
	f := &safeTensorsFile{}
	type span struct {
		t          *SafeTensor
		begin, end uint64
	}
	var spans []span
	seen := map[string]bool{}
	dec := newJSONDecoder(header)
	err := jsonObject(dec, "header", func(key string) error {
		if seen[key] {
			if key == safeTensorsMetadataKey {
				return fmt.Errorf("key %q appears twice", key)
			}
			return fmt.Errorf("tensor %q appears twice", key)
		}
		seen[key] = true
		if key == safeTensorsMetadataKey {
			md, err := jsonStringMap(dec)
			if err != nil {
				return fmt.Errorf("%s: %w", safeTensorsMetadataKey, err)
			}
			f.metadata = md
			return nil
		}
		t, begin, end, err := parseSafeTensorEntry(dec, key, uint64(len(body)))
		if err != nil {
			return fmt.Errorf("tensor %q: %w", key, err)
		}
		t.Data = body[begin:end:end]
		f.tensors = append(f.tensors, t)
		spans = append(spans, span{t, begin, end})
		return nil
	})
	if err != nil {
		return nil, safeTensorsErrorf(name, "%w", err)
	}
	if err := jsonEnd(dec); err != nil {
		return nil, safeTensorsErrorf(name, "header: %w", err)
	}

	// No two non-empty ranges may share a byte. Empty ranges share none,
	// and the reference writer places zero-size tensors at the offset of
	// their neighbours.
	slices.SortFunc(spans, func(a, b span) int {
		if a.begin != b.begin {
			return cmp.Compare(a.begin, b.begin)
		}
		return cmp.Compare(a.end, b.end)
	})
	var last *span // the non-empty range that reaches furthest so far
	for i := range spans {
		sp := &spans[i]
		if sp.begin == sp.end {
			continue
		}
		if last != nil && sp.begin < last.end {
			return nil, safeTensorsErrorf(name, "tensor %q: data [%d,%d) overlaps tensor %q [%d,%d)",
				sp.t.Name, sp.begin, sp.end, last.t.Name, last.begin, last.end)
		}
		if last == nil || sp.end > last.end {
			last = sp
		}
	}
	return f, nil
}

// parseSafeTensorEntry reads one tensor's object: exactly "dtype",
// "shape" and "data_offsets", each once. It checks the shape, the offsets
// against the data section's size, and, for a known dtype, that the
// range holds exactly the shape's bytes.
func parseSafeTensorEntry(dec *json.Decoder, name string, size uint64) (t *SafeTensor, begin, end uint64, err error) {
	t = &SafeTensor{Name: name}
	var haveDType, haveShape, haveOffsets bool
	err = jsonObject(dec, "entry", func(key string) error {
		switch key {
		case "dtype":
			if haveDType {
				return errors.New(`key "dtype" appears twice`)
			}
			haveDType = true
			s, err := jsonString(dec)
			if err != nil {
				return fmt.Errorf("dtype: %w", err)
			}
			t.DType = s
		case "shape":
			if haveShape {
				return errors.New(`key "shape" appears twice`)
			}
			haveShape = true
			shape, err := jsonUints(dec, math.MaxInt)
			if err != nil {
				return fmt.Errorf("shape: %w", err)
			}
			t.Shape = make([]int, len(shape))
			for i, d := range shape {
				t.Shape[i] = int(d)
			}
		case "data_offsets":
			if haveOffsets {
				return errors.New(`key "data_offsets" appears twice`)
			}
			haveOffsets = true
			offs, err := jsonUints(dec, math.MaxUint64)
			if err != nil {
				return fmt.Errorf("data_offsets: %w", err)
			}
			if len(offs) != 2 {
				return fmt.Errorf("data_offsets has %d numbers, want 2", len(offs))
			}
			begin, end = offs[0], offs[1]
		default:
			return fmt.Errorf("unknown key %q", key)
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, err
	}
	switch {
	case !haveDType:
		return nil, 0, 0, errors.New(`no "dtype"`)
	case !haveShape:
		return nil, 0, 0, errors.New(`no "shape"`)
	case !haveOffsets:
		return nil, 0, 0, errors.New(`no "data_offsets"`)
	}
	elems, err := shapeElements(t.Shape)
	if err != nil {
		return nil, 0, 0, err
	}
	if begin > end {
		return nil, 0, 0, fmt.Errorf("data_offsets [%d,%d) end before they begin", begin, end)
	}
	if end > size {
		return nil, 0, 0, fmt.Errorf("data_offsets [%d,%d) go past the end of the data section (%d bytes)", begin, end, size)
	}
	if esize, ok := SafeTensorDTypeSize(t.DType); ok {
		if want := elems * uint64(esize); end-begin != want {
			return nil, 0, 0, fmt.Errorf("data_offsets [%d,%d) hold %d bytes, but shape %v of %s needs %d",
				begin, end, end-begin, t.Shape, t.DType, want)
		}
	}
	return t, begin, end, nil
}

// shapeElements multiplies out a shape, refusing negative extents and
// counts above safeTensorsMaxElements. A shape with a zero extent holds
// no elements, whatever the others are.
func shapeElements(shape []int) (uint64, error) {
	if slices.Contains(shape, 0) {
		return 0, nil
	}
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative extent", shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > safeTensorsMaxElements {
			return 0, fmt.Errorf("shape %v: element count overflows", shape)
		}
		n = lo
	}
	return n, nil
}

// safeTensorsIndexEntry is one "weight_map" entry of an index file.
type safeTensorsIndexEntry struct {
	tensor, shard string
}

// parseSafeTensorsIndex reads model.safetensors.index.json: an object
// whose "weight_map" maps tensor names to shard files. It returns the
// entries in file order and each shard once, refusing shard names that
// would leave the model's directory. Other keys ("metadata") are ignored.
func parseSafeTensorsIndex(raw []byte, indexPath string) ([]safeTensorsIndexEntry, []string, error) {
	if !utf8.Valid(raw) {
		return nil, nil, safeTensorsErrorf(indexPath, "not valid UTF-8")
	}
	var entries []safeTensorsIndexEntry
	var shards []string
	haveMap := false
	dec := newJSONDecoder(raw)
	err := jsonObject(dec, "index", func(key string) error {
		if key != "weight_map" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fmt.Errorf("%q: %w", key, err)
			}
			return nil
		}
		if haveMap {
			return errors.New(`key "weight_map" appears twice`)
		}
		haveMap = true
		seenTensor := map[string]bool{}
		seenShard := map[string]bool{}
		return jsonObject(dec, "weight_map", func(tensor string) error {
			if seenTensor[tensor] {
				return fmt.Errorf("weight_map: tensor %q appears twice", tensor)
			}
			seenTensor[tensor] = true
			shard, err := jsonString(dec)
			if err != nil {
				return fmt.Errorf("weight_map: tensor %q: %w", tensor, err)
			}
			if !filepath.IsLocal(shard) || !filepath.IsLocal(filepath.FromSlash(shard)) {
				return fmt.Errorf("weight_map: tensor %q: shard %q is not a file inside the model's directory", tensor, shard)
			}
			shard = path.Clean(shard)
			if !seenShard[shard] {
				seenShard[shard] = true
				shards = append(shards, shard)
			}
			entries = append(entries, safeTensorsIndexEntry{tensor, shard})
			return nil
		})
	})
	if err == nil {
		err = jsonEnd(dec)
	}
	if err != nil {
		return nil, nil, safeTensorsErrorf(indexPath, "%w", err)
	}
	if !haveMap {
		return nil, nil, safeTensorsErrorf(indexPath, `no "weight_map"`)
	}
	if len(entries) == 0 {
		return nil, nil, safeTensorsErrorf(indexPath, `"weight_map" is empty`)
	}
	return entries, shards, nil
}

// readBounded reads a whole file that may be at most limit bytes long.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the limit of %d", path, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// newJSONDecoder returns a decoder over b that reports numbers as
// json.Number, so integers are parsed exactly.
func newJSONDecoder(b []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec
}

// jsonObject reads an object, calling fn with each key; fn must consume
// the key's value from dec. what names the object in errors.
func jsonObject(dec *json.Decoder, what string, fn func(key string) error) error {
	tok, err := jsonToken(dec)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s is %s, not a JSON object", what, jsonKind(tok))
	}
	return jsonMembers(dec, what, fn)
}

// jsonMembers reads the members of an object whose opening brace has been
// read, and its closing brace.
func jsonMembers(dec *json.Decoder, what string, fn func(key string) error) error {
	for dec.More() {
		tok, err := jsonToken(dec)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%s: key is %s", what, jsonKind(tok))
		}
		if err := fn(key); err != nil {
			return err
		}
	}
	if _, err := jsonToken(dec); err != nil { // the closing brace
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// jsonToken reads the next token, reporting the end of the input as
// unexpected: it is only called where a token must follow.
func jsonToken(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return tok, err
}

// jsonEnd checks that nothing but white space follows the value read.
func jsonEnd(dec *json.Decoder) error {
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return err
		}
		return fmt.Errorf("%s after the object", jsonKind(tok))
	}
	return nil
}

// jsonString reads a string value.
func jsonString(dec *json.Decoder) (string, error) {
	tok, err := jsonToken(dec)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("is %s, not a string", jsonKind(tok))
	}
	return s, nil
}

// jsonStringMap reads an object whose values are strings. A null reads
// as a nil map, an empty object as an empty one.
func jsonStringMap(dec *json.Decoder) (map[string]string, error) {
	tok, err := jsonToken(dec)
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("is %s, not an object of strings", jsonKind(tok))
	}
	m := map[string]string{}
	err = jsonMembers(dec, "object", func(key string) error {
		if _, dup := m[key]; dup {
			return fmt.Errorf("key %q appears twice", key)
		}
		v, err := jsonString(dec)
		if err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		m[key] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// jsonUints reads an array of non-negative integers, each at most max.
// The array grows with the input, so its size is bounded by the header's.
func jsonUints(dec *json.Decoder, max uint64) ([]uint64, error) {
	tok, err := jsonToken(dec)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("is %s, not an array of integers", jsonKind(tok))
	}
	out := []uint64{}
	for dec.More() {
		tok, err := jsonToken(dec)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("element %d is %s, not an integer", len(out), jsonKind(tok))
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil || v > max {
			return nil, fmt.Errorf("element %d (%s) is not an integer in [0, %d]", len(out), num, max)
		}
		out = append(out, v)
	}
	if _, err := jsonToken(dec); err != nil { // the closing bracket
		return nil, err
	}
	return out, nil
}

// jsonKind describes a token for error messages.
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + string(v)
	case bool:
		return fmt.Sprintf("%t", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// WriteSafeTensors writes one safetensors file: the header, with metadata
// (when not empty) as "__metadata__" and the tensors in the order given,
// padded with spaces so that the data section starts at a multiple of 8,
// then each tensor's bytes, back to back, in the same order. Every dtype
// must be one SafeTensorDTypeSize knows, and every Data exactly as long as
// its dtype and shape say.
func WriteSafeTensors(w io.Writer, tensors []SafeTensor, metadata map[string]string) error {
	var hdr bytes.Buffer
	enc := json.NewEncoder(&hdr)
	enc.SetEscapeHTML(false)
	// quote appends s as a JSON string.
	quote := func(s string) {
		// Encoding a string into a bytes.Buffer cannot fail, and Encode
		// ends what it writes with a newline.
		enc.Encode(s)
		hdr.Truncate(hdr.Len() - 1)
	}
	hdr.WriteByte('{')
	sep := func() {
		if hdr.Len() > 1 {
			hdr.WriteByte(',')
		}
	}
	if len(metadata) > 0 {
		hdr.WriteByte('"')
		hdr.WriteString(safeTensorsMetadataKey)
		hdr.WriteString(`":{`)
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			v := metadata[k]
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return fmt.Errorf("safetensors write: metadata %q: not valid UTF-8", k)
			}
			if i > 0 {
				hdr.WriteByte(',')
			}
			quote(k)
			hdr.WriteByte(':')
			quote(v)
		}
		hdr.WriteByte('}')
	}
	names := make(map[string]bool, len(tensors))
	var off uint64
	for i := range tensors {
		t := &tensors[i]
		switch {
		case names[t.Name]:
			return fmt.Errorf("safetensors write: tensor %q appears twice", t.Name)
		case t.Name == safeTensorsMetadataKey:
			return fmt.Errorf("safetensors write: tensor name %q is reserved for metadata", t.Name)
		case !utf8.ValidString(t.Name):
			return fmt.Errorf("safetensors write: tensor %q: name is not valid UTF-8", t.Name)
		}
		names[t.Name] = true
		esize, ok := SafeTensorDTypeSize(t.DType)
		if !ok {
			return fmt.Errorf("safetensors write: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		elems, err := shapeElements(t.Shape)
		if err != nil {
			return fmt.Errorf("safetensors write: tensor %q: %w", t.Name, err)
		}
		if want := elems * uint64(esize); uint64(len(t.Data)) != want {
			return fmt.Errorf("safetensors write: tensor %q: %d bytes of data, but shape %v of %s needs %d",
				t.Name, len(t.Data), t.Shape, t.DType, want)
		}
		sep()
		quote(t.Name)
		hdr.WriteString(`:{"dtype":`)
		quote(t.DType)
		hdr.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.Itoa(d))
		}
		end := off + uint64(len(t.Data))
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > safeTensorsMaxHeader {
		return fmt.Errorf("safetensors write: header of %d bytes exceeds the limit of %d", hdr.Len(), safeTensorsMaxHeader)
	}
	cw := &countWriter{w: w}
	if _, err := cw.Write(binary.LittleEndian.AppendUint64(nil, uint64(hdr.Len()))); err != nil {
		return fmt.Errorf("safetensors write: %w", err)
	}
	if _, err := cw.Write(hdr.Bytes()); err != nil {
		return fmt.Errorf("safetensors write: %w", err)
	}
	for i := range tensors {
		if _, err := cw.Write(tensors[i].Data); err != nil {
			return fmt.Errorf("safetensors write: tensor %q: %w", tensors[i].Name, err)
		}
	}
	return nil
}
