package cpu

import (
	"math"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

// The products of a backward pass on the GEMM micro-kernels of gemm.go.
// Each is C[M×N] (+)= A[M×K]·B[K×N] with the operands in other layouts
// than MatMul's, so only the packing differs (AttentionBackward's five
// products per head are more of the same):
//
//	MatMulT:    dx[n×Cols] (+)= dy[n×Rows] · W[Rows×Cols]
//	            A = dy packed as MatMul packs x; B = W, whose rows are
//	            already the rows of B: a panel is NR consecutive values of
//	            each of kc rows, decoded to float32.
//	MatMulGrad: dw[rows×cols] += dyᵀ · x
//	            A = dyᵀ, whose panels are MR consecutive values of each of
//	            kc rows of dy; B = x, whose panels are NR consecutive values
//	            of each of kc rows of x.
//
// A is packed once per call, in parallel. The work is split over C's
// columns in items of whole NR-wide panels, and where C is narrow over
// its rows too; an item packs its panels of B one depth block at a time
// and runs the micro-kernel over every MR×NR tile of its columns and
// rows, in blocks of gemmMCPanels panels of A that stay in L2.
//
// The result is bitwise independent of the number of threads: every
// element of C is a sum over depth blocks of gemmKC, in order, each block
// summed by the micro-kernel (or, on the edges, by the same kernel into a
// scratch tile, then added), whichever worker runs it and however wide
// the items are.

// gemmOp describes one product to gemmRun.
type gemmOp struct {
	m, n, k int
	c       []float32
	ldc     int
	// acc adds the product to C; otherwise the first depth block
	// overwrites it.
	acc bool
	// packA writes dst[k·mr + i] = A[m0+i, pc+k] for k < kc, i < mr;
	// zero for rows past M.
	packA func(dst []float32, m0, mr, pc, kc int)
	// aT, if not nil, is A stored transposed, A[m,k] = aT[k·ldaT + m],
	// which gemmRun packs itself (packRowsT) instead of calling packA.
	aT   []float32
	ldaT int
	// packB writes dst[k·nr + j] = B[pc+k, n0+j] for k < kc, j < nr;
	// zero for columns past N.
	packB func(dst []float32, n0, nr, pc, kc int)
	// tri says where a triangle of zeros lets work be skipped.
	tri triangle
}

// triangle names the triangles of a causal product that gemmRun may skip.
// Skipping is decided by the shapes alone, so results stay independent
// of the number of threads; a skipped term is an exact zero.
type triangle uint8

const (
	triNone triangle = iota
	// triUpperUnused: C[i,j] for j > i is not wanted; tiles wholly
	// above the diagonal are left as they were.
	triUpperUnused
	// triALower: A[i,k] = 0 for k > i; row i sums over k ≤ i only.
	triALower
	// triAUpper: A[i,k] = 0 for k < i; row i sums over k ≥ i only.
	triAUpper
)

type gemmRunTask struct {
	b      *Backend
	g      gemmShape
	op     *gemmOp
	mPads  int // M rounded up to MR
	ncp    int // B panels per item
	mcp    int // A panels per item
	mItems int // items over M for each over N
	pack   bool
	// byDepth: the task covers the one depth block at pc0, and packA holds
	// that block alone (gemmRun's streaming of a large A).
	byDepth bool
	pc0     int
}

// gemmStreamA is the size of a packed A beyond which gemmRun runs depth
// block by depth block, where a block of it fits gemmStreamBlock: packing
// all of A first, then reading it again once for every item over N, would
// go through memory several times (a language model's output head: dy of
// 1024 positions × 32000 logits is 131 MB). Block by block, A is read
// once and its packed block stays in the cache while the items use it.
// (Where a block is larger, as for the head's weight gradient, 32000
// rows deep, it would not stay: measured no faster.)
var gemmStreamA = 8 << 20

const gemmStreamBlock = 4 << 20

// gemmRun computes op on the current micro-kernel.
func (b *Backend) gemmRun(op *gemmOp) {
	g := gemmImpl
	mPanels := (op.m + g.mr - 1) / g.mr
	kBlocks := (op.k + gemmKC - 1) / gemmKC
	byDepth := kBlocks > 1 && 4*mPanels*g.mr*op.k > gemmStreamA && 4*mPanels*g.mr*gemmKC <= gemmStreamBlock
	need := mPanels*g.mr*op.k + kBlocks*mPanels*panelPad
	if byDepth {
		need = mPanels*g.mr*gemmKC + mPanels*panelPad
	}
	if cap(b.packA) < need {
		b.packA = make([]float32, need)
	}
	nPanels := (op.n + g.nr - 1) / g.nr
	// Items of up to gemmNCPanels panels of B, at least four per thread
	// where C is wide enough; where it is not, C's rows are split too,
	// in blocks of whole gemmMCPanels (each such item packs its panels of
	// B again), for eight items per thread: few items of equal cost
	// leave a thread idle at the end. The items' shape changes the order
	// tiles are visited in, not the sums.
	ncp := max(1, min(gemmNCPanels, nPanels/(4*b.pool.threads)))
	nItems := (nPanels + ncp - 1) / ncp
	mBlocks := (mPanels + gemmMCPanels - 1) / gemmMCPanels
	mSplit := max(1, min(mBlocks, (8*b.pool.threads+nItems-1)/nItems))
	if b.pool.threads == 1 {
		// One thread has nothing to balance: pack B once.
		ncp = gemmNCPanels
		nItems = (nPanels + ncp - 1) / ncp
		mSplit = 1
	}
	mcp := (mBlocks + mSplit - 1) / mSplit * gemmMCPanels
	nbuf := ncp * g.nr * min(gemmKC, op.k)
	for i := range b.packB {
		if cap(b.packB[i]) < nbuf {
			b.packB[i] = make([]float32, nbuf)
		}
		if cap(b.tile[i]) < g.mr*g.nr {
			b.tile[i] = make([]float32, g.mr*g.nr)
		}
	}
	mItems := (mPanels + mcp - 1) / mcp
	t := &gemmRunTask{b: b, g: g, op: op, mPads: mPanels * g.mr, ncp: ncp, mcp: mcp, mItems: mItems, pack: true}
	if byDepth {
		// Depth block by depth block, each packed, then used by every
		// item; the sums run over the blocks in the same order.
		t.byDepth = true
		for pc := 0; pc < op.k; pc += gemmKC {
			t.pc0, t.pack = pc, true
			b.pool.run(t, mPanels, max(1, 4096/(g.mr*gemmKC)))
			t.pack = false
			b.pool.run(t, nItems*mItems, max(1, macsPerChunk/(mcp*g.mr*ncp*g.nr*min(gemmKC, op.k-pc))))
		}
		return
	}
	b.pool.run(t, mPanels*kBlocks, max(1, 4096/(g.mr*min(op.k, gemmKC))))
	t.pack = false
	b.pool.run(t, nItems*mItems, max(1, macsPerChunk/(mcp*g.mr*ncp*g.nr*op.k)))
}

func (t *gemmRunTask) run(worker, lo, hi int) {
	for i := lo; i < hi; i++ {
		if t.pack {
			t.packA(i)
		} else {
			t.compute(worker, i)
		}
	}
}

// packA packs item i: the A panel i%mPanels of depth block i/mPanels
// (byDepth: panel i of the block at pc0).
func (t *gemmRunTask) packA(i int) {
	mr := t.g.mr
	mPanels := t.mPads / mr
	pc := i / mPanels * gemmKC
	mp := i % mPanels
	if t.byDepth {
		pc = t.pc0
	}
	kc := min(gemmKC, t.op.k-pc)
	off := t.aOff(pc, mp, kc)
	dst := t.b.packA[off : off+mr*kc : off+mr*kc+panelPad]
	if op := t.op; op.aT != nil {
		// Panel by panel: measured faster than a row of aT at a time
		// across many panels.
		packRowsT(dst, op.aT, op.ldaT, pc, mp*mr, kc, mr, max(0, min(mr, op.m-mp*mr)))
		return
	}
	t.op.packA(dst, mp*mr, mr, pc, kc)
}

// moveFloats copies n floats (even) from s to d in vector moves of four
// and two: copy would call memmove for each few floats.
func moveFloats(d, s unsafe.Pointer, n int) {
	j := 0
	for ; j+4 <= n; j += 4 {
		*(*[4]float32)(unsafe.Add(d, 4*j)) = *(*[4]float32)(unsafe.Add(s, 4*j))
	}
	if j < n {
		*(*[2]float32)(unsafe.Add(d, 4*j)) = *(*[2]float32)(unsafe.Add(s, 4*j))
	}
}

// panelPad floats follow each packed panel of A, so that a vector packer
// may write a little past a panel's end (packColsTFast).
const panelPad = 8

// aOff is where the packed A panel mp of the depth block at pc starts.
func (t *gemmRunTask) aOff(pc, mp, kc int) int {
	if t.byDepth {
		return mp*t.g.mr*kc + mp*panelPad
	}
	mPanels := t.mPads / t.g.mr
	return pc*t.mPads + mp*t.g.mr*kc + (pc/gemmKC*mPanels+mp)*panelPad
}

// compute runs item i: C's columns [j·ncp·NR, (j+1)·ncp·NR) and rows
// [m·mcp·MR, (m+1)·mcp·MR) for j, m = i/mItems, i%mItems.
func (t *gemmRunTask) compute(worker, item int) {
	g, op := t.g, t.op
	mr, nr := g.mr, g.nr
	N, K, ldc := op.n, op.k, op.ldc
	n0 := item / t.mItems * t.ncp * nr
	nPanels := min(t.ncp, (N-n0+nr-1)/nr)
	mp0 := item % t.mItems * t.mcp
	mPanels := min(t.mPads/mr, mp0+t.mcp)
	tile := t.b.tile[worker][:mr*nr]
	c := op.c
	pcEnd := K
	pc := 0
	if t.byDepth {
		pc, pcEnd = t.pc0, t.pc0+1
	}
	for ; pc < pcEnd; pc += gemmKC {
		kc := min(gemmKC, K-pc)
		bp := t.b.packB[worker][:nPanels*nr*kc]
		for p := 0; p < nPanels; p++ {
			op.packB(bp[p*nr*kc:(p+1)*nr*kc], n0+p*nr, nr, pc, kc)
		}
		acc := 0
		if pc > 0 || op.acc {
			acc = 1
		}
		for ic := mp0; ic < mPanels; ic += gemmMCPanels {
			for p := 0; p < nPanels; p++ {
				c0 := n0 + p*nr
				nv := min(nr, N-c0)
				for mp := ic; mp < min(ic+gemmMCPanels, mPanels); mp++ {
					m0 := mp * mr
					mv := min(mr, op.m-m0)
					k0, k1 := 0, kc
					switch op.tri {
					case triUpperUnused:
						if c0 > m0+mv-1 {
							continue
						}
					case triALower:
						k1 = min(kc, m0+mv-pc)
					case triAUpper:
						k0 = max(0, m0-pc)
					}
					if k0 >= k1 {
						// Only zeros: nothing to add.
						if acc == 0 {
							for i := 0; i < mv; i++ {
								clear(c[(m0+i)*ldc+c0 : (m0+i)*ldc+c0+nv])
							}
						}
						continue
					}
					aptr := &t.b.packA[t.aOff(pc, mp, kc)+k0*mr]
					bptr := &bp[p*nr*kc+k0*nr]
					if mv == mr && nv == nr {
						g.kernel(k1-k0, aptr, bptr, &c[m0*ldc+c0], ldc, acc)
						continue
					}
					g.kernel(k1-k0, aptr, bptr, &tile[0], nr, 0)
					for i := 0; i < mv; i++ {
						o := c[(m0+i)*ldc+c0 : (m0+i)*ldc+c0+nv]
						s := tile[i*nr : i*nr+nv]
						if acc != 0 {
							for j := range o {
								o[j] += s[j]
							}
						} else {
							copy(o, s)
						}
					}
				}
			}
		}
	}
}

// packRowsT writes dst[k·w + i] = src[(r0+k)·ld + c0 + i] for k < kc and
// i < w, zero for i ≥ cnt: w consecutive values (cnt of them real) of kc
// rows of a row-major matrix.
func packRowsT(dst, src []float32, ld, r0, c0, kc, w, cnt int) {
	if cnt == w && w%2 == 0 && kc > 0 {
		// Whole panels (every micro-kernel's width is even) in pieces
		// of four and two floats, each a vector move: copy would call
		// memmove for every few floats.
		o := r0*ld + c0
		_, _ = src[o+(kc-1)*ld+w-1], dst[kc*w-1]
		sp, dp := unsafe.Pointer(&src[o]), unsafe.Pointer(&dst[0])
		for k := 0; k < kc; k++ {
			moveFloats(unsafe.Add(dp, 4*k*w), unsafe.Add(sp, 4*k*ld), w)
		}
		return
	}
	for k := 0; k < kc; k++ {
		d := dst[k*w : (k+1)*w]
		o := (r0+k)*ld + c0
		copy(d, src[o:o+cnt])
		clear(d[cnt:])
	}
}

// packColsT writes dst[k·w + i] = src[(r0+i)·ld + c0 + k] for k < kc and
// i < w, zero for i ≥ cnt: kc consecutive values of w rows, transposed.
func packColsT(dst, src []float32, ld, r0, c0, kc, w, cnt int) {
	for i := 0; i < w; i++ {
		d := dst[i:]
		if i >= cnt {
			for k := 0; k < kc; k++ {
				d[k*w] = 0
			}
			continue
		}
		row := src[(r0+i)*ld+c0 : (r0+i)*ld+c0+kc]
		for k, v := range row {
			d[k*w] = v
		}
	}
}

// packWRows writes dst[k·nr + j] = W[pc+k, n0+j] for k < kc and j < nr,
// decoded to float32, zero for columns past the end.
func packWRows(dst []float32, w *kernels.Matrix, n0, nr, pc, kc int) {
	cnt := max(0, min(nr, w.Cols-n0))
	if w.Type == kernels.F32 {
		packRowsT(dst, kernels.BytesF32(w.Data), w.Cols, pc, n0, kc, nr, cnt)
		return
	}
	decodeRows(dst, nr, w, pc, kc, n0, cnt)
	if cnt < nr {
		for k := 0; k < kc; k++ {
			clear(dst[k*nr+cnt : (k+1)*nr])
		}
	}
}

// decodeCols decodes len(dst) values of row r of w from column c0.
func decodeCols(dst []float32, w *kernels.Matrix, r, c0 int) {
	C := w.Cols
	switch w.Type {
	case kernels.F32:
		copy(dst, kernels.BytesF32(w.Data)[r*C+c0:r*C+c0+len(dst)])
	case kernels.F16:
		for j, h := range kernels.BytesU16(w.Data)[r*C+c0 : r*C+c0+len(dst)] {
			dst[j] = kernels.F16ToF32(h)
		}
	case kernels.BF16:
		for j, h := range kernels.BytesU16(w.Data)[r*C+c0 : r*C+c0+len(dst)] {
			dst[j] = math.Float32frombits(uint32(h) << 16)
		}
	case kernels.Q8_0:
		// Block by block: one scale, then the quants of the columns
		// wanted.
		row := w.Row(r)
		for j := 0; j < len(dst); {
			c := c0 + j
			blk := row[c/kernels.QK*kernels.Q8_0BlockBytes:][:kernels.Q8_0BlockBytes]
			d := kernels.F16ToF32(uint16(blk[0]) | uint16(blk[1])<<8)
			i0 := c % kernels.QK
			out := dst[j:min(len(dst), j+kernels.QK-i0)]
			for i, q := range blk[2+i0 : 2+i0+len(out)] {
				out[i] = float32(int8(q)) * d
			}
			j += len(out)
		}
	case kernels.Q4_0:
		row := w.Row(r)
		for j := 0; j < len(dst); {
			c := c0 + j
			blk := row[c/kernels.QK*kernels.Q4_0BlockBytes:][:kernels.Q4_0BlockBytes]
			d := kernels.F16ToF32(uint16(blk[0]) | uint16(blk[1])<<8)
			i0 := c % kernels.QK
			out := dst[j:min(len(dst), j+kernels.QK-i0)]
			for i := range out {
				q := blk[2+(i0+i)%(kernels.QK/2)]
				if i0+i >= kernels.QK/2 {
					q >>= 4
				}
				out[i] = float32(int(q&0x0f)-8) * d
			}
			j += len(out)
		}
	default:
		// The other block types: the blocks that hold the columns,
		// decoded whole.
		if !w.Type.Quantized() {
			panic("cpu: no decoder for " + w.Type.String())
		}
		decodeRow(dst, w.Type, w.Row(r), c0)
	}
}
