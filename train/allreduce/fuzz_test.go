package allreduce

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p/wire"
)

func seedMessages() []message {
	h := [32]byte{1, 2, 3, 31: 9}
	return []message{
		&contribMsg{Hash: h, ID: "job/7", Deadline: 1700000000000, Sender: 3, Part: 1, Weight: 2.5, SumSquares: 1e9},
		&pieceMsg{Piece: 12},
		&partMsg{Hash: h, Part: 2, Reducer: 3, Weight: 6, Included: []byte{0x0b},
			Excluded: []exclusion{{Member: 2, Kind: exclRejected, Reason: "non-finite value at element 4"}}},
		&partMsg{Hash: h, Part: 0, Reducer: 0, Included: make([]byte, 32)},
		&errorMsg{Code: codeMismatch, Text: "round parameters differ"},
		&readyMsg{},
		&requestMsg{Type: msgFetch, Hash: h, ID: "r", Deadline: 5, Sender: 255, Part: 0},
		&requestMsg{Type: msgRecover, Hash: h, ID: "r", Deadline: 5, Sender: 1, Part: 255},
	}
}

// Every header that decodes encodes back to the same bytes; a PART header
// is then checked against a round; nothing panics or allocates beyond the
// frame's bounds.
func FuzzMessage(f *testing.F) {
	for _, m := range seedMessages() {
		f.Add(m.appendBody(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{0x07})
	members := []peer.ID{"a", "b", "c"}
	rd := &round{members: members, hash: [32]byte{1, 2, 3, 31: 9}}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > MaxHeader {
			return
		}
		m, err := decodeMessage(b)
		if err != nil {
			if !errors.Is(err, wire.ErrProtocol) {
				t.Fatalf("error not wrapping ErrProtocol: %v", err)
			}
			return
		}
		if again := m.appendBody(nil); !bytes.Equal(again, b) {
			t.Fatalf("%s re-encodes to %x, was %x", m.kind(), again, b)
		}
		if p, ok := m.(*partMsg); ok {
			_ = rd.checkPart(p, p.Part)
		}
	})
}

// Every message decodes to what was encoded, and in a frame of its own
// stays under MaxHeader at its largest.
func TestMessageRoundTrip(t *testing.T) {
	for _, m := range seedMessages() {
		frame := appendMessage(nil, m)
		body, err := wire.ReadFrame(bytes.NewReader(frame), MaxHeader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMessage(body)
		if err != nil {
			t.Fatalf("%s: %v", m.kind(), err)
		}
		if !bytes.Equal(got.appendBody(nil), m.appendBody(nil)) {
			t.Fatalf("%s: %+v became %+v", m.kind(), m, got)
		}
	}
	big := &partMsg{Included: make([]byte, (MaxMembers+7)/8)}
	for j := range MaxMembers {
		big.Excluded = append(big.Excluded, exclusion{Member: j, Kind: exclRejected, Reason: string(bytes.Repeat([]byte("x"), MaxReason))})
	}
	if n := len(big.appendBody(nil)); n > MaxHeader {
		t.Fatalf("the largest PART header takes %d bytes, over %d", n, MaxHeader)
	}
	if _, err := decodeMessage([]byte{byte(msgPart)}); err == nil {
		t.Fatal("a truncated PART decoded")
	}
}

// Any bytes of the right length decode; any other length is refused.
func FuzzDequantize(f *testing.F) {
	f.Add(uint8(0), 3, Quantize(F32, []float32{1, 2, 3}))
	f.Add(uint8(1), 70, Quantize(Int8, make([]float32, 70)))
	f.Add(uint8(2), 65, Quantize(Q4, make([]float32, 65)))
	f.Fuzz(func(t *testing.T, e uint8, n int, b []byte) {
		if n < 0 || n > 1<<12 {
			return
		}
		enc := Encoding(e % 3)
		dst := make([]float32, n)
		err := Dequantize(enc, b, dst)
		if (err == nil) != (len(b) == EncodedLen(enc, n)) {
			t.Fatalf("%s n=%d, %d bytes: %v", enc, n, len(b), err)
		}
	})
}

// byteStream is a stream whose reads come from a fixed slice.
type byteStream struct{ r *bytes.Reader }

func (s byteStream) Read(b []byte) (int, error) { return s.r.Read(b) }
func (byteStream) Write(b []byte) (int, error)  { return len(b), nil }
func (byteStream) Close() error                 { return nil }
func (byteStream) Reset() error                 { return nil }

// A reducer's answer on a contribution's stream (PIECEs, then PART and
// its empty data frame) is taken only whole: every piece in order (from
// piece 0 again at most), then a PART for the part asked; anything else
// is refused with an error, never a panic or a read past a frame's
// bounds.
func FuzzPieces(f *testing.F) {
	hash := [32]byte{7, 31: 1}
	const size = 100 // one piece of 100 F32 values
	frame := func(b []byte, m message, data []byte) []byte {
		b = appendMessage(b, m)
		if data != nil {
			b = wire.AppendFrame(b, data)
		}
		return b
	}
	part := &partMsg{Hash: hash, Part: 1, Reducer: 1, Weight: 3, Included: []byte{3}}
	good := frame(nil, &pieceMsg{Piece: 0}, make([]byte, 4*size))
	good = frame(good, part, []byte{})
	f.Add(good)
	again := frame(frame(nil, &pieceMsg{Piece: 0}, make([]byte, 4*size)), &pieceMsg{Piece: 0}, make([]byte, 4*size))
	f.Add(frame(again, part, []byte{}))
	f.Add(frame(nil, part, []byte{}))
	f.Add(frame(nil, &pieceMsg{Piece: 1}, make([]byte, 4*size)))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := &round{
			s: &Service{}, members: []peer.ID{"a", "b"}, hash: hash, size: []int{0, size}, enc: F32,
			parts:    []*partState{{}, {}},
			deadline: time.Now().Add(time.Minute), recoverAt: time.Now().Add(time.Minute),
		}
		x := &stream{c: wire.NewConn(byteStream{bytes.NewReader(b)}, 0), rd: rd, stop: func() bool { return true }}
		p, err := rd.recvPieces(x, 1)
		if err != nil {
			return
		}
		if len(p.Data) != 4*size || p.Part != 1 || p.Reducer != 1 {
			t.Fatalf("took part %d by %d with %d bytes", p.Part, p.Reducer, len(p.Data))
		}
	})
}
