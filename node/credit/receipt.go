package credit

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p/wire"
)

// Bounds of the fields of receipts, records and messages.
const (
	MaxPeerID  = 128  // bytes of a peer ID
	MaxSubject = 256  // bytes of a model id or a job id
	MaxKey     = 1024 // bytes of a marshalled public key
	MaxSig     = 1024 // bytes of a signature
	MaxNote    = 512  // bytes of a refusal's or a failure's reason
	MaxMembers = 256  // members of a training round
	// MaxFrame bounds every frame of /mycel/credit/1 and every record
	// of a ledger file.
	MaxFrame = 64 << 10
)

// The domains signed before a receipt's or a round's bytes, so that a
// signature over one cannot pass for the other or for anything else the
// key signs.
const (
	serveDomain = "mycel/credit/serve/1\x00"
	roundDomain = "mycel/credit/round/1\x00"
)

var (
	// ErrWrongKey is wrapped when a signature's public key is not the
	// key of the peer that should have signed.
	ErrWrongKey = errors.New("signed with the wrong key")
	// ErrBadSignature is wrapped when a signature does not verify: the
	// bytes signed were altered, or the signature forged.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrNotSigned is wrapped when a signature is missing.
	ErrNotSigned = errors.New("not signed")
)

// Receipt is a server's account of one inference session it served: the
// positions (prompt and generated tokens) it ran through its span of the
// model for the client. The server signs it; the client countersigns it.
type Receipt struct {
	// Seq numbers the receipts the server issued, from 1.
	Seq            uint64
	Server, Client peer.ID
	Model          string
	First, Last    int // the span of layers
	Session        uint64
	// Tokens is the positions of every RESULT the server sent in the
	// session: each prompt and generated token once, and again for each
	// step run twice (a retry, a replay after a failover elsewhere).
	Tokens     uint64
	Start, End time.Time // millisecond precision on the wire
}

// appendBody appends the receipt's fields in the order signed.
func (r *Receipt) appendBody(b []byte) []byte {
	b = wire.AppendUvarint(b, r.Seq)
	b = wire.AppendString(b, string(r.Server))
	b = wire.AppendString(b, string(r.Client))
	b = wire.AppendString(b, r.Model)
	b = wire.AppendUvarint(b, uint64(r.First))
	b = wire.AppendUvarint(b, uint64(r.Last))
	b = wire.AppendUvarint(b, r.Session)
	b = wire.AppendUvarint(b, r.Tokens)
	b = wire.AppendUvarint(b, uint64(r.Start.UnixMilli()))
	return wire.AppendUvarint(b, uint64(r.End.UnixMilli()))
}

func (r *Receipt) decode(d *wire.Decoder) {
	r.Seq = d.Uvarint("receipt seq", 1<<63-1)
	r.Server = decodePeer(d, "server")
	r.Client = decodePeer(d, "client")
	r.Model = d.String("model", MaxSubject)
	r.First = d.Int("first layer", 1<<20)
	r.Last = d.Int("last layer", 1<<20)
	r.Session = d.Uvarint("session", 1<<64-1)
	r.Tokens = d.Uvarint("tokens", 1<<48)
	r.Start = time.UnixMilli(int64(d.Uvarint("start", 1<<53))).UTC()
	r.End = time.UnixMilli(int64(d.Uvarint("end", 1<<53))).UTC()
	if d.Err() == nil && (r.First >= r.Last || r.End.Before(r.Start) || r.Seq == 0) {
		d.Fail("receipt %d: span [%d,%d) or times %s..%s out of order", r.Seq, r.First, r.Last, r.Start, r.End)
	}
}

// Signed is the bytes a signature of the receipt covers.
func (r *Receipt) Signed() []byte { return r.appendBody([]byte(serveDomain)) }

// Round is a training round's summary as every member sees it: who took
// part and each one's share, in examples (sequences trained), and the
// hash of the parameters the round ended with. Every member signs the
// same bytes.
type Round struct {
	Job     string
	Round   uint64
	State   [32]byte
	Members []peer.ID
	Shares  []uint64 // examples per member, in member order; 0 for a member dropped
}

func (r *Round) appendBody(b []byte) []byte {
	b = wire.AppendString(b, r.Job)
	b = wire.AppendUvarint(b, r.Round)
	b = append(b, r.State[:]...)
	b = wire.AppendUvarint(b, uint64(len(r.Members)))
	for i, m := range r.Members {
		b = wire.AppendString(b, string(m))
		b = wire.AppendUvarint(b, r.Shares[i])
	}
	return b
}

func (r *Round) decode(d *wire.Decoder) {
	r.Job = d.String("job", MaxSubject)
	r.Round = d.Uvarint("round", 1<<48)
	for i := range r.State {
		r.State[i] = d.Byte("state")
	}
	n := d.Int("members", MaxMembers)
	if n == 0 {
		d.Fail("a round of no member")
	}
	if d.Err() != nil {
		return
	}
	r.Members, r.Shares = make([]peer.ID, 0, n), make([]uint64, 0, n)
	for range n {
		r.Members = append(r.Members, decodePeer(d, "member"))
		r.Shares = append(r.Shares, d.Uvarint("share", 1<<48))
		if d.Err() != nil {
			return
		}
	}
}

// Signed is the bytes a member's signature of the round covers.
func (r *Round) Signed() []byte { return r.appendBody([]byte(roundDomain)) }

// index is m's place among the members, -1 if it is not one.
func (r *Round) index(m peer.ID) int {
	for i, p := range r.Members {
		if p == m {
			return i
		}
	}
	return -1
}

// check refuses a round whose members and shares do not line up.
func (r *Round) check() error {
	switch {
	case len(r.Members) == 0 || len(r.Members) > MaxMembers:
		return fmt.Errorf("credit: round %d of job %s: %d members", r.Round, r.Job, len(r.Members))
	case len(r.Shares) != len(r.Members):
		return fmt.Errorf("credit: round %d of job %s: %d shares for %d members", r.Round, r.Job, len(r.Shares), len(r.Members))
	case r.Job == "" || len(r.Job) > MaxSubject:
		return fmt.Errorf("credit: round %d: job id of %d bytes", r.Round, len(r.Job))
	}
	return nil
}

// Sig is a signature with the public key that made it (marshalled as
// libp2p does), so that any key type can be checked against a peer ID.
type Sig struct {
	Key, Sig []byte
}

// IsZero reports whether there is no signature.
func (s Sig) IsZero() bool { return len(s.Sig) == 0 }

func (s Sig) appendTo(b []byte) []byte {
	b = wire.AppendFrame(b, s.Key)
	return wire.AppendFrame(b, s.Sig)
}

func decodeSig(d *wire.Decoder) Sig {
	return Sig{Key: clone(d.Bytes("public key", MaxKey)), Sig: clone(d.Bytes("signature", MaxSig))}
}

// Sign signs msg (a Receipt's or a Round's Signed bytes) with k.
func Sign(k crypto.PrivKey, msg []byte) (Sig, error) {
	key, err := crypto.MarshalPublicKey(k.GetPublic())
	if err != nil {
		return Sig{}, fmt.Errorf("credit: public key: %w", err)
	}
	sig, err := k.Sign(msg)
	if err != nil {
		return Sig{}, fmt.Errorf("credit: sign: %w", err)
	}
	return Sig{Key: key, Sig: sig}, nil
}

// verify checks that s is id's signature of msg; what names the signer
// in errors.
func (s Sig) verify(id peer.ID, msg []byte, what string) error {
	if s.IsZero() {
		return fmt.Errorf("%s %s: %w", what, id, ErrNotSigned)
	}
	pub, err := crypto.UnmarshalPublicKey(s.Key)
	if err != nil {
		return fmt.Errorf("%s %s: %w: the key does not parse: %v", what, id, ErrWrongKey, err)
	}
	if !id.MatchesPublicKey(pub) {
		got, _ := peer.IDFromPublicKey(pub)
		return fmt.Errorf("%s %s: %w: the key is %s's", what, id, ErrWrongKey, got)
	}
	ok, err := pub.Verify(msg, s.Sig)
	if err != nil || !ok {
		return fmt.Errorf("%s %s: %w (the bytes were altered or the signature forged)", what, id, ErrBadSignature)
	}
	return nil
}

func decodePeer(d *wire.Decoder, what string) peer.ID {
	b := d.Bytes(what, MaxPeerID)
	if d.Err() != nil {
		return ""
	}
	id, err := peer.IDFromBytes(b)
	if err != nil {
		d.Fail("%s: not a peer ID: %v", what, err)
		return ""
	}
	return id
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
