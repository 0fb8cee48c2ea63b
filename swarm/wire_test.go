package swarm

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

func sampleMessages() []Message {
	return []Message{
		&Open{Model: "stories260K", First: 2, Last: 4, MaxPositions: 512, DType: kernels.F16},
		&OK{Session: 7, First: 2, Last: 4, MaxPositions: 512, Dim: 64, MaxStep: 256, IdleMillis: 120000},
		&Error{Code: CodeBusy, Step: 3, Message: "out of memory"},
		&Error{Code: CodeBadMessage},
		&Step{ID: 1, Start: 0, N: 2, Tensor: Tensor{DType: kernels.F32, Shape: []int{2, 3}, Data: make([]byte, 24)}},
		&Step{ID: 1 << 40, Start: 300, N: 1, Tensor: Tensor{DType: kernels.BF16, Shape: []int{1, 4}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}}},
		&Result{ID: 9, Tensor: Tensor{DType: kernels.F16, Shape: []int{1, 2}, Data: []byte{0, 0x3c, 0, 0xbc}}},
		&Close{},
		&Experts{ID: 4, Model: "m", Layer: 1, K: 2, Pick: []int32{3, -1, 0, 7}, Weight: []float32{0.75, 0, 0.5, 0.25},
			Tensor: Tensor{DType: kernels.F32, Shape: []int{2, 1}, Data: make([]byte, 8)}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	var stream []byte
	for _, m := range sampleMessages() {
		stream = AppendMessage(stream, m)
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	for _, want := range sampleMessages() {
		got, err := ReadMessage(r, 1<<10)
		if err != nil {
			t.Fatalf("%s: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %+v, want %+v", want.Type(), got, want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	frame := func(m Message) []byte {
		b := AppendMessage(nil, m)
		_, n := uvarintFrom(b)
		return b[n:]
	}
	step := frame(&Step{ID: 1, N: 1, Tensor: Tensor{DType: kernels.F32, Shape: []int{1, 2}, Data: make([]byte, 8)}})
	experts := func(k int, pick []int32, wt []float32, rows int) []byte {
		return frame(&Experts{ID: 1, Model: "m", K: k, Pick: pick, Weight: wt,
			Tensor: Tensor{DType: kernels.F32, Shape: []int{rows, 1}, Data: make([]byte, 4*rows)}})
	}
	for name, body := range map[string][]byte{
		"empty":                         {},
		"experts: slots for other rows": experts(1, []int32{0, 1}, []float32{1, 1}, 1),
		"experts: no slots a row":       experts(0, nil, nil, 1),
		"experts: NaN weight":           experts(1, []int32{0}, []float32{float32(math.NaN())}, 1),
		"experts: slots past the frame": {byte(MsgExperts), 1, 1, 'm', 0, 1, 0xff, 0xff, 0x03},
		"unknown type":                  {0x7f, 1, 2},
		"truncated step":                step[:len(step)-1],
		"trailing bytes":                append(bytes.Clone(step), 0),
		"q8 tensor":                     {byte(MsgResult), 1, byte(kernels.Q8_0), 1, 1, 0},
		"rank 0":                        {byte(MsgResult), 1, byte(kernels.F32), 0},
		"rank 5":                        {byte(MsgResult), 1, byte(kernels.F32), 5, 1, 1, 1, 1, 1, 0, 0, 0, 0},
		"zero dim":                      {byte(MsgResult), 1, byte(kernels.F32), 2, 0, 1},
		"huge dims":                     {byte(MsgResult), 1, byte(kernels.F32), 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0},
		"overlong varint":               {byte(MsgClose + 0), 0x80, 0x00},
		"long model id":                 append([]byte{byte(MsgOpen), 0x81, 0x02}, make([]byte, 257)...),
		"string past end":               {byte(MsgError), 1, 0, 5, 'a'},
	} {
		if _, err := DecodeMessage(body); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	if _, err := DecodeMessage([]byte{0x7f}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type: %v, want ErrUnknownType", err)
	}
}

func uvarintFrom(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func TestFrameBoundedBeforeAllocation(t *testing.T) {
	// A length of 2^40 must be refused without reading or allocating
	// (p2p/wire checks the allocation).
	b := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x20}
	if _, err := ReadMessage(bufio.NewReader(bytes.NewReader(b)), 1<<20); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	for name, b := range map[string][]byte{
		"not shortest": {0x82, 0x00, 0x06},
		"11 bytes":     {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"overflow":     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		"empty":        {0x00},
	} {
		if _, err := ReadMessage(bufio.NewReader(bytes.NewReader(b)), 1<<20); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}

// FuzzDecodeMessage feeds arbitrary bytes to the frame reader and the
// decoder. Whatever decodes must encode back to a frame that decodes to
// the same message, and nothing may panic or allocate past the bound.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(AppendMessage(nil, m))
	}
	f.Add([]byte{0x03, 0x7f, 0x00, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 12
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			m, err := ReadMessage(r, max)
			if errors.Is(err, ErrProtocol) {
				continue // a bad frame; every read consumes input
			}
			if err != nil {
				if r.Buffered() > 0 {
					t.Fatalf("non-protocol error with input left: %v", err)
				}
				return
			}
			enc := AppendMessage(nil, m)
			_, n := uvarintFrom(enc)
			back, err := DecodeMessage(enc[n:])
			if err != nil {
				t.Fatalf("re-encoded %s does not decode: %v", m.Type(), err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Fatalf("round trip changed %+v into %+v", m, back)
			}
		}
	})
}

// The bytes of a few messages, written out by hand from docs/protocol.md.
func TestMessageBytes(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		want []byte
	}{
		{&Open{Model: "ab", First: 1, Last: 3, MaxPositions: 300, DType: kernels.F16},
			[]byte{9, 0x01, 2, 'a', 'b', 1, 3, 0xac, 0x02, 1}},
		{&Result{ID: 5, Tensor: Tensor{DType: kernels.F32, Shape: []int{1, 2}, Data: []byte{0, 1, 2, 3, 4, 5, 6, 7}}},
			[]byte{14, 0x05, 5, 0, 2, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7}},
		{&Error{Code: CodeBusy, Message: "x"}, []byte{5, 0x03, 4, 0, 1, 'x'}},
		{&Close{}, []byte{1, 0x06}},
	} {
		if got := AppendMessage(nil, tc.m); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.m.Type(), got, tc.want)
		}
	}
}

// FuzzExpertsRequest: any frame body that decodes as EXPERTS is
// bounded (its slots are K per row of its tensor) and either refused by
// a server's check or safe to run: every slot an expert the server holds.
func FuzzExpertsRequest(f *testing.F) {
	for _, m := range sampleMessages() {
		if x, ok := m.(*Experts); ok {
			f.Add(AppendMessage(nil, x)[1:])
		}
	}
	f.Add([]byte{byte(MsgExperts), 1, 1, 'm', 0, 1, 1, 1, 0, 0, 0x80, 0x3f, byte(kernels.F32), 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0})
	x0 := &model.Experts{Gate: make([]*kernels.Matrix, 4), Up: make([]*kernels.Matrix, 4), Down: make([]*kernels.Matrix, 4)}
	m, err := kernels.NewMatrix(kernels.F32, 1, 2, make([]byte, 8))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range []int{0, 1} {
		x0.Gate[e], x0.Up[e], x0.Down[e] = m, m, m
	}
	w := &model.Weights{Config: model.Config{Dim: 2, Experts: 4, ExpertsUsed: 2}, Layers: []*model.Layer{{Experts: x0}}}
	set := model.NewExpertSet(0, 1)
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := DecodeMessage(body)
		if err != nil {
			return
		}
		x, ok := msg.(*Experts)
		if !ok {
			return
		}
		if len(x.Pick) != len(x.Weight) || len(x.Pick) != x.Tensor.Shape[0]*x.K || x.Tensor.Shape[0] > MaxExpertRows {
			t.Fatalf("decoded %d picks, %d weights for %v rows of %d", len(x.Pick), len(x.Weight), x.Tensor.Shape, x.K)
		}
		if _, err := checkExperts(x, "m", Span{0, 1}, set, w); err != nil {
			return
		}
		for _, e := range x.Pick {
			if e >= 0 && !set.Has(int(e)) {
				t.Fatalf("the check passed expert %d, not held", e)
			}
		}
		if x.Tensor.Shape[1] != 2 || x.K > 2 {
			t.Fatalf("the check passed rows %v of %d slots", x.Tensor.Shape, x.K)
		}
	})
}
