package train

import (
	"crypto/sha256"
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// Peers that train one job together exchange the trained tensors as one
// vector: the tensors' values (or gradients) one after the other, in the
// trainer's fixed order of Params.

// Field picks what of a trained tensor a vector holds.
type Field int

const (
	// Values are the tensors' values (W).
	Values Field = iota
	// Gradients are their gradients (G).
	Gradients
)

func (f Field) of(p *Param) []float32 {
	if f == Gradients {
		return p.G
	}
	return p.W
}

// VectorLen is the number of values of params.
func VectorLen(params []*Param) int {
	n := 0
	for _, p := range params {
		n += len(p.W)
	}
	return n
}

// Flatten appends what f picks of every tensor of params to dst.
func Flatten(params []*Param, f Field, dst []float32) []float32 {
	for _, p := range params {
		dst = append(dst, f.of(p)...)
	}
	return dst
}

// Unflatten copies src, a vector of params' length, into what f picks of
// every tensor.
func Unflatten(params []*Param, f Field, src []float32) error {
	if n := VectorLen(params); len(src) != n {
		return fmt.Errorf("train: a vector of %d values for tensors of %d", len(src), n)
	}
	for _, p := range params {
		n := copy(f.of(p), src)
		src = src[n:]
	}
	return nil
}

// Hash is the SHA-256 of params' values, each tensor's name and length
// then its values as little-endian float32: peers that hold bitwise the
// same parameters have the same hash.
func Hash(params []*Param) [32]byte {
	h := sha256.New()
	for _, p := range params {
		fmt.Fprintf(h, "%s:%d;", p.Name, len(p.W))
		h.Write(kernels.F32Bytes(p.W))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
