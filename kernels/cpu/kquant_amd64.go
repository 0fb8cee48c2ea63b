//go:build amd64 && !noasm

package cpu

import (
	"encoding/binary"

	"github.com/mycel-net/mycel/kernels"
)

//go:noescape
func q4kBlockAVX2(dst *float32, qs *byte, dm *[16]float32)

//go:noescape
func q6kBlockAVX2(dst *float32, b *byte, dl *[16]float32)

// decodeQ4KAVX2 decodes the len(dst)/256 Q4_K blocks of row.
func decodeQ4KAVX2(dst []float32, row []byte) {
	const bb = 144
	nb := len(dst) / kernels.QKK
	if nb == 0 {
		return
	}
	_, _ = row[nb*bb-1], dst[nb*kernels.QKK-1]
	var dm [16]float32
	for b := range nb {
		blk := row[b*bb : (b+1)*bb]
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
		dmin := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[2:]))
		for j := range 8 {
			sc, m := kernels.K4Scale(j, blk[4:16])
			dm[j], dm[8+j] = d*float32(sc), dmin*float32(m)
		}
		q4kBlockAVX2(&dst[b*kernels.QKK], &blk[16], &dm)
	}
}

// decodeQ6KAVX2 decodes the len(dst)/256 Q6_K blocks of row.
func decodeQ6KAVX2(dst []float32, row []byte) {
	const bb = 210
	nb := len(dst) / kernels.QKK
	if nb == 0 {
		return
	}
	_, _ = row[nb*bb-1], dst[nb*kernels.QKK-1]
	var dl [16]float32
	for b := range nb {
		blk := row[b*bb : (b+1)*bb]
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[208:]))
		for i := range 16 {
			dl[i] = d * float32(int8(blk[192+i]))
		}
		q6kBlockAVX2(&dst[b*kernels.QKK], &blk[0], &dl)
	}
}
