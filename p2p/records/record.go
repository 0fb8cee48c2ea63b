package records

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	lprecord "github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
)

// Stamp is what the record machinery reads from and writes into every
// record, whatever its payload: who signed it, its place in the signer's
// sequence, when it stops being valid, and where the signer listens.
type Stamp struct {
	// Peer is the signer: set from the key when a record is sealed or
	// opened, never trusted from the payload.
	Peer peer.ID
	// Seq orders one peer's records of a topic: a higher one replaces a
	// lower one.
	Seq uint64
	// Expires is when the record stops being valid.
	Expires time.Time
	// Addrs are where the signer listens.
	Addrs []ma.Multiaddr
}

// Record is a kind of signed record, implemented by a pointer to its
// struct, *T. The payload encodes itself (lprecord.Record: the envelope's
// domain, payload type and bytes; UnmarshalRecord decodes and checks what
// arrives), and exposes the fields the machinery needs through Topic,
// Leaving and the Stamp.
type Record[T any] interface {
	*T
	lprecord.Record
	// Topic is the topic the record belongs to (for a server record, its
	// model).
	Topic() string
	// Leaving says the record withdraws its signer from the topic.
	Leaving() bool
	// Stamp returns the record's stamp; SetStamp replaces it.
	Stamp() Stamp
	SetStamp(Stamp)
}

// Kind holds the limits of one kind of record and the two things only the
// payload knows: how to check it before it is sealed, and how to turn a
// peer's last record into its withdrawal.
type Kind[T any, P Record[T]] struct {
	// Name names the kind in errors and logs ("server record").
	Name string
	// MaxBytes bounds a sealed record, envelope included.
	MaxBytes int
	// MaxTTL bounds how far ahead a record may expire, so that a record
	// cannot outlive its signer by long. A record expiring more than
	// MaxTTL and a minute (for clock skew) ahead is not valid.
	MaxTTL time.Duration
	// MaxAddrs bounds the addresses a directory puts in a record.
	MaxAddrs int
	// Check, if set, checks a record's payload before it is sealed (what
	// arrives is checked by UnmarshalRecord).
	Check func(P) error
	// Leave turns r, a copy of the peer's last record of topic (the zero
	// record if there is none), into its withdrawal: a record whose
	// Leaving is true.
	Leave func(r P, topic string)
}

// Seal checks r, sets its Peer to key's and signs it into a libp2p signed
// envelope (domain, payload type and payload under the signature).
func (k *Kind[T, P]) Seal(r P, key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", k.Name, err)
	}
	if k.Check != nil {
		if err := k.Check(r); err != nil {
			return nil, fmt.Errorf("sign %s: %w", k.Name, err)
		}
	}
	st := r.Stamp()
	st.Peer = id
	r.SetStamp(st)
	env, err := lprecord.Seal(r, key)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", k.Name, err)
	}
	b, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", k.Name, err)
	}
	if len(b) > k.MaxBytes {
		return nil, fmt.Errorf("sign %s: %d bytes (max %d): too many addresses?", k.Name, len(b), k.MaxBytes)
	}
	return b, nil
}

// Open checks a sealed record (size, envelope, signature, domain and
// payload type, the payload's own checks) and returns it with Peer set to
// its signer. It does not check expiry (see Valid).
func (k *Kind[T, P]) Open(b []byte) (P, error) {
	if len(b) > k.MaxBytes {
		return nil, fmt.Errorf("%s of %d bytes (max %d)", k.Name, len(b), k.MaxBytes)
	}
	r := P(new(T))
	env, err := lprecord.ConsumeTypedEnvelope(b, r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Name, err)
	}
	id, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%s: signer: %w", k.Name, err)
	}
	st := r.Stamp()
	st.Peer = id
	r.SetStamp(st)
	return r, nil
}

// Valid says whether a record with stamp st can be used at now: not
// expired, and not expiring further ahead than MaxTTL and a minute.
func (k *Kind[T, P]) Valid(st Stamp, now time.Time) bool {
	return now.Before(st.Expires) && st.Expires.Sub(now) <= k.MaxTTL+time.Minute
}
