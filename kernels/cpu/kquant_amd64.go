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

//go:noescape
func q41RowAVX2(dst *float32, row *byte, nb int)

//go:noescape
func q50RowAVX2(dst *float32, row *byte, nb int)

//go:noescape
func q51RowAVX2(dst *float32, row *byte, nb int)

//go:noescape
func q2kBlockAVX2(dst *float32, qs *byte, dm *[32]float32)

//go:noescape
func q3kBlockAVX2(dst *float32, b *byte, dl *[16]float32)

//go:noescape
func q5kBlockAVX2(dst *float32, qs, qh *byte, dm *[16]float32)

//go:noescape
func iq4nlRowAVX2(dst *float32, row *byte, nb int, book *[16]int8)

//go:noescape
func iq4xsBlockAVX2(dst *float32, qs *byte, dl *[8]float32, book *[16]int8)

// decodeQ4KAVX2 decodes the len(dst)/256 Q4_K blocks of row.
func decodeQ4KAVX2(dst []float32, row []byte) { decodeQ45KAVX2(dst, row, false) }

// decodeQ5KAVX2 decodes the len(dst)/256 Q5_K blocks of row.
func decodeQ5KAVX2(dst []float32, row []byte) { decodeQ45KAVX2(dst, row, true) }

func decodeQ45KAVX2(dst []float32, row []byte, q5 bool) {
	bb := 144
	if q5 {
		bb = 176
	}
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
		if q5 {
			q5kBlockAVX2(&dst[b*kernels.QKK], &blk[48], &blk[16], &dm)
		} else {
			q4kBlockAVX2(&dst[b*kernels.QKK], &blk[16], &dm)
		}
	}
}

// decodeIQ4NLAVX2 decodes the len(dst)/32 IQ4_NL blocks of row.
func decodeIQ4NLAVX2(dst []float32, row []byte) {
	nb := len(dst) / kernels.QK
	if nb == 0 {
		return
	}
	_, _ = row[nb*18-1], dst[nb*kernels.QK-1]
	iq4nlRowAVX2(&dst[0], &row[0], nb, &kernels.IQ4Values)
}

// decodeIQ4XSAVX2 decodes the len(dst)/256 IQ4_XS blocks of row.
func decodeIQ4XSAVX2(dst []float32, row []byte) {
	const bb = 136
	nb := len(dst) / kernels.QKK
	if nb == 0 {
		return
	}
	_, _ = row[nb*bb-1], dst[nb*kernels.QKK-1]
	var dl [8]float32
	for b := range nb {
		blk := row[b*bb : (b+1)*bb]
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
		for s := range 8 {
			dl[s] = d * float32(kernels.IQ4XSScale(s, blk))
		}
		iq4xsBlockAVX2(&dst[b*kernels.QKK], &blk[8], &dl, &kernels.IQ4Values)
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

// decodeQ2KAVX2 decodes the len(dst)/256 Q2_K blocks of row.
func decodeQ2KAVX2(dst []float32, row []byte) {
	const bb = 84
	nb := len(dst) / kernels.QKK
	if nb == 0 {
		return
	}
	_, _ = row[nb*bb-1], dst[nb*kernels.QKK-1]
	var dm [32]float32
	for b := range nb {
		blk := row[b*bb : (b+1)*bb]
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[80:]))
		dmin := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[82:]))
		for t, sc := range blk[:16] {
			dm[t], dm[16+t] = d*float32(sc&0x0f), dmin*float32(sc>>4)
		}
		q2kBlockAVX2(&dst[b*kernels.QKK], &blk[16], &dm)
	}
}

// decodeQ3KAVX2 decodes the len(dst)/256 Q3_K blocks of row.
func decodeQ3KAVX2(dst []float32, row []byte) {
	const bb = 110
	nb := len(dst) / kernels.QKK
	if nb == 0 {
		return
	}
	_, _ = row[nb*bb-1], dst[nb*kernels.QKK-1]
	var dl [16]float32
	for b := range nb {
		blk := row[b*bb : (b+1)*bb]
		d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk[108:]))
		for t := range dl {
			dl[t] = d * float32(kernels.K3Scale(t, blk[96:108]))
		}
		q3kBlockAVX2(&dst[b*kernels.QKK], &blk[0], &dl)
	}
}

// rowDecoder32 makes the decoder of len(dst)/32 blocks of bb bytes of a
// row from a row kernel.
func rowDecoder32(bb int, k func(dst *float32, row *byte, nb int)) func(dst []float32, row []byte) {
	return func(dst []float32, row []byte) {
		nb := len(dst) / kernels.QK
		if nb == 0 {
			return
		}
		_, _ = row[nb*bb-1], dst[nb*kernels.QK-1]
		k(&dst[0], &row[0], nb)
	}
}

var (
	decodeQ4_1AVX2 = rowDecoder32(20, q41RowAVX2)
	decodeQ5_0AVX2 = rowDecoder32(22, q50RowAVX2)
	decodeQ5_1AVX2 = rowDecoder32(24, q51RowAVX2)
)
