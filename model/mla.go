package model

// Multi-head latent attention (Layer.MLA) computes the queries, keys and
// values of m rows from the normed input xa as the MLA type's comment
// says, into the same buffers as the plain projections: q [m, Heads·HeadDim]
// and k, v [m, KVHeads·HeadDim]. Each key head is [k_nope | k_rope], the
// rotated part shared by every head; each value head is ValueDim values
// padded with zeros to HeadDim, so that the cache and attention see heads
// of one width (the padding's outputs are dropped before the output
// projection).

// mlaScratch is the engine's scratch for latent attention over up to cap
// rows.
type mlaScratch struct {
	qa  []float32 // [n, QLoRA]
	ckv []float32 // KVA·x [n, KVLoRA+RopeDim]
	c   []float32 // the normed latent [n, KVLoRA]
	kvb []float32 // KVB·c [n, KVHeads·(HeadDim-RopeDim+ValueDim)]
}

func (s *mlaScratch) grow(c *Config, n int) {
	r := c.RotaryDim()
	*s = mlaScratch{
		qa:  make([]float32, n*c.QLoRA),
		ckv: make([]float32, n*(c.KVLoRA+r)),
		c:   make([]float32, n*c.KVLoRA),
		kvb: make([]float32, n*c.KVHeads*(c.HeadDim()-r+c.ValueDim())),
	}
}

// latentQKV sets b.q, b.k and b.v for the m rows of b.xa.
func (e *Engine) latentQKV(l *Layer, b *blockBufs, m int) {
	cfg := &e.w.Config
	a, s, be := l.MLA, &e.mla, e.be
	d, qd, hd := cfg.Dim, e.qDim, e.headDim
	r, lr, dv, kvh := cfg.RotaryDim(), cfg.KVLoRA, cfg.ValueDim(), cfg.KVHeads
	nope := hd - r
	xa := b.xa[:m*d]
	if a.QA != nil {
		qa := s.qa[:m*cfg.QLoRA]
		mulRows(be, qa, a.QA, xa, m)
		be.RMSNorm(qa, qa, a.QANorm, cfg.NormEps)
		mulRows(be, b.q[:m*qd], a.QB, qa, m)
	} else {
		mulRows(be, b.q[:m*qd], l.Wq, xa, m)
	}
	ckv := s.ckv[:m*(lr+r)]
	mulRows(be, ckv, a.KVA, xa, m)
	for i := range m {
		copy(s.c[i*lr:(i+1)*lr], ckv[i*(lr+r):i*(lr+r)+lr])
	}
	c := s.c[:m*lr]
	be.RMSNorm(c, c, a.KVANorm, cfg.NormEps)
	w := nope + dv
	kvb := s.kvb[:m*kvh*w]
	mulRows(be, kvb, a.KVB, c, m)
	for i := range m {
		kr := ckv[i*(lr+r)+lr : (i+1)*(lr+r)]
		for h := range kvh {
			src := kvb[(i*kvh+h)*w : (i*kvh+h+1)*w]
			k := b.k[(i*kvh+h)*hd : (i*kvh+h+1)*hd]
			v := b.v[(i*kvh+h)*hd : (i*kvh+h+1)*hd]
			copy(k[:nope], src[:nope])
			copy(k[nope:], kr)
			copy(v[:dv], src[nope:])
			clear(v[dv:])
		}
	}
}
