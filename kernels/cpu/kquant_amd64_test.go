//go:build amd64 && !noasm

package cpu

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/mycel-net/mycel/kernels"
)

// TestKQuantDecodeAVX2 checks the vector decoders against
// kernels.Decode bit for bit, on random blocks with finite scales of many
// magnitudes (subnormal to large) and on blocks of all-ones bytes.
func TestKQuantDecodeAVX2(t *testing.T) {
	if !(cpu.X86.HasAVX2 && cpu.X86.HasFMA) {
		t.Skip("no AVX2 and FMA")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		dt  kernels.DType
		dec func(dst []float32, row []byte)
	}{{kernels.Q4_1, decodeQ4_1AVX2}, {kernels.Q5_0, decodeQ5_0AVX2}, {kernels.Q5_1, decodeQ5_1AVX2},
		{kernels.Q2_K, decodeQ2KAVX2}, {kernels.Q3_K, decodeQ3KAVX2}, {kernels.Q4_K, decodeQ4KAVX2}, {kernels.Q5_K, decodeQ5KAVX2}, {kernels.Q6_K, decodeQ6KAVX2},
		{kernels.IQ4_NL, decodeIQ4NLAVX2}, {kernels.IQ4_XS, decodeIQ4XSAVX2}} {
		for _, nb := range []int{1, 2, 7} {
			bs := c.dt.BlockBytes()
			row := make([]byte, nb*bs)
			for i := range row {
				row[i] = byte(r.Uint32())
			}
			if nb == 2 {
				for i := range row {
					row[i] = 0xff
				}
			}
			for b := range nb {
				for _, o := range kernels.HalfOffsets(c.dt) {
					v := float32(math.Ldexp(1+r.Float64(), r.IntN(40)-28))
					if r.IntN(2) == 0 {
						v = -v
					}
					binary.LittleEndian.PutUint16(row[b*bs+o:], kernels.F32ToF16(v))
				}
			}
			bl := c.dt.BlockLen()
			want := make([]float32, nb*bl)
			kernels.Decode(want, c.dt, row)
			got := make([]float32, nb*bl+1)
			got[len(got)-1] = 42
			c.dec(got[:nb*bl], row)
			if got[len(got)-1] != 42 {
				t.Errorf("%s, %d blocks: wrote past the end", c.dt, nb)
			}
			bad := 0
			for i, w := range want {
				if math.Float32bits(got[i]) != math.Float32bits(w) {
					if bad < 3 {
						t.Errorf("%s, %d blocks: value %d = %v, kernels.Decode %v", c.dt, nb, i, got[i], w)
					}
					bad++
				}
			}
		}
	}
}
