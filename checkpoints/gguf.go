package checkpoints

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/mycel-net/mycel/kernels"
)

// GGUF limits. They bound what a hostile file can make the reader do; real
// files are far inside them.
const (
	// ggufMaxDims is the most dimensions a tensor may have (GGML's limit).
	ggufMaxDims = 4
	// ggufMaxDepth is how deeply arrays may nest.
	ggufMaxDepth = 4
	// ggufMaxAlignment is the largest general.alignment accepted.
	ggufMaxAlignment = 1 << 16
	// GGUFDefaultAlignment applies when general.alignment is absent.
	GGUFDefaultAlignment = 32
)

// ggufMagic is "GGUF" read as a little-endian uint32.
const ggufMagic = 0x46554747

// ErrNoKey is returned (wrapped) by the typed metadata getters when the key
// is absent.
var ErrNoKey = errors.New("key not found")

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name string
	// Dims lists the extent of each dimension, innermost (fastest varying)
	// first, as GGUF stores them: a matrix with Dims [in, out] has out rows
	// of in values.
	Dims []uint64
	// Type is the stored element type.
	Type GGMLType
	// DType is Type as the kernels know it; valid only when Supported.
	DType     kernels.DType
	Supported bool
	// Offset is where the data starts, relative to the data section.
	Offset uint64
	// Data is the tensor's bytes: a window into the file (or the memory
	// map), valid until the GGUF is closed.
	Data []byte
}

// Elements is the number of values in the tensor.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d // bounded when the file was parsed
	}
	return n
}

// GGUF is a parsed GGUF file. Metadata arrays and tensor data are windows
// into the file's bytes (a memory map for OpenGGUF), so Close must come
// after the last use of them.
type GGUF struct {
	Version    uint32
	Alignment  int
	DataOffset int64 // where the data section starts in the file
	KVs        []KV  // in file order
	Tensors    []TensorInfo
	// Size is the file's length in bytes.
	Size int64

	path    string
	kvIndex map[string]int
	tIndex  map[string]int
	data    []byte
	unmap   func() error
}

// Close releases the memory map, if any. Tensor data and metadata arrays
// must not be used afterwards. Close is safe to call twice.
func (g *GGUF) Close() error {
	f := g.unmap
	g.unmap = nil
	g.data = nil
	if f != nil {
		return f()
	}
	return nil
}

// Bytes is the whole file as mapped (or as given to ParseGGUF).
func (g *GGUF) Bytes() []byte { return g.data }

// OpenGGUF memory-maps and parses a GGUF file. The file is not copied into
// the heap; Close unmaps it.
func OpenGGUF(path string) (*GGUF, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	g, err := parseGGUF(data, path)
	if err != nil {
		unmap()
		return nil, err
	}
	g.unmap = unmap
	return g, nil
}

// ParseGGUF parses a GGUF file held in memory. The GGUF refers to data; it
// must not change while the GGUF is in use.
func ParseGGUF(data []byte) (*GGUF, error) { return parseGGUF(data, "") }

// ggufError formats parse errors as "gguf: [path: ]message".
func (g *GGUF) errorf(format string, args ...any) error {
	if g.path != "" {
		return fmt.Errorf("gguf: %s: "+format, append([]any{g.path}, args...)...)
	}
	return fmt.Errorf("gguf: "+format, args...)
}

// Path is the file the GGUF was opened from ("" for ParseGGUF).
func (g *GGUF) Path() string { return g.path }

func parseGGUF(data []byte, path string) (*GGUF, error) {
	g := &GGUF{path: path, data: data, Size: int64(len(data))}
	r := &reader{b: data}
	if len(data) < 4 {
		return nil, g.errorf("file is %d bytes, too short for a header", len(data))
	}
	magic := r.u32()
	if magic != ggufMagic {
		return nil, g.errorf("bad magic %q (% x), want \"GGUF\"", printable(data[:4]), data[:4])
	}
	g.Version = r.u32()
	if r.err != nil {
		return nil, g.errorf("header: %w", r.err)
	}
	switch {
	case g.Version == 2 || g.Version == 3:
	case g.Version == 1:
		return nil, g.errorf("version 1 is not supported (re-convert the model with a current tool)")
	case bits.ReverseBytes32(g.Version) == 2 || bits.ReverseBytes32(g.Version) == 3:
		return nil, g.errorf("big-endian GGUF is not supported")
	default:
		return nil, g.errorf("unknown version %d", g.Version)
	}
	nTensors := r.u64()
	nKV := r.u64()
	if r.err != nil {
		return nil, g.errorf("header: %w", r.err)
	}
	// A KV takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor
	// info at least 8 + 4 + 4 + 8; bound the counts by what is left.
	if nKV > uint64(r.left()/13) {
		return nil, g.errorf("header claims %d metadata entries but only %d bytes follow", nKV, r.left())
	}
	g.KVs = make([]KV, 0, nKV)
	g.kvIndex = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		key, err := r.str()
		if err != nil {
			return nil, g.errorf("metadata entry %d: key: %w", i, err)
		}
		typ := ValueType(r.u32())
		if r.err != nil {
			return nil, g.errorf("metadata %q: type: %w", key, r.err)
		}
		v, err := r.value(typ, 0)
		if err != nil {
			return nil, g.errorf("metadata %q: %w", key, err)
		}
		if _, dup := g.kvIndex[key]; dup {
			return nil, g.errorf("metadata key %q appears twice", key)
		}
		g.kvIndex[key] = len(g.KVs)
		g.KVs = append(g.KVs, KV{Key: key, Value: v})
	}
	g.Alignment = GGUFDefaultAlignment
	if v, ok := g.Get("general.alignment"); ok {
		a, ok := v.Uint()
		if !ok || a == 0 || a&(a-1) != 0 || a > ggufMaxAlignment {
			return nil, g.errorf("general.alignment %s must be a power of two in [1, %d]", v, ggufMaxAlignment)
		}
		g.Alignment = int(a)
	}

	if nTensors > uint64(r.left()/24) {
		return nil, g.errorf("header claims %d tensors but only %d bytes follow", nTensors, r.left())
	}
	g.Tensors = make([]TensorInfo, 0, nTensors)
	g.tIndex = make(map[string]int, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := r.tensorInfo()
		if err != nil {
			if t.Name != "" {
				return nil, g.errorf("tensor %s: %w", t.Name, err)
			}
			return nil, g.errorf("tensor %d: %w", i, err)
		}
		if _, dup := g.tIndex[t.Name]; dup {
			return nil, g.errorf("tensor %s appears twice", t.Name)
		}
		g.tIndex[t.Name] = len(g.Tensors)
		g.Tensors = append(g.Tensors, t)
	}

	// The data section starts at the next multiple of the alignment.
	start := uint64(r.off)
	if rem := start % uint64(g.Alignment); rem != 0 {
		start += uint64(g.Alignment) - rem
	}
	g.DataOffset = int64(start)
	if len(g.Tensors) > 0 && start > uint64(len(data)) {
		return nil, g.errorf("data section at %d is beyond the end of the file (%d bytes)", start, len(data))
	}
	size := uint64(len(data))
	for i := range g.Tensors {
		t := &g.Tensors[i]
		nbytes, err := tensorBytes(t)
		if err != nil {
			return nil, g.errorf("tensor %s: %w", t.Name, err)
		}
		if t.Offset%uint64(g.Alignment) != 0 {
			return nil, g.errorf("tensor %s: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, g.Alignment)
		}
		if t.Offset > size || start > size-t.Offset || nbytes > size-start-t.Offset {
			return nil, g.errorf("tensor %s: data [%d,%d) beyond end of file (%d bytes)",
				t.Name, satAdd(start, t.Offset), satAdd(satAdd(start, t.Offset), nbytes), size)
		}
		a := start + t.Offset
		t.Data = data[a : a+nbytes : a+nbytes]
	}
	// Tensors must not overlap.
	order := make([]int, len(g.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := g.Tensors[a].Offset, g.Tensors[b].Offset
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return 0
	})
	for k := 1; k < len(order); k++ {
		p, t := &g.Tensors[order[k-1]], &g.Tensors[order[k]]
		if p.Offset+uint64(len(p.Data)) > t.Offset {
			return nil, g.errorf("tensor %s: data at offset %d overlaps tensor %s [%d,%d)",
				t.Name, t.Offset, p.Name, p.Offset, p.Offset+uint64(len(p.Data)))
		}
	}
	return g, nil
}

func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// tensorBytes computes the stored size of t, checking the element count
// and the block layout.
func tensorBytes(t *TensorInfo) (uint64, error) {
	l, ok := ggmlLayouts[t.Type]
	if !ok {
		return 0, fmt.Errorf("unknown %s", t.Type)
	}
	n := uint64(1)
	for _, d := range t.Dims {
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > 1<<60 {
			return 0, fmt.Errorf("dims %v: element count overflows", t.Dims)
		}
		n = lo
	}
	if len(t.Dims) > 0 && t.Dims[0]%uint64(l.block) != 0 {
		return 0, fmt.Errorf("%s needs rows of a multiple of %d values, dims %v", l.name, l.block, t.Dims)
	}
	return n / uint64(l.block) * uint64(l.blockBytes), nil
}

// Get returns the value of a metadata key.
func (g *GGUF) Get(key string) (Value, bool) {
	i, ok := g.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return g.KVs[i].Value, true
}

// Tensor returns the named tensor.
func (g *GGUF) Tensor(name string) (*TensorInfo, bool) {
	i, ok := g.tIndex[name]
	if !ok {
		return nil, false
	}
	return &g.Tensors[i], true
}

func (g *GGUF) get(key string) (Value, error) {
	v, ok := g.Get(key)
	if !ok {
		return Value{}, g.keyErr(key, ErrNoKey)
	}
	return v, nil
}

func (g *GGUF) keyErr(key string, err error) error {
	if g.path != "" {
		return fmt.Errorf("gguf: %s: %s: %w", g.path, key, err)
	}
	return fmt.Errorf("gguf: %s: %w", key, err)
}

func (g *GGUF) typeErr(key string, v Value, want string) error {
	return g.keyErr(key, fmt.Errorf("is a %s (%s), want %s", v.typ, v, want))
}

// String returns a string-valued key.
func (g *GGUF) String(key string) (string, error) {
	v, err := g.get(key)
	if err != nil {
		return "", err
	}
	s, ok := v.Str()
	if !ok {
		return "", g.typeErr(key, v, "a string")
	}
	return strings.Clone(s), nil
}

// Uint returns a key of any integer type whose value is not negative.
func (g *GGUF) Uint(key string) (uint64, error) {
	v, err := g.get(key)
	if err != nil {
		return 0, err
	}
	u, ok := v.Uint()
	if !ok {
		return 0, g.typeErr(key, v, "a non-negative integer")
	}
	return u, nil
}

// Float returns a float-valued (or integer-valued) key.
func (g *GGUF) Float(key string) (float64, error) {
	v, err := g.get(key)
	if err != nil {
		return 0, err
	}
	f, ok := v.Float()
	if !ok {
		return 0, g.typeErr(key, v, "a number")
	}
	return f, nil
}

// Bool returns a bool-valued key.
func (g *GGUF) Bool(key string) (bool, error) {
	v, err := g.get(key)
	if err != nil {
		return false, err
	}
	b, ok := v.Bool()
	if !ok {
		return false, g.typeErr(key, v, "a bool")
	}
	return b, nil
}

func (g *GGUF) array(key string) (*Array, error) {
	v, err := g.get(key)
	if err != nil {
		return nil, err
	}
	a, ok := v.Array()
	if !ok {
		return nil, g.typeErr(key, v, "an array")
	}
	return a, nil
}

// Strings returns an array of strings, copied out of the file.
func (g *GGUF) Strings(key string) ([]string, error) {
	a, err := g.array(key)
	if err != nil {
		return nil, err
	}
	s, err := a.Strings()
	if err != nil {
		return nil, g.keyErr(key, err)
	}
	return s, nil
}

// Float32s returns an array of floats.
func (g *GGUF) Float32s(key string) ([]float32, error) {
	a, err := g.array(key)
	if err != nil {
		return nil, err
	}
	f, err := a.Float32s()
	if err != nil {
		return nil, g.keyErr(key, err)
	}
	return f, nil
}

// Int32s returns an array of integers that fit an int32.
func (g *GGUF) Int32s(key string) ([]int32, error) {
	a, err := g.array(key)
	if err != nil {
		return nil, err
	}
	x, err := a.Int32s()
	if err != nil {
		return nil, g.keyErr(key, err)
	}
	return x, nil
}

// printable replaces non-printable bytes for error messages.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			c = '.'
		}
		out[i] = c
	}
	return string(out)
}

// reader walks a byte slice; the first error sticks.
type reader struct {
	b   []byte
	off int
	err error
}

var errTruncated = errors.New("unexpected end of file")

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.err = fmt.Errorf("%w at byte %d (need %d more, %d left)", errTruncated, r.off, n, r.left())
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *reader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// strBytes reads a length-prefixed string without copying it.
func (r *reader) strBytes() ([]byte, error) {
	n := r.u64()
	if r.err != nil {
		return nil, r.err
	}
	if n > uint64(r.left()) {
		return nil, fmt.Errorf("string length %d at byte %d exceeds the %d bytes left", n, r.off-8, r.left())
	}
	return r.take(int(n)), nil
}

// str reads a length-prefixed string and copies it.
func (r *reader) str() (string, error) {
	b, err := r.strBytes()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// value reads a value of type typ. A string value is copied; an array
// value keeps a window into the file, its structure checked.
func (r *reader) value(typ ValueType, depth int) (Value, error) {
	v := Value{typ: typ}
	switch typ {
	case TypeString:
		b, err := r.strBytes()
		if err != nil {
			return v, err
		}
		v.str = string(b)
		return v, nil
	case TypeArray:
		if depth >= ggufMaxDepth {
			return v, fmt.Errorf("arrays nested deeper than %d", ggufMaxDepth)
		}
		elem := ValueType(r.u32())
		n := r.u64()
		if r.err != nil {
			return v, r.err
		}
		if !elem.valid() {
			return v, fmt.Errorf("array of unknown type %d", uint32(elem))
		}
		start := r.off
		if sz := elem.size(); sz > 0 {
			if n > uint64(r.left()/sz) {
				return v, fmt.Errorf("array of %d %s needs %d bytes, only %d left", n, elem, satMul(n, uint64(sz)), r.left())
			}
			r.take(int(n) * sz)
		} else {
			minSize := 8 // a string's length
			if elem == TypeArray {
				minSize = 12
			}
			if n > uint64(r.left()/minSize) {
				return v, fmt.Errorf("array of %d %ss needs at least %d bytes, only %d left", n, elem, satMul(n, uint64(minSize)), r.left())
			}
			for i := uint64(0); i < n; i++ {
				var err error
				if elem == TypeString {
					_, err = r.strBytes()
				} else {
					_, err = r.value(elem, depth+1)
				}
				if err != nil {
					return v, fmt.Errorf("array element %d: %w", i, err)
				}
			}
		}
		v.arr = &Array{elem: elem, n: int(n), raw: r.b[start:r.off:r.off]}
		return v, nil
	}
	sz := typ.size()
	if sz == 0 {
		return v, fmt.Errorf("unknown value type %d", uint32(typ))
	}
	b := r.take(sz)
	if b == nil {
		return v, r.err
	}
	a := &Array{elem: typ, n: 1, raw: b}
	return a.scalar(0), nil
}

func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

func (r *reader) tensorInfo() (TensorInfo, error) {
	var t TensorInfo
	name, err := r.str()
	if err != nil {
		return t, fmt.Errorf("name: %w", err)
	}
	t.Name = name
	nd := r.u32()
	if r.err != nil {
		return t, r.err
	}
	if nd > ggufMaxDims {
		return t, fmt.Errorf("%d dimensions, at most %d allowed", nd, ggufMaxDims)
	}
	t.Dims = make([]uint64, nd)
	for i := range t.Dims {
		t.Dims[i] = r.u64()
	}
	t.Type = GGMLType(r.u32())
	t.Offset = r.u64()
	if r.err != nil {
		return t, r.err
	}
	t.DType, t.Supported = t.Type.DType()
	return t, nil
}
