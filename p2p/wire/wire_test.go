package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/mycel-net/mycel/kernels"
)

func reader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func TestUvarint(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1 << 35, 1<<64 - 1} {
		b := AppendUvarint(nil, v)
		if len(b) != UvarintLen(v) {
			t.Errorf("%d: %d bytes, UvarintLen says %d", v, len(b), UvarintLen(v))
		}
		got, err := ReadUvarint(reader(b))
		if err != nil || got != v {
			t.Errorf("ReadUvarint(%x) = %d, %v; want %d", b, got, err, v)
		}
		got, n, err := Uvarint(append(b, 0xff))
		if err != nil || got != v || n != len(b) {
			t.Errorf("Uvarint(%x) = %d, %d, %v; want %d, %d", b, got, n, err, v, len(b))
		}
	}
	for name, b := range map[string][]byte{
		"not shortest": {0x82, 0x00},
		"zero padded":  {0x80, 0x00},
		"overflow":     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		"11 bytes":     {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
	} {
		if _, err := ReadUvarint(reader(b)); !errors.Is(err, ErrProtocol) {
			t.Errorf("ReadUvarint %s: %v, want ErrProtocol", name, err)
		}
		if _, _, err := Uvarint(b); !errors.Is(err, ErrProtocol) {
			t.Errorf("Uvarint %s: %v, want ErrProtocol", name, err)
		}
	}
	if _, err := ReadUvarint(reader(nil)); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
	if _, err := ReadUvarint(reader([]byte{0x80})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut varint: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, _, err := Uvarint([]byte{0x80}); !errors.Is(err, ErrProtocol) {
		t.Errorf("cut varint in a frame: %v, want ErrProtocol", err)
	}
}

func TestReadBounded(t *testing.T) {
	b := AppendUvarint(nil, 5)
	if v, err := ReadBounded(reader(b), "n", 1, 5); err != nil || v != 5 {
		t.Fatalf("got %d, %v", v, err)
	}
	for _, r := range [][2]uint64{{6, 9}, {0, 4}} {
		if _, err := ReadBounded(reader(b), "n", r[0], r[1]); !errors.Is(err, ErrProtocol) {
			t.Errorf("5 in %d..%d: %v, want ErrProtocol", r[0], r[1], err)
		}
	}
	if _, err := ReadBounded(reader(nil), "n", 0, 1); !errors.Is(err, io.EOF) {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

func TestFrames(t *testing.T) {
	var stream []byte
	bodies := [][]byte{{}, []byte("x"), bytes.Repeat([]byte{7}, 300)}
	for _, b := range bodies {
		stream = AppendFrame(stream, b)
	}
	// The same frames, built in place.
	var inPlace []byte
	for _, b := range bodies {
		var start int
		inPlace, start = BeginFrame(inPlace)
		inPlace = append(inPlace, b...)
		inPlace = EndFrame(inPlace, start)
	}
	if !bytes.Equal(stream, inPlace) {
		t.Fatalf("BeginFrame/EndFrame gave %x, AppendFrame %x", inPlace, stream)
	}
	f := NewFrameReader(reader(stream))
	for _, want := range bodies {
		got, err := f.Next(1 << 10)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %x, %v; want %x", got, err, want)
		}
	}
	if _, err := f.Next(1 << 10); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	r := reader(stream)
	for _, want := range bodies {
		if got, err := ReadFrame(r, 300); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadFrame: %x, %v; want %x", got, err, want)
		}
	}
	if _, err := ReadFrame(reader(AppendFrame(nil, []byte("abc"))[:3]), 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut body: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrameBoundedBeforeAllocation(t *testing.T) {
	// A length of 2^40 must be refused without reading or allocating.
	b := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x20}
	f := NewFrameReader(reader(b))
	if _, err := f.Next(1 << 20); !errors.Is(err, ErrFrameTooLarge) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if cap(f.buf) != 0 {
		t.Fatalf("allocated %d bytes for a refused frame", cap(f.buf))
	}
	if _, err := ReadFrame(reader(AppendFrame(nil, make([]byte, 11))), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("11 bytes of at most 10: %v, want ErrFrameTooLarge", err)
	}
}

func sampleTensors() []Tensor {
	return []Tensor{
		{DType: kernels.F32, Shape: []int{2, 3}, Data: make([]byte, 24)},
		{DType: kernels.BF16, Shape: []int{1, 4}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{DType: kernels.F16, Shape: []int{1, 1, 1, 2}, Data: []byte{0, 0x3c, 0, 0xbc}},
		{DType: kernels.F32, Shape: []int{200}, Data: make([]byte, 800)},
	}
}

func TestTensorRoundTrip(t *testing.T) {
	for _, want := range sampleTensors() {
		b := AppendTensor(nil, &want)
		if len(b)-len(want.Data) > TensorHeaderMax {
			t.Errorf("%v: header of %d bytes, over TensorHeaderMax", want.Shape, len(b)-len(want.Data))
		}
		d := NewDecoder(b)
		got := d.Tensor()
		if err := d.Finish("tensor"); err != nil {
			t.Fatalf("%v: %v", want.Shape, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decoded %+v, want %+v", got, want)
		}
	}
}

func TestTensorRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":      {},
		"q8 tensor":  {byte(kernels.Q8_0), 1, 1, 0},
		"rank 0":     {byte(kernels.F32), 0},
		"rank 5":     {byte(kernels.F32), 5, 1, 1, 1, 1, 1, 0, 0, 0, 0},
		"zero dim":   {byte(kernels.F32), 2, 0, 1},
		"huge dims":  {byte(kernels.F32), 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0},
		"short data": {byte(kernels.F32), 1, 2, 0, 0, 0, 0},
		"long data":  {byte(kernels.F16), 1, 1, 0, 0, 0},
	} {
		d := NewDecoder(b)
		d.Tensor()
		if err := d.Finish("tensor"); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}

func TestDecoder(t *testing.T) {
	b := AppendUvarint(nil, 300)
	b = AppendString(b, "hello")
	b = append(b, 9)
	d := NewDecoder(b)
	if v := d.Int("n", 300); v != 300 {
		t.Fatalf("int %d", v)
	}
	if s := d.String("s", 5); s != "hello" {
		t.Fatalf("string %q", s)
	}
	if c := d.Byte("c"); c != 9 {
		t.Fatalf("byte %d", c)
	}
	if err := d.Finish("msg"); err != nil {
		t.Fatal(err)
	}
	for name, dec := range map[string]func(*Decoder){
		"over max":    func(d *Decoder) { d.Uvarint("n", 299) },
		"long string": func(d *Decoder) { d.Uvarint("n", 300); d.String("s", 4) },
		"past end":    func(d *Decoder) { d.Uvarint("n", 300); d.Uvarint("len", 10); d.Bytes("b", 10); d.Bytes("b", 10) },
		"left over":   func(d *Decoder) { d.Uvarint("n", 300) },
	} {
		d := NewDecoder(b)
		dec(d)
		if err := d.Finish("msg"); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	if c := NewDecoder(nil).Byte("c"); c != 0 {
		t.Errorf("byte of nothing: %d", c)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader: every frame it
// returns encodes back to the bytes it consumed (so every length was in
// its shortest form), and nothing above the bound is returned or
// allocated.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("ab")), nil))
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x20})
	f.Add([]byte{0x82, 0x00, 0x06})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 10
		br := bytes.NewReader(data)
		fr := NewFrameReader(bufio.NewReader(br))
		consumed := 0
		for {
			b, err := fr.Next(max)
			if err != nil {
				return // a bad frame, or the end of the input
			}
			if len(b) > max || cap(fr.buf) > max {
				t.Fatalf("frame of %d bytes (buffer %d) past the bound %d", len(b), cap(fr.buf), max)
			}
			enc := AppendFrame(nil, b)
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("frame %x does not encode back to the bytes read", b)
			}
			consumed += len(enc)
		}
	})
}

// FuzzDecodeTensor feeds arbitrary bytes to the tensor decoder: whatever
// decodes encodes back to the same bytes, with the element count matching
// the data.
func FuzzDecodeTensor(f *testing.F) {
	for _, tt := range sampleTensors() {
		f.Add(AppendTensor(nil, &tt))
	}
	f.Add([]byte{byte(kernels.F32), 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(data)
		tt := d.Tensor()
		if d.Finish("tensor") != nil {
			return
		}
		n := ElemSize(tt.DType)
		for _, dim := range tt.Shape {
			n *= dim
		}
		if n != len(tt.Data) {
			t.Fatalf("shape %v of %s with %d bytes", tt.Shape, tt.DType, len(tt.Data))
		}
		if enc := AppendTensor(nil, &tt); !bytes.Equal(enc, data) {
			t.Fatalf("tensor %v re-encodes to %x, read from %x", tt.Shape, enc, data)
		}
	})
}

// bytesStream is a Stream over fixed bytes (writes dropped).
type bytesStream struct{ *bytes.Reader }

func (bytesStream) Write(b []byte) (int, error) { return len(b), nil }
func (bytesStream) Close() error                { return nil }
func (bytesStream) Reset() error                { return nil }

// ReadFrameInto fills the caller's buffer with a frame of exactly its
// length, refuses a longer one before reading its body and a shorter one
// after, and tells a frame cut short from a clean end of the stream.
func TestReadFrameInto(t *testing.T) {
	var in []byte
	in = AppendFrame(in, []byte("abcd"))
	in = AppendFrame(in, []byte("xy"))
	in = AppendFrame(in, []byte("toolong"))
	c := NewConn(bytesStream{bytes.NewReader(in)}, 0)
	b := make([]byte, 4)
	if n, err := c.ReadFrameInto(b, time.Second); err != nil || n != 5 || string(b) != "abcd" {
		t.Fatalf("first frame: %q, %d bytes on the wire, %v", b, n, err)
	}
	if n, err := c.ReadFrameInto(b, time.Second); !errors.Is(err, ErrProtocol) || n != 3 {
		t.Fatalf("a short frame: %d bytes, %v", n, err)
	}
	if _, err := c.ReadFrameInto(b, time.Second); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a long frame: %v", err)
	}
	if _, err := c.ReadFrameInto(b, time.Second); err == nil {
		t.Fatal("read past a refused frame's unread body")
	}
	c = NewConn(bytesStream{bytes.NewReader(nil)}, 0)
	if _, err := c.ReadFrameInto(b, time.Second); err != io.EOF {
		t.Fatalf("at the end of the stream: %v", err)
	}
	c = NewConn(bytesStream{bytes.NewReader(AppendFrame(nil, []byte("abcd"))[:3])}, 0)
	if _, err := c.ReadFrameInto(b, time.Second); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a frame cut short: %v", err)
	}
}
