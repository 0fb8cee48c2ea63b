package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The quantized GEMM of prompts and training: MatMul of Q4_0 or Q8_0
// weights with qgMinN or more rows of activations, where the int8 dot
// products, not the weights' bytes, bound the time.
//
// Each int32 lane of a vector belongs to one weight row: a tile is 16 rows
// × 8 tokens, and one vpdpbusd multiplies four bytes of each of the 16
// rows by the same four activation bytes of one token, broadcast from
// memory. A block's 32 products of a row and a token therefore sum in one
// lane over eight vpdpbusd, started from the token's offset correction,
// with no shuffle and no horizontal sum; then one conversion, one product
// of the scales d_w·d_x and one FMA per token add the block to the 16
// rows' float sums. Eight vpdpbusd per three float operations, against
// one per five in the 4×4 tiles of quant_amd64.s.
//
// Both operands are rearranged once per call:
//
//   - Weights, a panel of 16 rows at a time, by the worker that computes
//     them (qgPack*): per block, eight 64-byte vectors, vector j holding
//     bytes 4j..4j+3 of the block's 32 unsigned quants of row i at bytes
//     4i..4i+3 (Q4_0: the nibbles, value k < 16 the low nibble of byte k,
//     k ≥ 16 the high nibble of byte k−16; Q8_0: q xor 0x80), then the 16
//     rows' d_w as float32: qgPanelBlock bytes a block. Rows past the
//     matrix repeat its last row (their sums are not stored).
//   - Activations, quantized to Q8_0 as for every quantized product, in
//     groups of eight tokens (qgPrep*): per block, the eight tokens' 32
//     quants (token t at 32t), their offset corrections −m·Σq as int32
//     (m = 8 for Q4_0, whose quants are nibble − 8; m = 128 for Q8_0,
//     offset by the xor) and their d_x as float32: qgGroupBlock bytes a
//     block. A last group of fewer than eight tokens is moved back to end
//     at token n, overlapping the one before: it recomputes a few outputs,
//     bit for bit the same.
//
// Every output is the same sum in the same order, Σ over the blocks in
// turn of float(Σ_j u·q − m·Σq)·(d_w·d_x), accumulated with one FMA a
// block, whichever tile and worker computes it: the result does not depend
// on the number of threads.

const (
	// qgRows and qgToks are the tile: 16 weight rows × 8 tokens.
	qgRows = 16
	qgToks = 8
	// qgPanelBlock is the size of one block of a weight panel.
	qgPanelBlock = 8*64 + 4*qgRows
	// qgGroupBlock is the size of one block of a prepared token group.
	qgGroupBlock = qgToks*kernels.QK + 4*qgToks + 4*qgToks
	// qgMinN is the fewest activation rows MatMul runs this way.
	qgMinN = qgToks
)

// qgKernels is one instruction set's version of the quantized GEMM.
//
//	pack4, pack8(dst, w, offs, nb): a panel of the 16 rows at w+offs[i]
//	    (Q4_0 or Q8_0 rows of nb blocks) into dst (nb·qgPanelBlock bytes).
//	prep(dst, xq, xb, nb, m): the 8 Q8_0 rows at xq+t·xb into dst
//	    (nb·qgGroupBlock bytes), corrections −m·Σq.
//	gemm(out, ldo, panel, nb, xg, ng, mask, next): ng groups of 8 tokens,
//	    group g at xg+g·nb·qgGroupBlock, times the panel: token t of
//	    group g at out[(8g+t)·ldo + i] for each row i whose bit is set in
//	    mask. It may prefetch next (the weights of the panel to come).
type qgKernels struct {
	pack4, pack8 func(dst, w []byte, offs *[qgRows]int32, nb int)
	prep         func(dst, xq []byte, xb, nb, m int)
	gemm         func(out []float32, ldo int, panel []byte, nb int, xg []byte, ng int, mask uint16, next []byte)
}

// qgemmImpl is the set in use; nil functions: no such kernel, MatMul uses
// the tiles of quant.go.
var qgemmImpl qgKernels

// qgPackGeneric is the pure-Go twin of the panel packing, for blocks of
// type dt (Q4_0 or Q8_0).
func qgPackGeneric(dt kernels.DType, dst, w []byte, offs *[qgRows]int32, nb int) {
	bs := dt.BlockBytes()
	for b := 0; b < nb; b++ {
		p := dst[b*qgPanelBlock : (b+1)*qgPanelBlock]
		for i, off := range offs {
			blk := w[int(off)+b*bs : int(off)+(b+1)*bs]
			for k := 0; k < kernels.QK; k++ {
				var u byte
				if dt == kernels.Q4_0 {
					u = blk[2+k%16] >> (4 * (k / 16)) & 0x0f
				} else {
					u = blk[2+k] ^ 0x80
				}
				p[k/4*64+4*i+k%4] = u
			}
			d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
			binary.LittleEndian.PutUint32(p[512+4*i:], math.Float32bits(d))
		}
	}
}

func qgPack4Generic(dst, w []byte, offs *[qgRows]int32, nb int) {
	qgPackGeneric(kernels.Q4_0, dst, w, offs, nb)
}

func qgPack8Generic(dst, w []byte, offs *[qgRows]int32, nb int) {
	qgPackGeneric(kernels.Q8_0, dst, w, offs, nb)
}

// qgPrepGeneric is the pure-Go twin of the activation preparation.
func qgPrepGeneric(dst, xq []byte, xb, nb, m int) {
	for b := 0; b < nb; b++ {
		g := dst[b*qgGroupBlock : (b+1)*qgGroupBlock]
		for t := 0; t < qgToks; t++ {
			blk := xq[t*xb+b*kernels.Q8_0BlockBytes : t*xb+(b+1)*kernels.Q8_0BlockBytes]
			copy(g[32*t:32*t+32], blk[2:])
			var s int32
			for _, q := range blk[2:] {
				s += int32(int8(q))
			}
			binary.LittleEndian.PutUint32(g[256+4*t:], uint32(-int32(m)*s))
			d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
			binary.LittleEndian.PutUint32(g[288+4*t:], math.Float32bits(d))
		}
	}
}

// qgGemmGeneric is the pure-Go twin of the tile kernel: the same integer
// sums and, but for the FMA's single rounding, the same float ones.
func qgGemmGeneric(out []float32, ldo int, panel []byte, nb int, xg []byte, ng int, mask uint16, _ []byte) {
	for g := 0; g < ng; g++ {
		grp := xg[g*nb*qgGroupBlock : (g+1)*nb*qgGroupBlock]
		for t := 0; t < qgToks; t++ {
			for i := 0; i < qgRows; i++ {
				if mask&(1<<i) == 0 {
					continue
				}
				var acc float32
				for b := 0; b < nb; b++ {
					p := panel[b*qgPanelBlock : (b+1)*qgPanelBlock]
					x := grp[b*qgGroupBlock : (b+1)*qgGroupBlock]
					s := int32(binary.LittleEndian.Uint32(x[256+4*t:]))
					for k := 0; k < kernels.QK; k++ {
						s += int32(p[k/4*64+4*i+k%4]) * int32(int8(x[32*t+k]))
					}
					dw := math.Float32frombits(binary.LittleEndian.Uint32(p[512+4*i:]))
					dx := math.Float32frombits(binary.LittleEndian.Uint32(x[288+4*t:]))
					acc += float32(s) * (dw * dx)
				}
				out[(g*qgToks+t)*ldo+i] = acc
			}
		}
	}
}

// qgCorrection is the offset m of the unsigned weight quants of dt.
func qgCorrection(dt kernels.DType) int {
	if dt == kernels.Q4_0 {
		return 8
	}
	return 128
}

// qgemmTask runs in two stages over the pool: quantizing and preparing
// the activations, a group of eight tokens an item, then the panels of 16
// weight rows, one an item, each against every group.
type qgemmTask struct {
	b       *Backend
	out     []float32
	w       *kernels.Matrix
	x       []float32
	n       int
	nb      int
	groups  int
	xg      []byte
	prepare bool
}

// qgemm computes MatMul on quantized weights with n ≥ qgMinN rows.
func (b *Backend) qgemm(out []float32, w *kernels.Matrix, x []float32, n int) {
	nb := w.Cols / kernels.QK
	groups := (n + qgToks - 1) / qgToks
	b.xg = alignedScratch(b.xg, groups*nb*qgGroupBlock)
	if len(b.qgP) != b.pool.threads {
		b.qgX = make([][]byte, b.pool.threads)
		b.qgP = make([][]byte, b.pool.threads)
		b.qgO = make([][qgRows]int32, b.pool.threads)
	}
	t := &b.qg
	*t = qgemmTask{b: b, out: out, w: w, x: x, n: n, nb: nb, groups: groups, xg: b.xg, prepare: true}
	b.pool.run(t, groups, max(1, 8192/w.Cols))
	t.prepare = false
	panels := (w.Rows + qgRows - 1) / qgRows
	b.pool.run(t, panels, max(1, macsPerChunk/(n*qgRows*w.Cols)))
	*t = qgemmTask{}
}

func (t *qgemmTask) run(worker, lo, hi int) {
	for i := lo; i < hi; i++ {
		if t.prepare {
			t.prepGroup(worker, i)
		} else {
			t.panel(worker, i)
		}
	}
}

// prepGroup quantizes the eight tokens of group g, the last group moved
// back to end at token n, and prepares them.
func (t *qgemmTask) prepGroup(worker, g int) {
	nb, cols := t.nb, t.w.Cols
	xb := nb * kernels.Q8_0BlockBytes
	t0 := min(g*qgToks, t.n-qgToks)
	s := &t.b.qgX[worker]
	*s = alignedScratch(*s, qgToks*xb)
	xq := *s
	for k := 0; k < qgToks; k++ {
		quantizeQ8(xq[k*xb:(k+1)*xb], t.x[(t0+k)*cols:(t0+k+1)*cols])
	}
	gb := nb * qgGroupBlock
	qgemmImpl.prep(t.xg[g*gb:(g+1)*gb], xq, xb, nb, qgCorrection(t.w.Type))
}

// panel packs weight rows [16p, 16p+16) and multiplies them by every
// group of tokens.
func (t *qgemmTask) panel(worker, p int) {
	w, nb, n := t.w, t.nb, t.n
	rows := w.Rows
	rb := nb * w.Type.BlockBytes()
	r0 := p * qgRows
	nr := min(qgRows, rows-r0)
	offs := &t.b.qgO[worker]
	for i := range offs {
		offs[i] = int32(min(i, nr-1) * rb)
	}
	s := &t.b.qgP[worker]
	*s = alignedScratch(*s, nb*qgPanelBlock)
	panel := *s
	wd := w.Data[r0*rb : (r0+nr)*rb]
	if w.Type == kernels.Q4_0 {
		qgemmImpl.pack4(panel, wd, offs, nb)
	} else {
		qgemmImpl.pack8(panel, wd, offs, nb)
	}
	mask := uint16(1<<nr - 1)
	gb := nb * qgGroupBlock
	full := n / qgToks
	out := t.out[r0:]
	// The weights of the next panel, which the kernel prefetches while
	// it computes (the panels of a chunk of items are consecutive).
	next := w.Data[min(r0+nr, rows)*rb : min(r0+nr+qgRows, rows)*rb]
	qgemmImpl.gemm(out, rows, panel, nb, t.xg, full, mask, next)
	if full < t.groups {
		// The last group, moved back to end at token n.
		qgemmImpl.gemm(out[(n-qgToks)*rows:], rows, panel, nb, t.xg[full*gb:], 1, mask, nil)
	}
}
