package block

import (
	"errors"
	"testing"
)

func TestNewVerify(t *testing.T) {
	b := New([]byte("hello"))
	if want, _ := Prefix.Sum([]byte("hello")); !b.CID.Equals(want) || b.CID.Prefix().Codec != Prefix.Codec {
		t.Fatalf("CID %v, want %v", b.CID, want)
	}
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	b.Data = []byte("hellp")
	if err := b.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("changed data: %v, want ErrCorrupt", err)
	}
	if err := (Block{Data: []byte("x")}).Verify(); err == nil {
		t.Fatal("a block without CID verified")
	}
}

// A block made by New is not hashed again by Verify, but data put in its
// place, or a copy of the block with other data, is.
func TestVerifyAfterNew(t *testing.T) {
	data := []byte("some bytes")
	b := New(data)
	if n := testing.AllocsPerRun(10, func() { _ = b.Verify() }); n != 0 {
		t.Errorf("Verify of a fresh block allocated %v times: it hashed again", n)
	}
	c := b
	c.Data = append([]byte(nil), data...)
	c.Data[0] ^= 1
	if err := c.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a copy with other bytes: %v, want ErrCorrupt", err)
	}
	c.Data = data[:3]
	if err := c.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a copy with fewer bytes: %v, want ErrCorrupt", err)
	}
}
