package checkpoints

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

// ValueType is the type tag of a GGUF metadata value.
type ValueType uint32

// The GGUF metadata value types, with their on-disk tags.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8: "u8", TypeInt8: "i8", TypeUint16: "u16", TypeInt16: "i16",
	TypeUint32: "u32", TypeInt32: "i32", TypeFloat32: "f32", TypeBool: "bool",
	TypeString: "string", TypeArray: "array", TypeUint64: "u64", TypeInt64: "i64",
	TypeFloat64: "f64",
}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// valid reports whether t is a known value type.
func (t ValueType) valid() bool { return int(t) < len(valueTypeNames) }

// size is the encoded size of a fixed-size scalar type, 0 for strings and
// arrays.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

func (t ValueType) isInt() bool {
	switch t {
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeUint64, TypeInt64:
		return true
	}
	return false
}

func (t ValueType) isSigned() bool {
	return t == TypeInt8 || t == TypeInt16 || t == TypeInt32 || t == TypeInt64
}

// Value is one GGUF metadata value. Scalars hold their bits; an array holds
// its encoded elements and decodes them on demand, so that a file with a
// 150,000-entry vocabulary opens in microseconds.
//
// A Value read from a memory-mapped file refers to the map: use it (or copy
// what it returns, which the accessors do) before the GGUF is closed.
type Value struct {
	typ  ValueType
	bits uint64 // integers (sign-extended for signed types), float bits, bool
	str  string
	arr  *Array
}

// Type is the value's type tag.
func (v Value) Type() ValueType { return v.typ }

// U8 .. Bool build scalar values for writing metadata.
func U8(x uint8) Value    { return Value{typ: TypeUint8, bits: uint64(x)} }
func I8(x int8) Value     { return Value{typ: TypeInt8, bits: uint64(int64(x))} }
func U16(x uint16) Value  { return Value{typ: TypeUint16, bits: uint64(x)} }
func I16(x int16) Value   { return Value{typ: TypeInt16, bits: uint64(int64(x))} }
func U32(x uint32) Value  { return Value{typ: TypeUint32, bits: uint64(x)} }
func I32(x int32) Value   { return Value{typ: TypeInt32, bits: uint64(int64(x))} }
func U64(x uint64) Value  { return Value{typ: TypeUint64, bits: x} }
func I64(x int64) Value   { return Value{typ: TypeInt64, bits: uint64(x)} }
func F32(x float32) Value { return Value{typ: TypeFloat32, bits: uint64(math.Float32bits(x))} }
func F64(x float64) Value { return Value{typ: TypeFloat64, bits: math.Float64bits(x)} }
func Str(s string) Value  { return Value{typ: TypeString, str: s} }
func Bool(b bool) Value {
	v := Value{typ: TypeBool}
	if b {
		v.bits = 1
	}
	return v
}

// Strs is an array of strings.
func Strs(ss []string) Value {
	n := 0
	for _, s := range ss {
		n += 8 + len(s)
	}
	raw := make([]byte, 0, n)
	for _, s := range ss {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(len(s)))
		raw = append(raw, s...)
	}
	return Value{typ: TypeArray, arr: &Array{elem: TypeString, n: len(ss), raw: raw}}
}

// F32s is an array of float32.
func F32s(xs []float32) Value {
	raw := make([]byte, 0, 4*len(xs))
	for _, x := range xs {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	return Value{typ: TypeArray, arr: &Array{elem: TypeFloat32, n: len(xs), raw: raw}}
}

// I32s is an array of int32.
func I32s(xs []int32) Value {
	raw := make([]byte, 0, 4*len(xs))
	for _, x := range xs {
		raw = binary.LittleEndian.AppendUint32(raw, uint32(x))
	}
	return Value{typ: TypeArray, arr: &Array{elem: TypeInt32, n: len(xs), raw: raw}}
}

// ArrayOf is an array of values that all have type elem (which may itself
// be TypeArray). It fails if an element has another type.
func ArrayOf(elem ValueType, vals []Value) (Value, error) {
	if !elem.valid() {
		return Value{}, fmt.Errorf("gguf: array of unknown type %d", uint32(elem))
	}
	var raw []byte
	for i, v := range vals {
		if v.typ != elem {
			return Value{}, fmt.Errorf("gguf: array of %s: element %d is a %s", elem, i, v.typ)
		}
		raw = appendValue(raw, v)
	}
	return Value{typ: TypeArray, arr: &Array{elem: elem, n: len(vals), raw: raw}}, nil
}

// appendValue appends v's encoding without its type tag.
func appendValue(b []byte, v Value) []byte {
	switch v.typ {
	case TypeString:
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v.str)))
		return append(b, v.str...)
	case TypeArray:
		b = binary.LittleEndian.AppendUint32(b, uint32(v.arr.elem))
		b = binary.LittleEndian.AppendUint64(b, uint64(v.arr.n))
		return append(b, v.arr.raw...)
	}
	switch v.typ.size() {
	case 1:
		return append(b, byte(v.bits))
	case 2:
		return binary.LittleEndian.AppendUint16(b, uint16(v.bits))
	case 4:
		return binary.LittleEndian.AppendUint32(b, uint32(v.bits))
	default:
		return binary.LittleEndian.AppendUint64(b, v.bits)
	}
}

// Uint returns an integer value that is not negative.
func (v Value) Uint() (uint64, bool) {
	if !v.typ.isInt() || (v.typ.isSigned() && int64(v.bits) < 0) {
		return 0, false
	}
	return v.bits, true
}

// Int returns an integer value that fits an int64.
func (v Value) Int() (int64, bool) {
	if !v.typ.isInt() || (v.typ == TypeUint64 && v.bits > math.MaxInt64) {
		return 0, false
	}
	return int64(v.bits), true
}

// Float returns a float value, or an integer one converted.
func (v Value) Float() (float64, bool) {
	switch v.typ {
	case TypeFloat32:
		return float64(math.Float32frombits(uint32(v.bits))), true
	case TypeFloat64:
		return math.Float64frombits(v.bits), true
	}
	if v.typ.isSigned() {
		return float64(int64(v.bits)), true
	}
	if v.typ.isInt() {
		return float64(v.bits), true
	}
	return 0, false
}

// Bool returns a bool value.
func (v Value) Bool() (bool, bool) { return v.bits != 0, v.typ == TypeBool }

// Str returns a string value.
func (v Value) Str() (string, bool) { return v.str, v.typ == TypeString }

// Array returns an array value.
func (v Value) Array() (*Array, bool) { return v.arr, v.typ == TypeArray }

// String formats the value for humans; long arrays are abbreviated.
func (v Value) String() string {
	switch v.typ {
	case TypeString:
		return strconv.Quote(v.str)
	case TypeBool:
		return strconv.FormatBool(v.bits != 0)
	case TypeFloat32, TypeFloat64:
		f, _ := v.Float()
		return strconv.FormatFloat(f, 'g', -1, 64)
	case TypeArray:
		return fmt.Sprintf("[%d × %s]", v.arr.n, v.arr.elem)
	}
	if v.typ.isSigned() {
		return strconv.FormatInt(int64(v.bits), 10)
	}
	return strconv.FormatUint(v.bits, 10)
}

// Array is a GGUF array value: Len elements of type Elem, kept encoded
// until asked for. The structure was checked when the file was parsed, so
// decoding cannot run out of bounds.
type Array struct {
	elem ValueType
	n    int
	raw  []byte // the encoded elements
}

// Elem is the element type.
func (a *Array) Elem() ValueType { return a.elem }

// Len is the number of elements.
func (a *Array) Len() int { return a.n }

// Strings decodes an array of strings. The strings are copied out of the
// file into one allocation.
func (a *Array) Strings() ([]string, error) {
	if a.elem != TypeString {
		return nil, fmt.Errorf("array of %s, not of strings", a.elem)
	}
	if len(a.raw) < 8*a.n {
		return nil, fmt.Errorf("array of %d strings in %d bytes", a.n, len(a.raw))
	}
	buf := make([]byte, len(a.raw)-8*a.n)
	out := make([]string, a.n)
	raw, off := a.raw, 0
	for i := range out {
		if len(raw) < 8 {
			return nil, fmt.Errorf("string %d: truncated", i)
		}
		l := binary.LittleEndian.Uint64(raw)
		raw = raw[8:]
		if l > uint64(len(raw)) || l > uint64(len(buf)-off) {
			return nil, fmt.Errorf("string %d: length %d beyond the array", i, l)
		}
		n := copy(buf[off:], raw[:l])
		raw = raw[l:]
		if n > 0 {
			out[i] = unsafe.String(&buf[off], n)
		}
		off += n
	}
	return out, nil
}

// Float32s decodes an array of f32 (or f64, rounded).
func (a *Array) Float32s() ([]float32, error) {
	out := make([]float32, a.n)
	switch a.elem {
	case TypeFloat32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(a.raw[4*i:]))
		}
	case TypeFloat64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(a.raw[8*i:])))
		}
	default:
		return nil, fmt.Errorf("array of %s, not of floats", a.elem)
	}
	return out, nil
}

// Int32s decodes an array of integers whose values all fit an int32.
func (a *Array) Int32s() ([]int32, error) {
	if !a.elem.isInt() {
		return nil, fmt.Errorf("array of %s, not of integers", a.elem)
	}
	out := make([]int32, a.n)
	if a.elem == TypeInt32 {
		for i := range out {
			out[i] = int32(binary.LittleEndian.Uint32(a.raw[4*i:]))
		}
		return out, nil
	}
	for i := range out {
		v := a.scalar(i)
		x, ok := v.Int()
		if !ok || x < math.MinInt32 || x > math.MaxInt32 {
			return nil, fmt.Errorf("element %d (%s) does not fit an int32", i, v)
		}
		out[i] = int32(x)
	}
	return out, nil
}

// scalar decodes element i of a fixed-size scalar array.
func (a *Array) scalar(i int) Value {
	sz := a.elem.size()
	b := a.raw[i*sz:]
	v := Value{typ: a.elem}
	switch sz {
	case 1:
		v.bits = uint64(b[0])
	case 2:
		v.bits = uint64(binary.LittleEndian.Uint16(b))
	case 4:
		v.bits = uint64(binary.LittleEndian.Uint32(b))
	default:
		v.bits = binary.LittleEndian.Uint64(b)
	}
	if a.elem.isSigned() {
		switch sz {
		case 1:
			v.bits = uint64(int64(int8(v.bits)))
		case 2:
			v.bits = uint64(int64(int16(v.bits)))
		case 4:
			v.bits = uint64(int64(int32(v.bits)))
		}
	}
	return v
}

// Values decodes every element as a Value (nested arrays stay lazy).
func (a *Array) Values() ([]Value, error) {
	out := make([]Value, 0, a.n)
	r := &reader{b: a.raw}
	for i := 0; i < a.n; i++ {
		v, err := r.value(a.elem, 0)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// GGMLType is a tensor element type as GGUF numbers them.
type GGMLType uint32

// The GGML tensor types this package knows the block layout of. F32, F16,
// BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K to Q6_K, IQ4_NL and IQ4_XS can
// be loaded into a model; the others are parsed so that a file using them
// gives a clear error.
const (
	GGMLF32     GGMLType = 0
	GGMLF16     GGMLType = 1
	GGMLQ4_0    GGMLType = 2
	GGMLQ4_1    GGMLType = 3
	GGMLQ5_0    GGMLType = 6
	GGMLQ5_1    GGMLType = 7
	GGMLQ8_0    GGMLType = 8
	GGMLQ8_1    GGMLType = 9
	GGMLQ2_K    GGMLType = 10
	GGMLQ3_K    GGMLType = 11
	GGMLQ4_K    GGMLType = 12
	GGMLQ5_K    GGMLType = 13
	GGMLQ6_K    GGMLType = 14
	GGMLQ8_K    GGMLType = 15
	GGMLIQ2_XXS GGMLType = 16
	GGMLIQ2_XS  GGMLType = 17
	GGMLIQ3_XXS GGMLType = 18
	GGMLIQ1_S   GGMLType = 19
	GGMLIQ4_NL  GGMLType = 20
	GGMLIQ3_S   GGMLType = 21
	GGMLIQ2_S   GGMLType = 22
	GGMLIQ4_XS  GGMLType = 23
	GGMLI8      GGMLType = 24
	GGMLI16     GGMLType = 25
	GGMLI32     GGMLType = 26
	GGMLI64     GGMLType = 27
	GGMLF64     GGMLType = 28
	GGMLIQ1_M   GGMLType = 29
	GGMLBF16    GGMLType = 30
	GGMLTQ1_0   GGMLType = 34
	GGMLTQ2_0   GGMLType = 35
	GGMLMXFP4   GGMLType = 39
)

type ggmlLayout struct {
	name       string
	block      int // values per block
	blockBytes int
}

var ggmlLayouts = map[GGMLType]ggmlLayout{
	GGMLF32: {"F32", 1, 4}, GGMLF16: {"F16", 1, 2}, GGMLQ4_0: {"Q4_0", 32, 18},
	GGMLQ4_1: {"Q4_1", 32, 20}, GGMLQ5_0: {"Q5_0", 32, 22}, GGMLQ5_1: {"Q5_1", 32, 24},
	GGMLQ8_0: {"Q8_0", 32, 34}, GGMLQ8_1: {"Q8_1", 32, 36}, GGMLQ2_K: {"Q2_K", 256, 84},
	GGMLQ3_K: {"Q3_K", 256, 110}, GGMLQ4_K: {"Q4_K", 256, 144}, GGMLQ5_K: {"Q5_K", 256, 176},
	GGMLQ6_K: {"Q6_K", 256, 210}, GGMLQ8_K: {"Q8_K", 256, 292}, GGMLIQ2_XXS: {"IQ2_XXS", 256, 66},
	GGMLIQ2_XS: {"IQ2_XS", 256, 74}, GGMLIQ3_XXS: {"IQ3_XXS", 256, 98}, GGMLIQ1_S: {"IQ1_S", 256, 50},
	GGMLIQ4_NL: {"IQ4_NL", 32, 18}, GGMLIQ3_S: {"IQ3_S", 256, 110}, GGMLIQ2_S: {"IQ2_S", 256, 82},
	GGMLIQ4_XS: {"IQ4_XS", 256, 136}, GGMLI8: {"I8", 1, 1}, GGMLI16: {"I16", 1, 2},
	GGMLI32: {"I32", 1, 4}, GGMLI64: {"I64", 1, 8}, GGMLF64: {"F64", 1, 8},
	GGMLIQ1_M: {"IQ1_M", 256, 56}, GGMLBF16: {"BF16", 1, 2}, GGMLTQ1_0: {"TQ1_0", 256, 54},
	GGMLTQ2_0: {"TQ2_0", 256, 66}, GGMLMXFP4: {"MXFP4", 32, 17},
}

func (t GGMLType) String() string {
	if l, ok := ggmlLayouts[t]; ok {
		return l.name
	}
	return "ggml type " + strconv.FormatUint(uint64(t), 10)
}

// ggmlDTypes pairs each GGML type the kernels read with its kernels type.
var ggmlDTypes = []struct {
	g GGMLType
	d kernels.DType
}{
	{GGMLF32, kernels.F32}, {GGMLF16, kernels.F16}, {GGMLBF16, kernels.BF16},
	{GGMLQ8_0, kernels.Q8_0}, {GGMLQ4_0, kernels.Q4_0}, {GGMLQ4_1, kernels.Q4_1},
	{GGMLQ5_0, kernels.Q5_0}, {GGMLQ5_1, kernels.Q5_1}, {GGMLQ2_K, kernels.Q2_K},
	{GGMLQ3_K, kernels.Q3_K}, {GGMLQ4_K, kernels.Q4_K}, {GGMLQ5_K, kernels.Q5_K},
	{GGMLQ6_K, kernels.Q6_K}, {GGMLIQ4_NL, kernels.IQ4_NL}, {GGMLIQ4_XS, kernels.IQ4_XS},
}

// DType maps the GGML type to the kernels' type, if the kernels have one.
func (t GGMLType) DType() (kernels.DType, bool) {
	for _, p := range ggmlDTypes {
		if p.g == t {
			return p.d, true
		}
	}
	return 0, false
}

// GGMLTypeOf maps a kernels type to its GGML type.
func GGMLTypeOf(d kernels.DType) (GGMLType, error) {
	for _, p := range ggmlDTypes {
		if p.d == d {
			return p.g, nil
		}
	}
	return 0, fmt.Errorf("no GGML type for %s", d)
}
