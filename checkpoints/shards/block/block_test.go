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
