package cpu

import (
	"encoding/binary"
	"math"

	"github.com/mycel-net/mycel/kernels"
)

// The quantized GEMM of prompts and training: MatMul of Q4_0 or Q8_0
// weights with qgMinRows or more rows of activations, where the int8 dot
// products, not the weights' bytes, bound the time.
//
// Each int32 lane of a vector belongs to one weight row: a tile is 32 rows
// (two vectors of 16) × 4 tokens, and one vpdpbusd multiplies four bytes
// of each of 16 rows by the same four activation bytes of one token,
// broadcast to a register that serves both vectors of rows. A block's 32
// products of a row and a token therefore sum in one lane over eight
// vpdpbusd, started from the token's offset correction, with no shuffle
// and no horizontal sum; then one conversion, one product of the scales
// d_w·d_x and one FMA per 16 rows and token add the block to the float
// sums. Eight vpdpbusd per three float operations, against one per five
// in the 4×4 tiles of quant_amd64.s; and, the activations' broadcast
// serving two vectors of rows, about one load per vpdpbusd (two a cycle
// is what the core sustains).
//
// Both operands are rearranged once per call:
//
//   - Weights, a panel of 32 rows at a time, by the worker that computes
//     them (qgPack*): per block, for j < 8 and each half h of the rows, a
//     64-byte vector at 128j + 64h holding bytes 4j..4j+3 of the block's
//     32 unsigned quants of row 16h+i at bytes 4i..4i+3 (Q4_0: the
//     nibbles, value k < 16 the low nibble of byte k, k ≥ 16 the high
//     nibble of byte k−16; Q8_0: q xor 0x80), then the 32 rows' d_w as
//     float32: qgPanelBlock bytes a block. Rows past the matrix repeat its
//     last row (their sums are not stored).
//   - Activations, quantized to Q8_0 as for every quantized product, in
//     groups of four tokens (qgPrep*): per block, the four tokens' 32
//     quants (token t at 32t), their offset corrections −m·Σq as int32
//     (m = 8 for Q4_0, whose quants are nibble − 8; m = 128 for Q8_0,
//     offset by the xor) and their d_x as float32: qgGroupBlock bytes a
//     block. A last group of fewer than four tokens is moved back to end
//     at token n, overlapping the one before: it recomputes a few outputs,
//     bit for bit the same.
//
// Every output is the same sum in the same order, Σ over the blocks in
// turn of float(Σ_j u·q − m·Σq)·(d_w·d_x), accumulated with one FMA a
// block, whichever tile and worker computes it: the result does not depend
// on the number of threads.

const (
	// qgRows and qgToks are the tile: 32 weight rows × 4 tokens.
	qgRows = 32
	qgToks = 4
	// qgPanelBlock is the size of one block of a weight panel.
	qgPanelBlock = 8*4*qgRows + 4*qgRows
	// qgGroupBlock is the size of one block of a prepared token group.
	qgGroupBlock = qgToks*kernels.QK + 4*qgToks + 4*qgToks
)

// qgMinRows is the fewest activation rows MatMul runs this way for weights
// of type dt: from four for Q4_0, whose 4×4 tiles this beats from there
// (233 against 191 GFLOPS at four rows on 768×768, one thread); from
// twelve for Q8_0, whose tiles on prepared activations keep the lead up
// to about there (368 against 291 at eight rows).
func qgMinRows(dt kernels.DType) int {
	if dt == kernels.Q4_0 {
		return qgToks
	}
	return 12
}

// qgKernels is one instruction set's version of the quantized GEMM.
//
//	pack4, pack8(dst, w, offs, nb): a panel of the 32 rows at w+offs[i]
//	    (Q4_0 or Q8_0 rows of nb blocks) into dst (nb·qgPanelBlock bytes).
//	prep(dst, xq, xb, nb, m): the 4 Q8_0 rows at xq+t·xb into dst
//	    (nb·qgGroupBlock bytes), corrections −m·Σq.
//	gemm(out, ldo, panel, nb, xg, ng, mask, next): ng groups of 4 tokens,
//	    group g at xg+g·nb·qgGroupBlock, times the panel: token t of
//	    group g at out[(4g+t)·ldo + i] for each row i whose bit is set in
//	    mask. It may prefetch next (the weights of the panel to come).
type qgKernels struct {
	pack4, pack8 func(dst, w []byte, offs *[qgRows]int32, nb int)
	prep         func(dst, xq []byte, xb, nb, m int)
	gemm         func(out []float32, ldo int, panel []byte, nb int, xg []byte, ng int, mask uint32, next []byte)
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
				p[k/4*128+i/16*64+4*(i%16)+k%4] = u
			}
			d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
			binary.LittleEndian.PutUint32(p[1024+4*i:], math.Float32bits(d))
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
			binary.LittleEndian.PutUint32(g[128+4*t:], uint32(-int32(m)*s))
			d := kernels.F16ToF32(binary.LittleEndian.Uint16(blk))
			binary.LittleEndian.PutUint32(g[144+4*t:], math.Float32bits(d))
		}
	}
}

// qgGemmGeneric is the pure-Go twin of the tile kernel: the same integer
// sums and, but for the FMA's single rounding, the same float ones.
func qgGemmGeneric(out []float32, ldo int, panel []byte, nb int, xg []byte, ng int, mask uint32, _ []byte) {
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
					s := int32(binary.LittleEndian.Uint32(x[128+4*t:]))
					for k := 0; k < kernels.QK; k++ {
						s += int32(p[k/4*128+i/16*64+4*(i%16)+k%4]) * int32(int8(x[32*t+k]))
					}
					dw := math.Float32frombits(binary.LittleEndian.Uint32(p[1024+4*i:]))
					dx := math.Float32frombits(binary.LittleEndian.Uint32(x[144+4*t:]))
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
// the activations, a group of four tokens an item, then the products.
// An item of the second is a panel of 32 weight rows against a span of
// the groups: where a matrix has too few panels to keep every thread
// busy, the tokens are split too (each span packs its panel again; a
// worker that gets the next span of the panel it holds packs nothing).
type qgemmTask struct {
	b       *Backend
	out     []float32
	w       *kernels.Matrix
	x       []float32
	n       int
	nb      int
	groups  int
	spans   int // spans of groups a panel's item covers
	xg      []byte
	prepare bool
}

// qgemm computes MatMul on quantized weights with n ≥ qgToks rows: Q4_0
// and Q8_0, or the K-quants of kqgemm.go.
func (b *Backend) qgemm(out []float32, w *kernels.Matrix, x []float32, n int) {
	nb := w.Cols / qgSub(w.Type)
	if kqgMins(w.Type) {
		nj := w.Cols / kqgMinSub(w.Type)
		b.kqMins = growF32(b.kqMins, w.Rows*nj)
		b.kqSums = growF32(b.kqSums, n*nj)
	}
	groups := (n + qgToks - 1) / qgToks
	b.xg = alignedScratch(b.xg, groups*nb*qgGroupBlock)
	if len(b.qgP) != b.pool.threads {
		b.qgX = make([][]byte, b.pool.threads)
		b.qgP = make([][]byte, b.pool.threads)
		b.qgO = make([][qgRows]int32, b.pool.threads)
		b.qgHeld = make([]qgHeld, b.pool.threads)
	}
	for i := range b.qgHeld {
		b.qgHeld[i] = qgHeld{}
	}
	panels := (w.Rows + qgRows - 1) / qgRows
	// Eight items a thread where the tokens allow spans of at least 32
	// groups (128 tokens): packing a panel costs about what two groups'
	// products do.
	spans := 1
	for panels*spans < 8*b.pool.threads && groups >= 2*32*spans {
		spans *= 2
	}
	t := &b.qg
	*t = qgemmTask{b: b, out: out, w: w, x: x, n: n, nb: nb, groups: groups, spans: spans, xg: b.xg, prepare: true}
	// Where MatMulMany says so, b.xg and b.kqSums hold these
	// activations prepared for the matrix before.
	if !b.kqgReuse {
		b.pool.run(t, groups, max(1, 8192/w.Cols))
	}
	t.prepare = false
	b.pool.run(t, panels*spans, max(1, macsPerChunk/(n/spans*qgRows*w.Cols)))
	*t = qgemmTask{}
	if kqgMins(w.Type) {
		b.kqgMinsPart(out, w, n)
	}
}

// qgHeld is the panel a worker's scratch holds.
type qgHeld struct {
	w     *kernels.Matrix
	panel int
	ok    bool
}

func (t *qgemmTask) run(worker, lo, hi int) {
	for i := lo; i < hi; i++ {
		if t.prepare {
			t.prepGroup(worker, i)
		} else {
			t.product(worker, i/t.spans, i%t.spans)
		}
	}
}

// prepGroup quantizes the four tokens of group g, the last group moved
// back to end at token n, and prepares them.
func (t *qgemmTask) prepGroup(worker, g int) {
	nb, cols := t.nb, t.w.Cols
	t0 := min(g*qgToks, t.n-qgToks)
	gb := nb * qgGroupBlock
	if dt := t.w.Type; kq8Type(dt) {
		var sums []float32
		ms := kqgMinSub(dt)
		if kqgMins(dt) {
			sums = t.b.kqSums[t0*(cols/ms):]
		}
		kqgPrep(t.xg[g*gb:(g+1)*gb], t.x[t0*cols:(t0+qgToks)*cols], cols, qgSub(dt), kqgCorr(dt), sums, ms, g*qgToks-t0)
		return
	}
	xb := nb * kernels.Q8_0BlockBytes
	s := &t.b.qgX[worker]
	*s = alignedScratch(*s, qgToks*xb)
	xq := *s
	for k := 0; k < qgToks; k++ {
		quantizeQ8(xq[k*xb:(k+1)*xb], t.x[(t0+k)*cols:(t0+k+1)*cols])
	}
	qgemmImpl.prep(t.xg[g*gb:(g+1)*gb], xq, xb, nb, qgCorrection(t.w.Type))
}

// product multiplies weight rows [32p, 32p+32) by span sp of the groups
// of tokens, packing the rows unless the worker holds them already.
func (t *qgemmTask) product(worker, p, sp int) {
	w, nb, n := t.w, t.nb, t.n
	rows := w.Rows
	rb := w.Cols / w.Type.BlockLen() * w.Type.BlockBytes()
	r0 := p * qgRows
	nr := min(qgRows, rows-r0)
	s := &t.b.qgP[worker]
	*s = alignedScratch(*s, nb*qgPanelBlock)
	panel := *s
	// The first span of a panel of Q2_K–Q5_K packs it always: it stores
	// the rows' mins.
	if held := &t.b.qgHeld[worker]; !held.ok || held.w != w || held.panel != p || sp == 0 && kqgMins(w.Type) {
		offs := &t.b.qgO[worker]
		for i := range offs {
			offs[i] = int32(min(i, nr-1) * rb)
		}
		wd := w.Data[r0*rb : (r0+nr)*rb]
		switch {
		case kq8Type(w.Type):
			var mins []float32
			nj := w.Cols / kqgMinSub(w.Type)
			if kqgMins(w.Type) && sp == 0 {
				mins = t.b.kqMins[r0*nj:]
			}
			kqgPack(w.Type, panel, wd, offs, w.Cols/kernels.QKK, mins, nj, nr)
		case w.Type == kernels.Q4_0:
			qgemmImpl.pack4(panel, wd, offs, nb)
		default:
			qgemmImpl.pack8(panel, wd, offs, nb)
		}
		*held = qgHeld{w: w, panel: p, ok: true}
	}
	mask := uint32(1<<nr - 1)
	gb := nb * qgGroupBlock
	g0, g1 := sp*t.groups/t.spans, (sp+1)*t.groups/t.spans
	full := min(g1, n/qgToks) // groups of four whole tokens in the span
	out := t.out[r0:]
	// The weights of the next panel, which the kernel prefetches while
	// it computes (the items of a chunk are consecutive).
	var next []byte
	if sp == t.spans-1 {
		next = w.Data[min(r0+nr, rows)*rb : min(r0+nr+qgRows, rows)*rb]
	}
	if full > g0 {
		qgemmImpl.gemm(out[g0*qgToks*rows:], rows, panel, nb, t.xg[g0*gb:], full-g0, mask, next)
	}
	if full < g1 {
		// The last group, moved back to end at token n.
		qgemmImpl.gemm(out[(n-qgToks)*rows:], rows, panel, nb, t.xg[full*gb:], 1, mask, nil)
	}
}
