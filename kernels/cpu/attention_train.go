package cpu

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// AttentionBackward is the gradient of causal grouped-query attention over
// a whole sequence; see kernels.Trainer.
//
// For query row t of head h (KV head g), with scores z[t,p] = Scale·q_t·k_p
// and weights P = softmax over p ≤ t of z (zero for p > t):
//
//	dP[t,p] = dout_t·v_p      D_t = Σ_p P[t,p]·dP[t,p]
//	dS[t,p] = Scale·P[t,p]·(dP[t,p] − D_t)
//	dq_t = Σ_p dS[t,p]·k_p      dk_p += Σ_t dS[t,p]·q_t      dv_p += Σ_t P[t,p]·dout_t
//
// Head by head, the five products are GEMMs on the micro-kernels of
// gemm.go (gemmRun), over N×N matrices kept in scratch: Q·Kᵀ and dout·Vᵀ
// give the raw scores and dP, one pass over the rows turns them into P and
// dS, then dS·K, dSᵀ·Q and Pᵀ·dout give the gradients. The products run
// at the GEMM's rate rather than a matrix-vector product's, and skip
// most of the causal triangle of zeros: the tiles of scores wholly above
// the diagonal, and in the sums over positions the terms that are zero
// (see triangle), to the granularity of a micro-kernel's tile. A key or
// value head shared by a group of query heads accumulates their
// gradients in head order.
//
// Every step is deterministic whatever the number of threads: the GEMMs
// are (see gemm_train.go), and the row pass computes each row alone.
func (b *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v []float32, p kernels.AttnParams) {
	H, G, hd, N := p.Heads, p.KVHeads, p.HeadDim, p.N
	if H <= 0 || G <= 0 || H%G != 0 || hd <= 0 || p.Pos0 != 0 || N < 0 {
		panic(fmt.Sprintf("cpu: AttentionBackward %+v", p))
	}
	qw, kw := H*hd, G*hd
	if len(q) < N*qw || len(dq) < N*qw || len(dout) < N*qw ||
		len(k) < N*kw || len(v) < N*kw || len(dk) < N*kw || len(dv) < N*kw {
		panic(fmt.Sprintf("cpu: AttentionBackward %+v: q %d, dq %d, dout %d, k %d, v %d, dk %d, dv %d",
			p, len(q), len(dq), len(dout), len(k), len(v), len(dk), len(dv)))
	}
	if N == 0 {
		return
	}
	group := H / G
	scale := p.Scale
	sc := b.tr.f32s(2 * N * N)
	S, dP := sc[:N*N], sc[N*N:]
	for h := 0; h < H; h++ {
		g := h / group
		qo, ko := h*hd, g*hd
		// S = Q_h·K_gᵀ and dP = dout_h·V_gᵀ, N×N.
		b.gemmRun(&gemmOp{m: N, n: N, k: hd, c: S, ldc: N, tri: triUpperUnused,
			packA: func(dst []float32, m0, mr, pc, kc int) {
				packColsTFast(dst, q, qw, m0, qo+pc, kc, mr, max(0, min(mr, N-m0)))
			},
			packB: func(dst []float32, n0, nr, pc, kc int) {
				packColsTFast(dst, k, kw, n0, ko+pc, kc, nr, max(0, min(nr, N-n0)))
			},
		})
		b.gemmRun(&gemmOp{m: N, n: N, k: hd, c: dP, ldc: N, tri: triUpperUnused,
			packA: func(dst []float32, m0, mr, pc, kc int) {
				packColsTFast(dst, dout, qw, m0, qo+pc, kc, mr, max(0, min(mr, N-m0)))
			},
			packB: func(dst []float32, n0, nr, pc, kc int) {
				packColsTFast(dst, v, kw, n0, ko+pc, kc, nr, max(0, min(nr, N-n0)))
			},
		})
		// Row by row: S becomes P and dP becomes dS.
		b.pool.run(fnTask(func(_, lo, hi int) {
			for t := lo; t < hi; t++ {
				s, d := S[t*N:(t+1)*N], dP[t*N:(t+1)*N]
				st := s[:t+1]
				iv := 1 / expShifted(st, st, maxF32(st), scale)
				for i := range st {
					st[i] *= iv
				}
				D := dotF32(st, d[:t+1])
				for i, pv := range st {
					d[i] = scale * pv * (d[i] - D)
				}
				clear(s[t+1:])
				clear(d[t+1:])
			}
		}), N, max(1, elemGrain/(4*N)))
		// dq_h = dS·K_g.
		b.gemmRun(&gemmOp{m: N, n: hd, k: N, c: dq[qo:], ldc: qw, tri: triALower,
			packA: func(dst []float32, m0, mr, pc, kc int) {
				packColsTFast(dst, dP, N, m0, pc, kc, mr, max(0, min(mr, N-m0)))
			},
			packB: func(dst []float32, n0, nr, pc, kc int) {
				packRowsT(dst, k, kw, pc, ko+n0, kc, nr, max(0, min(nr, hd-n0)))
			},
		})
		// dk_g (+)= dSᵀ·Q_h and dv_g (+)= Pᵀ·dout_h.
		acc := h%group != 0
		b.gemmRun(&gemmOp{m: N, n: hd, k: N, c: dk[ko:], ldc: kw, acc: acc, tri: triAUpper, aT: dP, ldaT: N,
			packB: func(dst []float32, n0, nr, pc, kc int) {
				packRowsT(dst, q, qw, pc, qo+n0, kc, nr, max(0, min(nr, hd-n0)))
			},
		})
		b.gemmRun(&gemmOp{m: N, n: hd, k: N, c: dv[ko:], ldc: kw, acc: acc, tri: triAUpper, aT: S, ldaT: N,
			packB: func(dst []float32, n0, nr, pc, kc int) {
				packRowsT(dst, dout, qw, pc, qo+n0, kc, nr, max(0, min(nr, hd-n0)))
			},
		})
	}
}
