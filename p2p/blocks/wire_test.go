package blocks

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

func testCIDs(n int) []cid.Cid {
	out := make([]cid.Cid, n)
	for i := range out {
		out[i] = NewBlock([]byte{byte(i), byte(i >> 8), 'c'}).CID
	}
	return out
}

func reader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func TestRequestRoundTrip(t *testing.T) {
	for _, op := range []byte{opHave, opGet} {
		for _, n := range []int{1, 7, maxRequestCIDs} {
			cids := testCIDs(n)
			buf := appendRequest(nil, op, cids)
			// Two requests back to back: each read takes exactly its own.
			buf = appendRequest(buf, op, cids[:1])
			r := reader(buf)
			req, err := readRequest(r)
			if err != nil {
				t.Fatalf("op %d, %d CIDs: %v", op, n, err)
			}
			if req.op != op || !slices.Equal(req.cids, cids) {
				t.Fatalf("op %d, %d CIDs: got op %d, %d CIDs", op, n, req.op, len(req.cids))
			}
			if req, err = readRequest(r); err != nil || len(req.cids) != 1 || !req.cids[0].Equals(cids[0]) {
				t.Fatalf("second request: %v, %v", req, err)
			}
			if _, err := readRequest(r); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last request: %v, want io.EOF", err)
			}
		}
	}
}

func TestBadRequests(t *testing.T) {
	good := appendRequest(nil, opGet, testCIDs(2))
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cidBytes := testCIDs(1)[0].Bytes()
	cases := []struct {
		name string
		in   []byte
		bad  bool // ErrBadFrame (else a truncated frame: io.ErrUnexpectedEOF)
	}{
		{"unknown op", cat([]byte{9}, uv(1), uv(uint64(len(cidBytes))), cidBytes), true},
		{"zero CIDs", cat([]byte{opGet}, uv(0)), true},
		{"too many CIDs", cat([]byte{opGet}, uv(maxRequestCIDs+1)), true},
		{"huge count", cat([]byte{opHave}, uv(1<<62)), true},
		{"varint overflow", cat([]byte{opGet}, bytes.Repeat([]byte{0xff}, 11)), true},
		{"varint not in shortest form", cat([]byte{opGet}, []byte{0x81, 0x00}), true},
		{"zero-length CID", cat([]byte{opGet}, uv(1), uv(0)), true},
		{"oversized CID", cat([]byte{opGet}, uv(1), uv(maxCIDLen+1), make([]byte, maxCIDLen+1)), true},
		{"garbage CID", cat([]byte{opGet}, uv(1), uv(5), []byte("hello")), true},
		{"CID with trailing bytes", cat([]byte{opGet}, uv(1), uv(uint64(len(cidBytes)+1)), cidBytes, []byte{0}), true},
		{"cut in the count", []byte{opGet, 0x80}, false},
		{"cut in a CID", good[:len(good)-3], false},
		{"cut before a CID", good[:2], false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readRequest(reader(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.bad && !errors.Is(err, ErrBadFrame) {
				t.Fatalf("%v, want ErrBadFrame", err)
			}
			if !tc.bad && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestHaveAnswer(t *testing.T) {
	for _, n := range []int{1, 8, 9, 1000, maxRequestCIDs} {
		has := make([]bool, n)
		for i := range has {
			has[i] = i%3 == 0 || i == n-1
		}
		got := make([]bool, n)
		if err := readHave(reader(appendHave(nil, has)), got); err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if !slices.Equal(got, has) {
			t.Fatalf("%d: bitmap differs", n)
		}
	}
	// Bits past the CIDs asked, a bad status, a short bitmap.
	for _, in := range [][]byte{{statusOK, 0xff}, {1, 0x01}} {
		if err := readHave(reader(in), make([]bool, 3)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%x: %v, want ErrBadFrame", in, err)
		}
	}
	if err := readHave(reader([]byte{statusOK, 0}), make([]bool, 9)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short bitmap: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestEntryHeaders(t *testing.T) {
	var buf []byte
	buf = appendEntryHeader(buf, true, 0)
	buf = appendEntryHeader(buf, false, 0)
	buf = appendEntryHeader(buf, true, MaxBlockSize)
	r := reader(buf)
	for _, want := range []struct {
		present bool
		size    int
	}{{true, 0}, {false, 0}, {true, MaxBlockSize}} {
		present, size, err := readEntryHeader(r)
		if err != nil || present != want.present || size != want.size {
			t.Fatalf("entry: %v %d %v, want %v %d", present, size, err, want.present, want.size)
		}
	}
	// A length past MaxBlockSize is refused before anything is allocated
	// for it; an unknown entry kind is refused.
	for _, in := range [][]byte{
		appendEntryHeader(nil, true, MaxBlockSize+1),
		binary.AppendUvarint([]byte{entryBlock}, 1<<40),
		{7},
	} {
		if _, _, err := readEntryHeader(reader(in)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%x: %v, want ErrBadFrame", in, err)
		}
	}
	if _, _, err := readEntryHeader(reader([]byte{entryBlock})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut entry: %v, want io.ErrUnexpectedEOF", err)
	}
}

// FuzzBlocksRequest feeds arbitrary bytes to the request decoder: it must
// return an error or requests that encode back to the bytes it consumed,
// never panic or allocate past its bounds.
func FuzzBlocksRequest(f *testing.F) {
	f.Add(appendRequest(nil, opGet, testCIDs(3)))
	f.Add(appendRequest(nil, opHave, testCIDs(1)))
	f.Add(appendRequest(appendRequest(nil, opHave, testCIDs(2)), opGet, testCIDs(1)))
	f.Add([]byte{opGet, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{opHave, 1, 4, 1, 0x55, 0, 0})
	f.Add([]byte(strings.Repeat("\x02\x01\x24", 3)))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := reader(in)
		for {
			req, err := readRequest(r)
			if err != nil {
				return
			}
			if len(req.cids) == 0 || len(req.cids) > maxRequestCIDs {
				t.Fatalf("%d CIDs accepted", len(req.cids))
			}
			again, err := readRequest(reader(appendRequest(nil, req.op, req.cids)))
			if err != nil || again.op != req.op || !slices.Equal(again.cids, req.cids) {
				t.Fatalf("request does not survive a round trip: %v", err)
			}
		}
	})
}

// FuzzBlocksAnswer feeds arbitrary bytes to the answer decoders.
func FuzzBlocksAnswer(f *testing.F) {
	f.Add(appendHave(nil, []bool{true, false, true}), 3)
	f.Add(appendEntryHeader([]byte{statusOK}, true, 5), 1)
	f.Add([]byte{statusOK, entryBlock, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1)
	f.Fuzz(func(t *testing.T, in []byte, n int) {
		if n < 1 || n > maxRequestCIDs {
			return
		}
		readHave(reader(in), make([]bool, n))
		r := reader(in)
		if readStatus(r) != nil {
			return
		}
		for range n {
			present, size, err := readEntryHeader(r)
			if err != nil {
				return
			}
			if size < 0 || size > MaxBlockSize {
				t.Fatalf("size %d accepted", size)
			}
			if present {
				if _, err := r.Discard(size); err != nil {
					return
				}
			}
		}
	})
}
