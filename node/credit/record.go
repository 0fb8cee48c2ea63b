package credit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p/wire"
)

// Version is the version byte every ledger record begins with.
const Version = 1

// The record types of a ledger file.
const (
	recServe   = 1
	recRound   = 2
	recSummary = 3
)

// Status says how a receipt's client answered.
type Status uint8

const (
	// Countersigned: the client signed the receipt back.
	Countersigned Status = 1
	// Refused: the client refused to sign (Note says why: it counted
	// fewer tokens, say), or its signature did not verify.
	Refused Status = 2
	// Unanswered: the client could not be reached or did not answer in
	// time (Note says which).
	Unanswered Status = 3
)

func (s Status) String() string {
	switch s {
	case Countersigned:
		return "countersigned"
	case Refused:
		return "refused"
	case Unanswered:
		return "unanswered"
	}
	return fmt.Sprintf("status %d", uint8(s))
}

// Kind is what a summary counts.
type Kind uint8

const (
	// Served: tokens this node served to a client (the counterparty).
	Served Kind = 1
	// Used: tokens a server (the counterparty) served to this node.
	Used Kind = 2
	// Trained: examples this node trained in a job's rounds.
	Trained Kind = 3
)

func (k Kind) String() string {
	switch k {
	case Served:
		return "served"
	case Used:
		return "used"
	case Trained:
		return "trained"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Record is one entry of a ledger: *ServeRecord, *RoundRecord or
// *Summary.
type Record interface {
	recordType() byte
	appendBody(b []byte) []byte
}

// ServeRecord is a receipt for an inference session with its server's
// signature and, when the client countersigned, the client's.
type ServeRecord struct {
	Receipt   Receipt
	ServerSig Sig
	ClientSig Sig // zero unless Status is Countersigned
	Status    Status
	Note      string
}

// RoundRecord is a training round's summary with the signatures of the
// members that signed it (this node's among them).
type RoundRecord struct {
	Time  time.Time // when this node recorded it (not signed)
	Round Round
	Sigs  []MemberSig
}

// MemberSig is the signature of the round's member at index Member.
type MemberSig struct {
	Member int
	Sig    Sig
}

// Summary folds the receipts of one day, kind, counterparty and model
// (or job) that grew older than the ledger keeps whole. It is this
// node's own account: it carries no signature.
type Summary struct {
	Day           int // days since 1970-01-01, UTC
	Kind          Kind
	Peer          peer.ID // the counterparty; none for Trained
	Subject       string  // the model, or the job
	Units         uint64  // tokens, or examples
	Countersigned uint64  // of Units, those the counterparties signed
	Receipts      uint64  // the receipts or rounds folded
	// LastSeq is the highest Seq of the receipts this node issued among
	// those folded (0: none), so that folding never lets a Seq be
	// issued twice.
	LastSeq uint64
}

func (*ServeRecord) recordType() byte { return recServe }
func (*RoundRecord) recordType() byte { return recRound }
func (*Summary) recordType() byte     { return recSummary }

func (r *ServeRecord) appendBody(b []byte) []byte {
	b = r.Receipt.appendBody(b)
	b = r.ServerSig.appendTo(b)
	b = r.ClientSig.appendTo(b)
	b = append(b, byte(r.Status))
	return wire.AppendString(b, r.Note)
}

func (r *RoundRecord) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, uint64(r.Time.UnixMilli()))
	b = r.Round.appendBody(b)
	b = wire.AppendUvarint(b, uint64(len(r.Sigs)))
	for _, s := range r.Sigs {
		b = wire.AppendUvarint(b, uint64(s.Member))
		b = s.Sig.appendTo(b)
	}
	return b
}

func (r *Summary) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, uint64(r.Day))
	b = append(b, byte(r.Kind))
	b = wire.AppendString(b, string(r.Peer))
	b = wire.AppendString(b, r.Subject)
	b = wire.AppendUvarint(b, r.Units)
	b = wire.AppendUvarint(b, r.Countersigned)
	b = wire.AppendUvarint(b, r.Receipts)
	return wire.AppendUvarint(b, r.LastSeq)
}

// EncodeRecord appends rec as it lies in a ledger file: a uvarint length
// L, L bytes (the version, the record type, the body) and the CRC-32C of
// those L bytes, 4 bytes little-endian.
func EncodeRecord(dst []byte, rec Record) []byte {
	dst, start := wire.BeginFrame(dst)
	body := len(dst)
	dst = append(dst, Version, rec.recordType())
	dst = rec.appendBody(dst)
	sum := crc32.Checksum(dst[body:], castagnoli)
	dst = wire.EndFrame(dst, start)
	return binary.LittleEndian.AppendUint32(dst, sum)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DecodeRecord decodes a record's L bytes (version, type, body), its
// checksum already checked. Every error wraps wire.ErrProtocol.
func DecodeRecord(b []byte) (Record, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: a record of %d bytes", wire.ErrProtocol, len(b))
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: record version %d, this node reads %d", wire.ErrProtocol, b[0], Version)
	}
	d := wire.NewDecoder(b[2:])
	var rec Record
	switch b[1] {
	case recServe:
		r := &ServeRecord{}
		r.Receipt.decode(d)
		r.ServerSig = decodeSig(d)
		r.ClientSig = decodeSig(d)
		r.Status = Status(d.Byte("status"))
		r.Note = d.String("note", MaxNote)
		if d.Err() == nil && (r.Status < Countersigned || r.Status > Unanswered) {
			d.Fail("receipt status %d", r.Status)
		}
		rec = r
	case recRound:
		r := &RoundRecord{}
		r.Time = time.UnixMilli(int64(d.Uvarint("time", 1<<53))).UTC()
		r.Round.decode(d)
		n := d.Int("signatures", MaxMembers)
		for range n {
			if d.Err() != nil {
				break
			}
			m := d.Int("member", len(r.Round.Members)-1)
			r.Sigs = append(r.Sigs, MemberSig{Member: m, Sig: decodeSig(d)})
		}
		rec = r
	case recSummary:
		r := &Summary{}
		r.Day = d.Int("day", 1<<24)
		r.Kind = Kind(d.Byte("kind"))
		if p := d.Bytes("peer", MaxPeerID); len(p) > 0 && d.Err() == nil {
			id, err := peer.IDFromBytes(p)
			if err != nil {
				d.Fail("peer: not a peer ID: %v", err)
			}
			r.Peer = id
		}
		r.Subject = d.String("subject", MaxSubject)
		r.Units = d.Uvarint("units", 1<<56)
		r.Countersigned = d.Uvarint("countersigned", r.Units)
		r.Receipts = d.Uvarint("receipts", 1<<56)
		r.LastSeq = d.Uvarint("last seq", 1<<63-1)
		if d.Err() == nil && (r.Kind < Served || r.Kind > Trained) {
			d.Fail("summary kind %d", r.Kind)
		}
		rec = r
	default:
		return nil, fmt.Errorf("%w: record type %d", wire.ErrProtocol, b[1])
	}
	if err := d.Finish(fmt.Sprintf("record of type %d", b[1])); err != nil {
		return nil, err
	}
	return rec, nil
}

// ErrTorn is wrapped when a ledger's last record is cut short or fails
// its checksum: what a crash in the middle of a write leaves.
var ErrTorn = errors.New("torn record at the end of the ledger")

// ErrDamaged is wrapped when a ledger's record, not its last, fails its
// checksum or does not decode.
var ErrDamaged = errors.New("the ledger is damaged")

// countingReader counts the bytes read through it.
type countingReader struct {
	r interface {
		io.Reader
		io.ByteReader
	}
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// readRecords reads every record of a ledger from r, calling fn with
// each and the offset it starts at. It returns the offset where the
// good records end. A record cut short by the end of the file, or one
// whose checksum fails with nothing after it, is a torn last record: the
// error wraps ErrTorn and everything before it was read. Any other fault
// (a bad checksum with records after it, a record that does not decode)
// is an error naming the record's offset.
func readRecords(r interface {
	io.Reader
	io.ByteReader
}, fn func(rec Record, off int64) error) (int64, error) {
	cr := &countingReader{r: r}
	var fr = wire.NewFrameReader(cr)
	for i := 0; ; i++ {
		off := cr.n
		body, err := fr.Next(MaxFrame)
		if err == io.EOF {
			return off, nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return off, fmt.Errorf("credit: record %d at offset %d: %w (cut short)", i, off, ErrTorn)
		}
		if err != nil {
			return off, fmt.Errorf("credit: record %d at offset %d: %w: %w", i, off, ErrDamaged, err)
		}
		var sum [4]byte
		if _, err := io.ReadFull(cr, sum[:]); err != nil {
			return off, fmt.Errorf("credit: record %d at offset %d: %w (its checksum cut short)", i, off, ErrTorn)
		}
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum[:]) {
			if _, err := cr.ReadByte(); err == io.EOF {
				return off, fmt.Errorf("credit: record %d at offset %d: %w (checksum fails)", i, off, ErrTorn)
			}
			return off, fmt.Errorf("credit: record %d at offset %d: checksum fails: %w", i, off, ErrDamaged)
		}
		rec, err := DecodeRecord(body)
		if err != nil {
			return off, fmt.Errorf("credit: record %d at offset %d: %w: %w", i, off, ErrDamaged, err)
		}
		if err := fn(rec, off); err != nil {
			return off, err
		}
	}
}
