package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// MaxMicroBatch is the most sequences one forward and backward pass holds;
// a step of more runs as several passes whose gradients add up.
const MaxMicroBatch = 4

// Cursor is where a job stands in its data: the epoch (each epoch visits
// the training sequences in an order drawn from the seed and the epoch)
// and the next sequence of that order.
type Cursor struct {
	Epoch int `json:"epoch"`
	Next  int `json:"next"`
	// Redo are training sequences (indices in the training set) taken
	// before and not trained (their trainer left a group mid-round):
	// the next batches take them first.
	Redo []int `json:"redo,omitempty"`
}

// Same reports whether c and d stand at the same place.
func (c Cursor) Same(d Cursor) bool {
	return c.Epoch == d.Epoch && c.Next == d.Next && slices.Equal(c.Redo, d.Redo)
}

// Trainer runs a job on one machine: forward, backward and AdamW steps
// over the job's training sequences, deterministic for a given job, data,
// machine and thread count.
type Trainer struct {
	Job *Job
	// W are the weights trained (full fine-tuning: a float32 copy of the
	// base, owned by the trainer) or the frozen base (LoRA).
	W *model.Weights
	// LoRAs are the adapters, by layer then target, in Job.LoRATargets
	// order (LoRA only).
	LoRAs []*LoRA
	// Params are the trained tensors, in a fixed order.
	Params []*Param
	Opt    *AdamW
	// Step is the number of optimizer steps done.
	Step   int
	Cursor Cursor
	// Time is where the steps' time went, summed over the steps run.
	Time Timings

	eng   *model.Engine
	be    kernels.Backend
	acts  *model.Activations
	micro int
	grads *model.Grads

	trainSet, evalSet []Sequence
	order             []int // the epoch's order of trainSet
	batch             []int // what NextBatch last took, as indices in trainSet
	ids, targets      []int
}

// Timings split the time of training steps by phase.
type Timings struct {
	Forward, Backward, Optimizer time.Duration
}

// StepResult is what one optimizer step did.
type StepResult struct {
	Step     int     // the step's number, from 1
	Loss     float64 // mean loss over the step's trained tokens
	GradNorm float64 // before clipping
	LR       float64
	Tokens   int // trained tokens (targets) of the step
}

// NewTrainer prepares job on base (which the trainer does not close) with
// the backend be (which must have training kernels) over the training and
// evaluation sequences (none, to restore a checkpoint and export it). For
// full fine-tuning it copies the base into
// float32 master weights; for LoRA it wraps the target maps of every
// layer.
func NewTrainer(job *Job, base *model.Weights, be kernels.Backend, trainSet, evalSet []Sequence) (*Trainer, error) {
	if err := job.Validate(); err != nil {
		return nil, err
	}
	if _, ok := be.(kernels.Trainer); !ok {
		return nil, fmt.Errorf("train: backend %s: %w", be.Name(), model.ErrNoTrainer)
	}
	if err := base.Trainable(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	c := &base.Config
	if job.SeqLen > c.Context {
		return nil, fmt.Errorf("job file: seq_len: %d is longer than the model's context of %d", job.SeqLen, c.Context)
	}
	if base.Embedding == nil || base.Output == nil || base.FinalNorm == nil || !base.HasLayers(0, c.Layers) {
		return nil, errors.New("train: the model is not whole here (embedding, every layer and the head are needed)")
	}
	for i, s := range append(append([]Sequence(nil), trainSet...), evalSet...) {
		if len(s.Tokens) != job.SeqLen+1 || len(s.Weights) != job.SeqLen {
			return nil, fmt.Errorf("train: sequence %d has %d tokens and %d weights, want %d and %d", i, len(s.Tokens), len(s.Weights), job.SeqLen+1, job.SeqLen)
		}
		for _, id := range s.Tokens {
			if id < 0 || id >= c.Vocab {
				return nil, fmt.Errorf("train: sequence %d holds token %d, outside the model's vocabulary of %d", i, id, c.Vocab)
			}
		}
	}
	t := &Trainer{Job: job, be: be, trainSet: trainSet, evalSet: evalSet, Opt: NewAdamW(job.WeightDecay)}
	t.Opt.Workers = be.Threads()
	t.micro = min(job.Sequences(), MaxMicroBatch)
	for job.Sequences()%t.micro != 0 {
		t.micro--
	}
	switch job.Method {
	case MethodFull:
		t.W = cloneF32(base)
		t.eng = model.NewEngine(t.W, be, model.KVType(kernels.F32))
		t.grads = model.NewGrads(t.W)
		t.eng.SetGrads(t.grads)
		t.Params = fullParams(t.W, t.grads)
	case MethodLoRA:
		t.W = base
		t.eng = model.NewEngine(base, be, model.KVType(kernels.F32))
		if err := t.addLoRAs(); err != nil {
			return nil, err
		}
	}
	var err error
	if t.acts, err = t.eng.NewActivations(0, c.Layers, t.micro, job.SeqLen); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	n := t.micro * job.SeqLen
	t.ids, t.targets = make([]int, n), make([]int, n)
	t.shuffle()
	return t, nil
}

var projOfTarget = map[string]model.Proj{
	"q": model.ProjQ, "k": model.ProjK, "v": model.ProjV, "o": model.ProjO,
	"gate": model.ProjGate, "up": model.ProjUp, "down": model.ProjDown,
}

// addLoRAs wraps every target map of every layer in an adapter; each
// adapter's A is drawn from a stream of its own (seed, layer, target), so
// the draw does not depend on which other targets the job names.
func (t *Trainer) addLoRAs() error {
	j := t.Job
	for li := range t.W.Config.Layers {
		for _, name := range j.LoRATargets {
			p := projOfTarget[name]
			m := layerMatrix(t.W.Layers[li], p)
			r := rand.New(rand.NewPCG(j.Seed, uint64(li)<<8|uint64(p)))
			l, err := NewLoRA(t.be, t.eng.Linear(li, p), m.Cols, m.Rows, j.LoRARank, j.LoRAAlpha, r)
			if err != nil {
				return fmt.Errorf("train: layer %d %s: %w", li, name, err)
			}
			t.eng.SetLinear(li, p, l)
			t.LoRAs = append(t.LoRAs, l)
			prefix := fmt.Sprintf("blk.%d.%s.lora", li, name)
			t.Params = append(t.Params,
				&Param{Name: prefix + "_a", W: l.A, G: l.GA, Decay: true},
				&Param{Name: prefix + "_b", W: l.B, G: l.GB, Decay: true})
		}
	}
	return nil
}

// layerMatrix is the weight of map p in l.
func layerMatrix(l *model.Layer, p model.Proj) *kernels.Matrix {
	return [...]*kernels.Matrix{model.ProjQ: l.Wq, model.ProjK: l.Wk, model.ProjV: l.Wv, model.ProjO: l.Wo,
		model.ProjGate: l.W1, model.ProjUp: l.W3, model.ProjDown: l.W2}[p]
}

// cloneF32 copies w into float32 weights the trainer owns: master weights
// that full fine-tuning may write (w itself may be a read-only mapping).
func cloneF32(w *model.Weights) *model.Weights {
	mat := func(m *kernels.Matrix) *kernels.Matrix {
		if m == nil {
			return nil
		}
		f := make([]float32, m.Rows*m.Cols)
		for r := range m.Rows {
			kernels.Decode(f[r*m.Cols:(r+1)*m.Cols], m.Type, m.Row(r))
		}
		return &kernels.Matrix{Type: kernels.F32, Rows: m.Rows, Cols: m.Cols, Data: kernels.F32Bytes(f)}
	}
	vec := func(v []float32) []float32 { return append([]float32(nil), v...) }
	out := &model.Weights{Config: w.Config, Embedding: mat(w.Embedding), FinalNorm: vec(w.FinalNorm), Layers: make([]*model.Layer, len(w.Layers))}
	if w.Output == w.Embedding {
		out.Output = out.Embedding
	} else {
		out.Output = mat(w.Output)
	}
	for i, l := range w.Layers {
		if l == nil {
			continue
		}
		out.Layers[i] = &model.Layer{AttnNorm: vec(l.AttnNorm), FFNNorm: vec(l.FFNNorm),
			Wq: mat(l.Wq), Wk: mat(l.Wk), Wv: mat(l.Wv), Wo: mat(l.Wo), W1: mat(l.W1), W2: mat(l.W2), W3: mat(l.W3)}
	}
	return out
}

// fullParams lists every weight of w with its gradient in g.
func fullParams(w *model.Weights, g *model.Grads) []*Param {
	f := func(m *kernels.Matrix) []float32 { return kernels.BytesF32(m.Data) }
	ps := []*Param{{Name: "token_embd", W: f(w.Embedding), G: g.Embedding, Decay: true}}
	for i, l := range w.Layers {
		lg := g.Layers[i]
		b := fmt.Sprintf("blk.%d.", i)
		ps = append(ps,
			&Param{Name: b + "attn_norm", W: l.AttnNorm, G: lg.AttnNorm},
			&Param{Name: b + "attn_q", W: f(l.Wq), G: lg.Wq, Decay: true},
			&Param{Name: b + "attn_k", W: f(l.Wk), G: lg.Wk, Decay: true},
			&Param{Name: b + "attn_v", W: f(l.Wv), G: lg.Wv, Decay: true},
			&Param{Name: b + "attn_output", W: f(l.Wo), G: lg.Wo, Decay: true},
			&Param{Name: b + "ffn_norm", W: l.FFNNorm, G: lg.FFNNorm},
			&Param{Name: b + "ffn_gate", W: f(l.W1), G: lg.W1, Decay: true},
			&Param{Name: b + "ffn_down", W: f(l.W2), G: lg.W2, Decay: true},
			&Param{Name: b + "ffn_up", W: f(l.W3), G: lg.W3, Decay: true})
	}
	ps = append(ps, &Param{Name: "output_norm", W: w.FinalNorm, G: g.FinalNorm})
	if w.Output != w.Embedding {
		ps = append(ps, &Param{Name: "output", W: f(w.Output), G: g.Output, Decay: true})
	}
	return ps
}

// shuffle draws the current epoch's order of the training sequences.
func (t *Trainer) shuffle() {
	t.order = make([]int, len(t.trainSet))
	for i := range t.order {
		t.order[i] = i
	}
	r := rand.New(rand.NewPCG(t.Job.Seed, 0x65706f6368^uint64(t.Cursor.Epoch)))
	r.Shuffle(len(t.order), func(i, j int) { t.order[i], t.order[j] = t.order[j], t.order[i] })
}

// next returns the index in trainSet of the next training sequence (one
// to redo first) and moves the cursor.
func (t *Trainer) next() int {
	if len(t.Cursor.Redo) > 0 {
		k := t.Cursor.Redo[0]
		t.Cursor.Redo = t.Cursor.Redo[1:]
		return k
	}
	if t.Cursor.Next >= len(t.order) {
		t.Cursor.Epoch++
		t.Cursor.Next = 0
		t.shuffle()
	}
	k := t.order[t.Cursor.Next]
	t.Cursor.Next++
	return k
}

// fill lays seqs out as the rows of a pass: inputs and targets (-1 where
// the target does not train).
func (t *Trainer) fill(seqs []Sequence) {
	L := t.Job.SeqLen
	for b, s := range seqs {
		for i := range L {
			t.ids[b*L+i] = s.Tokens[i]
			t.targets[b*L+i] = -1
			if s.Weights[i] != 0 {
				t.targets[b*L+i] = s.Tokens[i+1]
			}
		}
	}
}

// RunStep runs one optimizer step: the job's batch of sequences in
// micro-batches, their gradients added up with each micro-batch weighted by
// its share of the step's trained tokens, clipping, and an AdamW update at
// the step's learning rate.
func (t *Trainer) RunStep() (StepResult, error) {
	if len(t.trainSet) == 0 {
		return StepResult{}, fmt.Errorf("train: no training sequence of %d tokens to train on", t.Job.SeqLen)
	}
	seqs := t.NextBatch()
	loss, tokens, err := t.Gradients(seqs)
	if err != nil {
		return StepResult{}, err
	}
	if tokens == 0 {
		return StepResult{Step: t.Step + 1}, fmt.Errorf("train: step %d: its %d sequences hold no trained token", t.Step+1, len(seqs))
	}
	return t.ApplyGradients(loss, tokens)
}

// NextBatch returns the step's batch, the job's Sequences() sequences
// from the cursor on, and moves the cursor past them. Peers that train
// one job together each take their share of it (Share).
func (t *Trainer) NextBatch() []Sequence {
	seqs := make([]Sequence, t.Job.Sequences())
	t.batch = t.batch[:0]
	for i := range seqs {
		k := t.next()
		t.batch = append(t.batch, k)
		seqs[i] = t.trainSet[k]
	}
	return seqs
}

// LastBatch returns the indices in the training set of the sequences the
// last NextBatch returned, in its order.
func (t *Trainer) LastBatch() []int { return slices.Clone(t.batch) }

// Redo puts training sequences (indices in the training set, as
// LastBatch gives them) first in line for the next batches: work taken
// and lost, so that no example of an epoch goes untrained.
func (t *Trainer) Redo(idx []int) {
	t.Cursor.Redo = slices.Concat(t.Cursor.Redo, idx)
}

// Seek moves the data cursor back to c, a place this job's data reached
// before: a batch taken and not trained (a round that failed) is taken
// again.
func (t *Trainer) Seek(c Cursor) {
	t.Cursor = c
	t.shuffle()
}

// Share is member i's share of a batch split among n members: contiguous
// runs of sequences, the first len(batch)%n members taking one more.
func Share(batch []Sequence, i, n int) []Sequence {
	from, to := ShareRange(len(batch), i, n)
	return batch[from:to]
}

// ShareRange is where member i's share of a batch of size sequences
// split among n members lies: batch[from:to].
func ShareRange(size, i, n int) (from, to int) {
	q, r := size/n, size%n
	from = i*q + min(i, r)
	to = from + q
	if i < r {
		to++
	}
	return from, to
}

// Gradients computes the gradient of the mean loss over seqs' trained
// tokens into the trained tensors' G, in micro-batches each weighted by
// its share of the tokens, and returns that mean loss and the number of
// trained tokens (0: the gradients are zero).
func (t *Trainer) Gradients(seqs []Sequence) (loss float64, tokens int, err error) {
	for _, s := range seqs {
		tokens += s.Targets()
	}
	ZeroGrads(t.Params)
	for at := 0; at < len(seqs); at += t.micro {
		part := seqs[at:min(at+t.micro, len(seqs))]
		for len(part) < t.micro { // a share may end in a short micro-batch: pad with sequences that train nothing
			part = append(part[:len(part):len(part)], Sequence{Tokens: make([]int, t.Job.SeqLen+1), Weights: make([]float32, t.Job.SeqLen)})
		}
		t.fill(part)
		n := 0
		for _, s := range part {
			n += s.Targets()
		}
		if n == 0 {
			continue
		}
		t0 := time.Now()
		l, err := t.eng.TrainForward(t.acts, t.ids, t.targets)
		if err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		t.Time.Forward += t1.Sub(t0)
		// TrainForward's loss and gradients are means over this
		// micro-batch's n targets: weight them by w = n/tokens. The
		// backward adds into what earlier micro-batches left, so that is
		// divided by w first and the sum multiplied by w after.
		w := float64(n) / float64(tokens)
		loss += w * l
		if at > 0 && w != 1 {
			scaleGrads(t.Params, 1/w)
		}
		if err := t.eng.TrainBackward(t.acts); err != nil {
			return 0, 0, err
		}
		if w != 1 {
			scaleGrads(t.Params, w)
		}
		t.Time.Backward += time.Since(t1)
	}
	return loss, tokens, nil
}

// ApplyGradients ends a step whose gradients are in the trained tensors'
// G (the mean over tokens trained tokens, whose mean loss was loss):
// clipping, and an AdamW update at the step's learning rate.
func (t *Trainer) ApplyGradients(loss float64, tokens int) (StepResult, error) {
	t0 := time.Now()
	defer func() { t.Time.Optimizer += time.Since(t0) }()
	res := StepResult{Step: t.Step + 1, Loss: loss, Tokens: tokens, LR: t.Job.LRAt(t.Step)}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return res, fmt.Errorf("train: step %d: loss %w", t.Step+1, ErrNotFinite)
	}
	var err error
	if res.GradNorm, err = ClipGrads(t.Params, t.Job.GradClip); err != nil {
		return res, fmt.Errorf("train: step %d: %w", t.Step+1, err)
	}
	if err := t.Opt.Update(t.Params, res.LR); err != nil {
		return res, err
	}
	t.Step++
	return res, nil
}

// EvalLoss is the mean loss over the evaluation sequences (NaN when there
// are none), without touching gradients or parameters.
func (t *Trainer) EvalLoss() (float64, error) {
	if len(t.evalSet) == 0 {
		return math.NaN(), nil
	}
	var sum float64
	total := 0
	for at := 0; at < len(t.evalSet); at += t.micro {
		part := t.evalSet[at:min(at+t.micro, len(t.evalSet))]
		for len(part) < t.micro { // pad with sequences that train nothing
			part = append(part, Sequence{Tokens: make([]int, t.Job.SeqLen+1), Weights: make([]float32, t.Job.SeqLen)})
		}
		t.fill(part)
		n := 0
		for _, s := range part {
			n += s.Targets()
		}
		if n == 0 {
			continue
		}
		l, err := t.eng.TrainForward(t.acts, t.ids, t.targets)
		if err != nil {
			return 0, err
		}
		sum += l * float64(n)
		total += n
	}
	if total == 0 {
		return math.NaN(), nil
	}
	return sum / float64(total), nil
}

// Engine is the trainer's engine: with the adapters in place, it runs the
// model being trained (for sampling from it between steps).
func (t *Trainer) Engine() *model.Engine { return t.eng }

func scaleGrads(params []*Param, s float64) {
	f := float32(s)
	for _, p := range params {
		for i := range p.G {
			p.G[i] *= f
		}
	}
}

// Merged returns float32 weights with every adapter merged into its base
// (W + (alpha/rank)·B·A), which run without adapters; for full
// fine-tuning, the trained weights themselves.
func (t *Trainer) Merged() *model.Weights {
	if t.Job.Method == MethodFull {
		return t.W
	}
	out := cloneF32(t.W)
	i := 0
	for li := range out.Config.Layers {
		for _, name := range t.Job.LoRATargets {
			m := layerMatrix(out.Layers[li], projOfTarget[name])
			t.LoRAs[i].Delta(kernels.BytesF32(m.Data))
			i++
		}
	}
	return out
}
