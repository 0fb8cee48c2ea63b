package cpu

import (
	"fmt"

	"github.com/mycel-net/mycel/kernels"
)

// AttentionBackward is the gradient of causal grouped-query attention over
// a whole sequence; see kernels.Trainer.
//
// For query row t of head h (KV head g), with scores z[p] = Scale·q_t·k_p
// and weights P = softmax(z) over p ≤ t:
//
//	dP[p] = dout_t·v_p      D_t = Σ_p P[p]·dP[p]      dS[p] = P[p]·(dP[p] − D_t)
//	dq_t  = Scale·Σ_p dS[p]·k_p
//	dk_p += Scale·dS[p]·q_t      dv_p += P[p]·dout_t
//
// It runs in two passes, each output owned by one work item, so the
// result does not depend on the number of threads. The first pass takes
// the (t, h) pairs: it recomputes the weights, writes dq_t and keeps each
// row's softmax maximum, normalizer and D_t. The second takes the (p, g)
// pairs: it recomputes the column of weights P[t][p] for t ≥ p from the
// kept statistics and sums dk_p and dv_p over those rows and the heads of
// the group.
//
// Every product is a column-major matrix-vector product (gemvCM), the
// kernel of the forward attention, over copies of q, k, v and dout
// transposed per head.
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

	// Scratch: the transposed heads [head][i][t], then per (h, t) the
	// softmax maximum, 1/normalizer and D.
	s := b.tr.f32s(2*G*hd*N + 2*H*hd*N + 3*H*N)
	kT, s := s[:G*hd*N], s[G*hd*N:]
	vT, s := s[:G*hd*N], s[G*hd*N:]
	qT, s := s[:H*hd*N], s[H*hd*N:]
	dT, s := s[:H*hd*N], s[H*hd*N:]
	mx, s := s[:H*N], s[H*N:]
	inv, dd := s[:H*N], s[H*N:2*H*N]
	b.pool.run(fnTask(func(_, lo, hi int) {
		for it := lo; it < hi; it++ {
			if it < G {
				transposeHead(kT[it*hd*N:(it+1)*hd*N], k[it*hd:], kw, hd, N)
				transposeHead(vT[it*hd*N:(it+1)*hd*N], v[it*hd:], kw, hd, N)
			} else {
				h := it - G
				transposeHead(qT[h*hd*N:(h+1)*hd*N], q[h*hd:], qw, hd, N)
				transposeHead(dT[h*hd*N:(h+1)*hd*N], dout[h*hd:], qw, hd, N)
			}
		}
	}), G+H, max(1, elemGrain/(2*hd*N)))

	scratch := b.perWorker(2*N + 3*hd)
	// Pass 1: item t·H + h.
	b.pool.run(fnTask(func(worker, lo, hi int) {
		ws := scratch[worker]
		for it := lo; it < hi; it++ {
			t, h := it/H, it%H
			g := h / group
			n := t + 1
			sc, dp := ws[:n], ws[N:N+n]
			gemvCM(sc, kT[g*hd*N:(g+1)*hd*N], N, q[t*qw+h*hd:t*qw+(h+1)*hd])
			m := maxF32(sc)
			iv := 1 / expShifted(sc, sc, m, scale)
			for i := range sc {
				sc[i] *= iv
			}
			gemvCM(dp, vT[g*hd*N:(g+1)*hd*N], N, dout[t*qw+h*hd:t*qw+(h+1)*hd])
			d := dotF32(sc, dp)
			for i, pv := range sc {
				dp[i] = pv * (dp[i] - d)
			}
			o := dq[t*qw+h*hd : t*qw+(h+1)*hd]
			gemvCM(o, k[g*hd:], kw, dp)
			for i := range o {
				o[i] *= scale
			}
			mx[h*N+t], inv[h*N+t], dd[h*N+t] = m, iv, d
		}
	}), N*H, max(1, macsPerChunk/(3*N*hd)))

	// Pass 2: item p·G + g.
	b.pool.run(fnTask(func(worker, lo, hi int) {
		ws := scratch[worker]
		for it := lo; it < hi; it++ {
			p0, g := it/G, it%G
			L := N - p0
			pc, ds := ws[:L], ws[N:N+L]
			tmp, ak, av := ws[2*N:2*N+hd], ws[2*N+hd:2*N+2*hd], ws[2*N+2*hd:2*N+3*hd]
			clear(ak)
			clear(av)
			kp := k[p0*kw+g*hd : p0*kw+(g+1)*hd]
			vp := v[p0*kw+g*hd : p0*kw+(g+1)*hd]
			for h := g * group; h < (g+1)*group; h++ {
				gemvCM(pc, qT[h*hd*N+p0:(h+1)*hd*N], N, kp)
				ms, is := mx[h*N+p0:h*N+N], inv[h*N+p0:h*N+N]
				for i, z := range pc {
					pc[i] = (z - ms[i]) * scale
				}
				expShifted(pc, pc, 0, 1)
				for i := range pc {
					pc[i] *= is[i]
				}
				gemvCM(ds, dT[h*hd*N+p0:(h+1)*hd*N], N, vp)
				dh := dd[h*N+p0 : h*N+N]
				for i, pv := range pc {
					ds[i] = pv * (ds[i] - dh[i])
				}
				gemvCM(tmp, q[p0*qw+h*hd:], qw, ds)
				addTo(ak, tmp)
				gemvCM(tmp, dout[p0*qw+h*hd:], qw, pc)
				addTo(av, tmp)
			}
			ok := dk[p0*kw+g*hd : p0*kw+(g+1)*hd]
			for i, x := range ak {
				ok[i] = x * scale
			}
			copy(dv[p0*kw+g*hd:p0*kw+(g+1)*hd], av)
		}
	}), N*G, max(1, macsPerChunk/(4*N*hd*group)))
}

// transposeHead writes the head at src (rows of stride ld, hd values
// each, n rows) transposed into dst: dst[i·n + t] = src[t·ld + i].
func transposeHead(dst, src []float32, ld, hd, n int) {
	for t := 0; t < n; t++ {
		row := src[t*ld : t*ld+hd]
		for i, x := range row {
			dst[i*n+t] = x
		}
	}
}
