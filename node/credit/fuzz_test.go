package credit

import (
	"bytes"
	"testing"
)

// FuzzMessage: any bytes decode to a message or an error; a message
// decoded encodes to the same body.
func FuzzMessage(f *testing.F) {
	a, b := newKey(f), newKey(f)
	rec := countersigned(f, a, b, 1, 57, t0)
	round := signedRound(f, "job", 2, a, b)
	for _, m := range []Message{
		&ReceiptMsg{Receipt: rec.Receipt, Sig: rec.ServerSig}, &Countersign{Sig: rec.ClientSig},
		&Refuse{Counted: 3, Reason: "fewer"}, &RoundSig{Round: round.Round, Member: 1, Sig: round.Sigs[1].Sig},
		&Ack{}, &ErrorMsg{Message: "no"},
	} {
		frame := AppendMessage(nil, m)
		f.Add(frame[1:]) // the body, after a one-byte length
	}
	f.Add([]byte{})
	f.Add([]byte{0x09})
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeMessage(body)
		if err != nil {
			return
		}
		frame := AppendMessage(nil, m)
		d, err := DecodeMessage(frame[len(frame)-len(body):])
		if err != nil || !bytes.Equal(AppendMessage(nil, d), frame) {
			t.Fatalf("%s does not decode to itself: %v", m.Type(), err)
		}
	})
}

// FuzzRecord: any bytes read as a ledger give records or an error, never
// a panic; what reads encodes to the bytes it came from.
func FuzzRecord(f *testing.F) {
	a, b := newKey(f), newKey(f)
	f.Add(encode(countersigned(f, a, b, 1, 57, t0)))
	f.Add(encode(signedRound(f, "job", 2, a, b)))
	f.Add(encode(&Summary{Day: 20000, Kind: Trained, Subject: "job", Units: 8, Countersigned: 8, Receipts: 2},
		&Summary{Day: 1, Kind: Served, Peer: b.id, Subject: "m", Units: 1, Receipts: 1}))
	f.Add([]byte{0x05, 0x01})
	f.Fuzz(func(t *testing.T, file []byte) {
		var got []Record
		end, _ := readRecords(bytes.NewReader(file), func(r Record, _ int64) error { got = append(got, r); return nil })
		if end > int64(len(file)) {
			t.Fatalf("good records end at %d of %d bytes", end, len(file))
		}
		if !bytes.Equal(encode(got...), file[:end]) {
			t.Fatal("the records read do not encode to the bytes they came from")
		}
		for _, r := range got {
			_ = VerifyRecord(r)
		}
	})
}
