package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The Q4_0 decode matvec on prepared activations.
//
// A Q4_0 row keeps its GGUF layout; what changes is the activation row,
// rearranged once per MatMul so that the kernel needs no shuffles per
// block beyond gathering each four blocks' nibbles and scales. The
// prepared row is 256 bytes per group of four blocks (blocks 4g..4g+3,
// block i of the group, j < 16):
//
//	[0, 64)     byte 16i+j:  qx[j] of block i (the low nibbles' partners)
//	[64, 128)   byte 16i+j:  qx[16+j] of block i (the high nibbles')
//	[128, 192)  int32 4i+k:  −8·Σ qx[4k+m] + qx[16+4k+m] over m < 4
//	[192, 256)  float32 4i+k: d_x of block i
//
// A last group of fewer than four blocks is padded with zeros. The int32
// lanes carry the Q4_0 offset (value = nibble − 8): Σ (n−8)·qx =
// Σ n·qx − 8·Σ qx, so the kernel's integer dot products start from the
// prepared corrections and multiply the raw nibbles.

// q4PrepGroup is the size of one prepared group of four blocks.
const q4PrepGroup = 256

// q4PrepBytes is the size of the prepared activations for nb blocks.
func q4PrepBytes(nb int) int { return (nb + 3) / 4 * q4PrepGroup }

// prepQ4Generic rearranges the Q8_0 row xq of nb blocks into dst
// (q4PrepBytes(nb) bytes).
func prepQ4Generic(dst, xq []byte, nb int) {
	for g := 0; 4*g < nb; g++ {
		grp := dst[g*q4PrepGroup : (g+1)*q4PrepGroup]
		clear(grp)
		for i := 0; i < 4 && 4*g+i < nb; i++ {
			xb := xq[(4*g+i)*kernels.Q8_0BlockBytes : (4*g+i+1)*kernels.Q8_0BlockBytes]
			copy(grp[16*i:16*i+16], xb[2:18])
			copy(grp[64+16*i:64+16*i+16], xb[18:34])
			d := math.Float32bits(kernels.F16ToF32(binary.LittleEndian.Uint16(xb)))
			for k := 0; k < 4; k++ {
				var s int32
				for m := 0; m < 4; m++ {
					s += int32(int8(xb[2+4*k+m])) + int32(int8(xb[18+4*k+m]))
				}
				lane := 4*i + k
				binary.LittleEndian.PutUint32(grp[128+4*lane:], uint32(-8*s))
				binary.LittleEndian.PutUint32(grp[192+4*lane:], d)
			}
		}
	}
}

// matvecQ4PrepGeneric is matvecQ4Generic on prepared activations xp: the
// twin of the assembly, block by block from the prepared layout.
func matvecQ4PrepGeneric(out []float32, w []byte, nb int, xp []byte) {
	rb := nb * kernels.Q4_0BlockBytes
	for r := range out {
		row := w[r*rb : (r+1)*rb]
		var s float32
		for b := 0; b < nb; b++ {
			wb := row[b*kernels.Q4_0BlockBytes : (b+1)*kernels.Q4_0BlockBytes]
			grp := xp[b/4*q4PrepGroup : (b/4+1)*q4PrepGroup]
			i := b % 4
			var acc int32
			for k := 0; k < 4; k++ {
				acc += int32(binary.LittleEndian.Uint32(grp[128+4*(4*i+k):]))
			}
			for j := 0; j < 16; j++ {
				q := wb[2+j]
				acc += int32(q&0x0f) * int32(int8(grp[16*i+j]))
				acc += int32(q>>4) * int32(int8(grp[64+16*i+j]))
			}
			dx := math.Float32frombits(binary.LittleEndian.Uint32(grp[192+16*i:]))
			s += float32(acc) * kernels.F16ToF32(binary.LittleEndian.Uint16(wb)) * dx
		}
		out[r] = s
	}
}
