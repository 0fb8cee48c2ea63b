package cpu

import (
	"math"
	"unsafe"

	"github.com/mycel-net/mycel/kernels"
)

// GEMM for MatMul with several rows of activations (prefill, training):
// out[n×rows] = x[n×cols] · Wᵀ, the product every position of a prompt
// needs with one weight matrix, computed at once so that W streams from
// memory once, not n times.
//
// The classic packed, cache-blocked scheme. x is packed once per call into
// panels of MR rows, k-major (a[k·MR+i] = x[m0+i, k]), in blocks of gemmKC
// columns. The work is split over W's rows in items of gemmNCPanels·NR rows;
// an item packs its rows of W, transposed and converted to float32, one
// depth block at a time (b[k·NR+j] = W[n0+j, k]), and runs the micro-kernel
// over every MR×NR tile: the W panel stays in L1 while the x panels stream
// from L2. Partial tiles on the edges compute into a scratch tile.

const (
	// gemmKC is the depth of a packed block: a 12×256 x panel is 12 KB and
	// a 256×32 W panel 32 KB, so one W panel and two x panels fit in L1.
	gemmKC = 256
	// gemmMCPanels x panels (of MR rows) make a block that stays in L2.
	gemmMCPanels = 16
	// gemmNCPanels W panels (of NR rows) make one work item.
	gemmNCPanels = 4
	// gemmMinN is the fewest activation rows worth a GEMM; fewer run as
	// matrix-vector products. Packing W costs about four matvecs' worth of
	// memory traffic, so below ~6 rows the matvecs win (measured on Zen 5
	// at 768² and 4096²).
	gemmMinN = 6
)

// gemmKernel computes one MR×NR tile from packed panels:
//
//	for i < MR, j < NR {
//		s := Σ_{k<kc} a[k·MR+i] · b[k·NR+j]
//		if acc != 0 { c[i·ldc+j] += s } else { c[i·ldc+j] = s }
//	}
type gemmKernel func(kc int, a, b, c *float32, ldc, acc int)

// gemmShape is a micro-kernel and its tile.
type gemmShape struct {
	mr, nr int
	kernel gemmKernel
}

var gemmGo = gemmShape{4, 4, gemm4x4Go}

// gemmImpl is the micro-kernel in use, set with the ISA.
var gemmImpl = gemmGo

// gemm4x4Go is the pure-Go micro-kernel: a 4×4 tile in 16 scalars.
func gemm4x4Go(kc int, a, b, c *float32, ldc, acc int) {
	as := unsafe.Slice(a, 4*kc)
	bs := unsafe.Slice(b, 4*kc)
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	for k := 0; k+4 <= len(as) && k+4 <= len(bs); k += 4 {
		a0, a1, a2, a3 := as[k], as[k+1], as[k+2], as[k+3]
		b0, b1, b2, b3 := bs[k], bs[k+1], bs[k+2], bs[k+3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	t := [16]float32{c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33}
	cs := unsafe.Slice(c, 3*ldc+4)
	for i := 0; i < 4; i++ {
		row := cs[i*ldc : i*ldc+4]
		if acc != 0 {
			for j := range row {
				row[j] += t[4*i+j]
			}
		} else {
			copy(row, t[4*i:4*i+4])
		}
	}
}

// gemmTask runs in two stages over the pool: packing x, then the tiles.
type gemmTask struct {
	b     *Backend
	g     gemmShape
	out   []float32
	w     *kernels.Matrix
	x     []float32
	m     int // rows of x
	mPads int // rows of x rounded up to MR
	pack  bool
}

func (b *Backend) gemm(out []float32, w *kernels.Matrix, x []float32, n int) {
	g := gemmImpl
	mPanels := (n + g.mr - 1) / g.mr
	need := mPanels * g.mr * w.Cols
	if cap(b.packA) < need {
		b.packA = make([]float32, need)
	}
	nbuf := gemmNCPanels * g.nr * min(gemmKC, w.Cols)
	for i := range b.packB {
		if cap(b.packB[i]) < nbuf {
			b.packB[i] = make([]float32, nbuf)
		}
		if cap(b.tile[i]) < g.mr*g.nr {
			b.tile[i] = make([]float32, g.mr*g.nr)
		}
	}
	t := &b.gm
	*t = gemmTask{b: b, g: g, out: out, w: w, x: x, m: n, mPads: mPanels * g.mr, pack: true}
	kBlocks := (w.Cols + gemmKC - 1) / gemmKC
	b.pool.run(t, mPanels*kBlocks, max(1, 4096/(g.mr*min(w.Cols, gemmKC))))
	t.pack = false
	items := (w.Rows + gemmNCPanels*g.nr - 1) / (gemmNCPanels * g.nr)
	b.pool.run(t, items, max(1, macsPerChunk/(n*gemmNCPanels*g.nr*w.Cols)))
	*t = gemmTask{}
}

func (t *gemmTask) run(worker, lo, hi int) {
	for i := lo; i < hi; i++ {
		if t.pack {
			t.packX(i)
		} else {
			t.compute(worker, i)
		}
	}
}

// packX packs item i: the x panel i%mPanels of depth block i/mPanels.
func (t *gemmTask) packX(i int) {
	mr, K := t.g.mr, t.w.Cols
	mPanels := t.mPads / mr
	pc := i / mPanels * gemmKC
	mp := i % mPanels
	kc := min(gemmKC, K-pc)
	dst := t.b.packA[pc*t.mPads+mp*mr*kc : pc*t.mPads+(mp+1)*mr*kc]
	for r := 0; r < mr; r++ {
		m := mp*mr + r
		if m >= t.m {
			for k := 0; k < kc; k++ {
				dst[k*mr+r] = 0
			}
			continue
		}
		src := t.x[m*K+pc : m*K+pc+kc]
		d := dst[r:]
		for k, v := range src {
			d[k*mr] = v
		}
	}
}

// compute runs work item i: W rows [i·NC, (i+1)·NC) against all of x.
func (t *gemmTask) compute(worker, item int) {
	g := t.g
	mr, nr := g.mr, g.nr
	N, K := t.w.Rows, t.w.Cols
	n0 := item * gemmNCPanels * nr
	nPanels := min(gemmNCPanels, (N-n0+nr-1)/nr)
	mPanels := t.mPads / mr
	tile := t.b.tile[worker][:mr*nr]
	for pc := 0; pc < K; pc += gemmKC {
		kc := min(gemmKC, K-pc)
		bp := t.b.packB[worker][:nPanels*nr*kc]
		for p := 0; p < nPanels; p++ {
			packW(bp[p*nr*kc:(p+1)*nr*kc], t.w, n0+p*nr, nr, pc, kc)
		}
		acc := 0
		if pc > 0 {
			acc = 1
		}
		for ic := 0; ic < mPanels; ic += gemmMCPanels {
			for p := 0; p < nPanels; p++ {
				c0 := n0 + p*nr
				nv := min(nr, N-c0)
				bptr := &bp[p*nr*kc]
				for mp := ic; mp < min(ic+gemmMCPanels, mPanels); mp++ {
					m0 := mp * mr
					mv := min(mr, t.m-m0)
					aptr := &t.b.packA[pc*t.mPads+mp*mr*kc]
					if mv == mr && nv == nr {
						g.kernel(kc, aptr, bptr, &t.out[m0*N+c0], N, acc)
						continue
					}
					g.kernel(kc, aptr, bptr, &tile[0], nr, 0)
					for i := 0; i < mv; i++ {
						o := t.out[(m0+i)*N+c0 : (m0+i)*N+c0+nv]
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

// packW writes rows [r0, r0+nr) of w, columns [pc, pc+kc), transposed into
// dst: dst[k·nr+j] = W[r0+j, pc+k], zero for rows past the end.
func packW(dst []float32, w *kernels.Matrix, r0, nr, pc, kc int) {
	for j := 0; j < nr; j++ {
		r := r0 + j
		d := dst[j:]
		if j%8 == 0 && r+8 <= w.Rows && pack8 != nil {
			// Eight whole rows: the vector transpose does the columns
			// it can, the loop below the rest, one row at a time.
			k8 := pack8(d, w, r, nr, pc, kc)
			if k8 == kc {
				j += 7
				continue
			}
			for jj := j; jj < j+8; jj++ {
				packRow(dst[jj:], w, r0+jj, nr, pc+k8, kc-k8, k8)
			}
			j += 7
			continue
		}
		if r >= w.Rows {
			for k := 0; k < kc; k++ {
				d[k*nr] = 0
			}
			continue
		}
		packRow(dst[j:], w, r, nr, pc, kc, 0)
	}
}

// packRow writes row r of w, columns [pc, pc+kc), to d[(k0+k)·nr].
func packRow(d []float32, w *kernels.Matrix, r, nr, pc, kc, k0 int) {
	K := w.Cols
	d = d[k0*nr:]
	switch w.Type {
	case kernels.F32:
		src := kernels.BytesF32(w.Data)[r*K+pc : r*K+pc+kc]
		for k, v := range src {
			d[k*nr] = v
		}
	case kernels.F16:
		src := kernels.BytesU16(w.Data)[r*K+pc : r*K+pc+kc]
		for k, h := range src {
			d[k*nr] = kernels.F16ToF32(h)
		}
	case kernels.BF16:
		src := kernels.BytesU16(w.Data)[r*K+pc : r*K+pc+kc]
		for k, h := range src {
			d[k*nr] = math.Float32frombits(uint32(h) << 16)
		}
	default:
		// A block type: the blocks that hold the columns, decoded whole.
		var tmp [gemmKC]float32
		for k0 := 0; k0 < kc; k0 += gemmKC {
			part := tmp[:min(gemmKC, kc-k0)]
			decodeRow(part, w.Type, w.Row(r), pc+k0)
			for k, v := range part {
				d[(k0+k)*nr] = v
			}
		}
	}
}

// pack8, where the CPU has one, packs eight whole rows of w as packW does,
// the columns up to a multiple of 8, and returns how many it did.
var pack8 func(dst []float32, w *kernels.Matrix, r0, nr, pc, kc int) int
