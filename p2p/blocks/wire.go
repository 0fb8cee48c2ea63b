package blocks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/p2p/wire"
)

// The frames of BlocksProtocol (docs/protocol.md). A client sends requests;
// the server answers each one, in order, on the same stream.
//
//	request:  op (1 byte) | count (uvarint, 1..maxRequestCIDs) | count × (length (uvarint, 1..maxCIDLen) | CID bytes)
//	HAVE answer: status (1 byte, statusOK) | bitmap (ceil(count/8) bytes; bit i, LSB first, set: the server has CID i)
//	GET answer:  status (1 byte, statusOK) | count × entry
//	entry:    entryBlock (1 byte) | length (uvarint, 0..MaxBlockSize) | data,  or  entryMissing (1 byte)
const (
	opHave byte = 1
	opGet  byte = 2

	statusOK byte = 0

	entryMissing byte = 0
	entryBlock   byte = 1

	// maxRequestCIDs bounds the CIDs of one request.
	maxRequestCIDs = 1024
	// maxCIDLen bounds one CID's encoding (a sha2-256 CIDv1 takes 36 bytes).
	maxCIDLen = 128
)

// ErrBadFrame means a peer sent a frame of BlocksProtocol that breaks its
// rules: an unknown op, a count or length out of bounds, a malformed CID.
var ErrBadFrame = errors.New("blocks: bad frame")

// request is one request of BlocksProtocol.
type request struct {
	op   byte
	cids []cid.Cid
}

// appendRequest appends the encoding of a request for cids to buf. The
// caller keeps len(cids) within 1..maxRequestCIDs.
func appendRequest(buf []byte, op byte, cids []cid.Cid) []byte {
	buf = append(buf, op)
	buf = binary.AppendUvarint(buf, uint64(len(cids)))
	for _, c := range cids {
		buf = binary.AppendUvarint(buf, uint64(c.ByteLen()))
		buf = append(buf, c.KeyString()...)
	}
	return buf
}

// readRequest reads one request. io.EOF before its first byte means the
// peer has no more requests; anything else that breaks the rules is
// ErrBadFrame, or the read error.
func readRequest(r *bufio.Reader) (request, error) {
	op, err := r.ReadByte()
	if err != nil {
		return request{}, err // io.EOF here is a clean end
	}
	if op != opHave && op != opGet {
		return request{}, fmt.Errorf("%w: unknown op %d", ErrBadFrame, op)
	}
	n, err := readBounded(r, 1, maxRequestCIDs, "CID count")
	if err != nil {
		return request{}, err
	}
	req := request{op: op, cids: make([]cid.Cid, 0, n)}
	var raw [maxCIDLen]byte
	for i := range n {
		l, err := readBounded(r, 1, maxCIDLen, "CID length")
		if err != nil {
			return request{}, err
		}
		if _, err := io.ReadFull(r, raw[:l]); err != nil {
			return request{}, fmt.Errorf("blocks: read CID %d of %d: %w", i+1, n, noEOF(err))
		}
		c, err := cid.Cast(raw[:l])
		if err != nil {
			return request{}, fmt.Errorf("%w: CID %d of %d: %w", ErrBadFrame, i+1, n, err)
		}
		req.cids = append(req.cids, c)
	}
	return req, nil
}

// readBounded reads a uvarint (wire.ReadBounded: shortest form, at most
// ten bytes) and checks that it lies in lo..hi. The end of the stream
// inside it, or before it, is io.ErrUnexpectedEOF (a frame is never
// complete without it); bytes that break the rules are ErrBadFrame.
func readBounded(r io.ByteReader, lo, hi uint64, what string) (int, error) {
	v, err := wire.ReadBounded(r, what, lo, hi)
	if errors.Is(err, wire.ErrProtocol) {
		return 0, fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	if err != nil {
		return 0, fmt.Errorf("blocks: read %s: %w", what, noEOF(err))
	}
	return int(v), nil
}

// noEOF turns an io.EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readStatus reads the status byte that starts an answer.
func readStatus(r *bufio.Reader) error {
	st, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("blocks: read answer status: %w", noEOF(err))
	}
	if st != statusOK {
		return fmt.Errorf("%w: answer status %d", ErrBadFrame, st)
	}
	return nil
}

// readHave reads the answer to a HAVE request for n CIDs into has[:n].
func readHave(r *bufio.Reader, has []bool) error {
	if err := readStatus(r); err != nil {
		return err
	}
	var bits [maxRequestCIDs / 8]byte
	m := (len(has) + 7) / 8
	if _, err := io.ReadFull(r, bits[:m]); err != nil {
		return fmt.Errorf("blocks: read HAVE bitmap: %w", noEOF(err))
	}
	for i := range has {
		has[i] = bits[i/8]&(1<<(i%8)) != 0
	}
	// Bits past n are zero: anything else is a confused peer.
	if rest := len(has) % 8; rest != 0 && bits[m-1]>>rest != 0 {
		return fmt.Errorf("%w: HAVE bitmap sets bits past the %d CIDs asked", ErrBadFrame, len(has))
	}
	return nil
}

// appendHave appends the answer to a HAVE request: has[i] for the i-th CID.
func appendHave(buf []byte, has []bool) []byte {
	buf = append(buf, statusOK)
	start := len(buf)
	for range (len(has) + 7) / 8 {
		buf = append(buf, 0)
	}
	for i, h := range has {
		if h {
			buf[start+i/8] |= 1 << (i % 8)
		}
	}
	return buf
}

// readEntryHeader reads the head of one entry of a GET answer: whether the
// block is there and, if so, its length, checked against MaxBlockSize
// before anyone allocates for it.
func readEntryHeader(r *bufio.Reader) (present bool, size int, err error) {
	kind, err := r.ReadByte()
	if err != nil {
		return false, 0, fmt.Errorf("blocks: read entry: %w", noEOF(err))
	}
	switch kind {
	case entryMissing:
		return false, 0, nil
	case entryBlock:
		n, err := readBounded(r, 0, MaxBlockSize, "block length")
		return err == nil, n, err
	default:
		return false, 0, fmt.Errorf("%w: entry kind %d", ErrBadFrame, kind)
	}
}

// appendEntryHeader appends the head of an entry for a block of size
// bytes (present) or for a missing one.
func appendEntryHeader(buf []byte, present bool, size int) []byte {
	if !present {
		return append(buf, entryMissing)
	}
	buf = append(buf, entryBlock)
	return binary.AppendUvarint(buf, uint64(size))
}
