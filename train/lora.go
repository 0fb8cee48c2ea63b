package train

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// LoRA is a low-rank adapter beside a frozen linear map (Hu et al.):
//
//	y = base(x) + (alpha/rank) · B·(A·x)
//
// with A [rank, in] and B [out, rank] in float32. B starts at zero, so an
// adapter at initialisation leaves the model's outputs unchanged; A starts
// uniform in ±1/√in, drawn from the job's seed. The base may be of any
// weight type the runtime reads, so a Q4_0 or Q8_0 base gives QLoRA: its
// weights are never written and receive no gradient.
type LoRA struct {
	Base   model.Linear
	Rank   int
	In     int
	Out    int
	Scale  float32
	A, B   []float32 // the adapter's parameters
	GA, GB []float32 // their gradients, accumulated by Backward

	am, bm *kernels.Matrix // A and B as matrices over the same memory
	be     kernels.Backend
	tr     kernels.Trainer
	u, du  []float32 // [n, rank] scratch: A·x and its gradient
	tmp    []float32 // [n, out] scratch: B·u, and the scaled dy
}

// NewLoRA returns an adapter of rank over base, a map from in to out
// values, with its A drawn from r.
func NewLoRA(be kernels.Backend, base model.Linear, in, out, rank int, alpha float64, r *rand.Rand) (*LoRA, error) {
	tr, ok := be.(kernels.Trainer)
	if !ok {
		return nil, fmt.Errorf("lora: backend %s: %w", be.Name(), model.ErrNoTrainer)
	}
	if rank < 1 || rank > min(in, out) {
		return nil, fmt.Errorf("lora: rank %d for a %d×%d map: want 1 to %d", rank, out, in, min(in, out))
	}
	l := &LoRA{Base: base, Rank: rank, In: in, Out: out, Scale: float32(alpha / float64(rank)), be: be, tr: tr}
	buf := make([]float32, 2*(rank*in+out*rank))
	l.A, buf = buf[:rank*in:rank*in], buf[rank*in:]
	l.B, buf = buf[:out*rank:out*rank], buf[out*rank:]
	l.GA, buf = buf[:rank*in:rank*in], buf[rank*in:]
	l.GB = buf[: out*rank : out*rank]
	bound := 1 / math.Sqrt(float64(in))
	for i := range l.A {
		l.A[i] = float32((2*r.Float64() - 1) * bound)
	}
	var err error
	if l.am, err = kernels.NewMatrix(kernels.F32, rank, in, kernels.F32Bytes(l.A)); err != nil {
		return nil, err
	}
	if l.bm, err = kernels.NewMatrix(kernels.F32, out, rank, kernels.F32Bytes(l.B)); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LoRA) scratch(n int) {
	if len(l.u) < n*l.Rank {
		l.u = make([]float32, n*l.Rank)
		l.du = make([]float32, n*l.Rank)
	}
	if len(l.tmp) < n*l.Out {
		l.tmp = make([]float32, n*l.Out)
	}
}

// Apply sets out = base(x) + Scale·B·A·x for n rows.
func (l *LoRA) Apply(out, x []float32, n int) {
	l.Base.Apply(out, x, n)
	l.scratch(n)
	u, tmp := l.u[:n*l.Rank], l.tmp[:n*l.Out]
	l.be.MatMul(u, l.am, x, n)
	l.be.MatMul(tmp, l.bm, u, n)
	for i, v := range tmp {
		out[i] += l.Scale * v
	}
}

// Backward adds the gradient with respect to x to dx (the base's and the
// adapter's) and accumulates the gradients of A and B; the base stays
// frozen. It recomputes A·x rather than keeping it from Apply.
func (l *LoRA) Backward(dx, dy, x []float32, n int) {
	l.Base.Backward(dx, dy, x, n)
	l.scratch(n)
	u, du, sdy := l.u[:n*l.Rank], l.du[:n*l.Rank], l.tmp[:n*l.Out]
	l.be.MatMul(u, l.am, x, n)
	for i, v := range dy[:n*l.Out] {
		sdy[i] = l.Scale * v
	}
	l.tr.MatMulGrad(l.GB, sdy, u, n, l.Out, l.Rank)
	l.tr.MatMulT(du, l.bm, sdy, n, false)
	l.tr.MatMulGrad(l.GA, du, x, n, l.Rank, l.In)
	if dx != nil {
		l.tr.MatMulT(dx, l.am, du, n, true)
	}
}

// Delta adds Scale·B·A, the adapter's change of the weight, to w ([Out,
// In], row-major float32): merging it into the base. The sum runs in
// float64.
func (l *LoRA) Delta(w []float32) {
	for o := range l.Out {
		row := w[o*l.In : (o+1)*l.In]
		for i := range l.In {
			var s float64
			for k := range l.Rank {
				s += float64(l.B[o*l.Rank+k]) * float64(l.A[k*l.In+i])
			}
			row[i] += float32(float64(l.Scale) * s)
		}
	}
}

var _ model.Linear = (*LoRA)(nil)
