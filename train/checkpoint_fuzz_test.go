package train

import (
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"testing"
)

// rawCheckpoint lays out a checkpoint by hand: h's header, then for each
// of its tensors Len values of W, m and v (W and the outer momentum with
// h.Outer; the residual too with h.Residual), then the CRC.
func rawCheckpoint(h CheckpointHeader) []byte {
	hdr, _ := json.Marshal(h)
	b := append([]byte(checkpointMagic), make([]byte, 8)...)
	binary.LittleEndian.PutUint32(b[8:], checkpointVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(hdr)))
	b = append(b, hdr...)
	for _, p := range h.Params {
		for i := range h.arrays() * p.Len {
			b = binary.LittleEndian.AppendUint32(b, uint32(i))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// ReadCheckpoint and CheckCheckpoint never panic, agree on what they
// accept, and what they accept has tensors of the lengths its header
// gives.
func FuzzCheckpoint(f *testing.F) {
	f.Add(rawCheckpoint(CheckpointHeader{Job: "x", Step: 3, Params: []ParamHeader{{Name: "a", Len: 2}, {Name: "b", Len: 1}}}))
	f.Add(rawCheckpoint(CheckpointHeader{Job: "x"}))
	f.Add(rawCheckpoint(CheckpointHeader{Job: "x", Step: 4, Outer: &OuterHeader{LR: 0.7, Momentum: 0.9}, Params: []ParamHeader{{Name: "a", Len: 3}}}))
	f.Add(rawCheckpoint(CheckpointHeader{Job: "x", Step: 6, AdamStep: 2, Residual: true, Params: []ParamHeader{{Name: "a", Len: 2}}}))
	f.Add(rawCheckpoint(CheckpointHeader{Job: "x", Residual: true, Outer: &OuterHeader{LR: 0.7}, Params: []ParamHeader{{Name: "a", Len: 1}}}))
	f.Add([]byte(checkpointMagic + "\x01\x00\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, tensors, err := ReadCheckpoint(b)
		h2, err2 := CheckCheckpoint(b)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("ReadCheckpoint: %v; CheckCheckpoint: %v", err, err2)
		}
		if err != nil {
			return
		}
		if h.Step != h2.Step || len(tensors) != len(h.Params) {
			t.Fatalf("header %+v, %d tensors", h, len(tensors))
		}
		for i, p := range h.Params {
			for _, s := range tensors[i][:h.arrays()] {
				if len(s) != p.Len {
					t.Fatalf("tensor %s: %d values, header says %d", p.Name, len(s), p.Len)
				}
			}
		}
	})
}
