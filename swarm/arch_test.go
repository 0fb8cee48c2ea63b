package swarm_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/p2p/blocks"
	"github.com/mycel-net/mycel/swarm"
)

// memBlocks is an in-memory block store. It copies what it is given:
// an import's chunks are views of the source file's memory map.
type memBlocks struct {
	mu sync.Mutex
	m  map[cid.Cid][]byte
}

func (s *memBlocks) PutMany(_ context.Context, bs []blocks.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range bs {
		s.m[b.CID] = bytes.Clone(b.Data)
	}
	return nil
}

func (s *memBlocks) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[c]
	if !ok {
		return blocks.Block{}, fmt.Errorf("%w: %s", blocks.ErrNotFound, c)
	}
	return blocks.Block{CID: c, Data: d}, nil
}

// fixtureSwarm is a fixture of models/arch imported into blocks, with the
// ids a local engine generates from its prompt.
type fixtureSwarm struct {
	t      *testing.T
	st     *memBlocks
	root   cid.Cid
	prompt []int
	want   []int
	logits []float32 // the local run's at the prompt's last position
	client *p2p.Host
	layers int
}

// newFixtureSwarm imports models/arch/NAME.gguf and generates n ids
// greedily from its 48-token prompt with one local engine (the servers'
// default KV cache type).
func newFixtureSwarm(t *testing.T, name string, n int) *fixtureSwarm {
	t.Helper()
	src, err := checkpoints.Load(testmodels.ArchModel(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return newModelSwarm(t, src, testmodels.Arch(t, name).InputIDs, n)
}

// newSynthSwarm is newFixtureSwarm for a random-weight model of config c
// (checkpoints.SynthArch) and a prompt of 16 ids.
func newSynthSwarm(t *testing.T, c model.Config, n int) *fixtureSwarm {
	t.Helper()
	var buf bytes.Buffer
	if err := checkpoints.SynthArch(&buf, c, "synthetic "+c.Arch, 1); err != nil {
		t.Fatal(err)
	}
	src, err := checkpoints.LoadBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	prompt := []int{1, 300, 17, 42, 259, 7, 99, 120, 3, 250, 64, 18, 201, 33, 5, 300}
	return newModelSwarm(t, src, prompt, n)
}

// newModelSwarm imports src into blocks and generates n ids greedily from
// prompt with one local engine.
func newModelSwarm(t *testing.T, src *checkpoints.Model, prompt []int, n int) *fixtureSwarm {
	t.Helper()
	fs := &fixtureSwarm{t: t, st: &memBlocks{m: map[cid.Cid][]byte{}}, prompt: prompt, layers: src.Weights.Config.Layers}
	im, err := shards.Import(context.Background(), src, fs.st)
	if err != nil {
		t.Fatal(err)
	}
	fs.root = im.Root
	_, err = model.NewEngine(src.Weights, backend(t)).Generate(context.Background(), fs.prompt, model.GenerateOptions{MaxTokens: n},
		func(id int) error { fs.want = append(fs.want, id); return nil })
	if err != nil || len(fs.want) != n {
		t.Fatalf("local run: %v, %d ids", err, len(fs.want))
	}
	fs.logits = localLogits(t, src.Weights, fs.prompt)
	fs.client = loopbackHost(t)
	return fs
}

// server starts a server of span on a host of its own, with the weights
// a serving node loads: that span's layers from the model's blocks.
func (fs *fixtureSwarm) server(span swarm.Span) (*swarm.Server, swarm.Hop) {
	t := fs.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := shards.Load(ctx, fs.st, fs.root, shards.Span{First: span.First, Last: span.Last})
	if err != nil {
		t.Fatal(err)
	}
	h := loopbackHost(t)
	s, err := swarm.NewServer(h.Libp2p(), l.Weights, backend(t), swarm.ServerConfig{Model: fs.root.String(), Span: span})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := fs.client.Libp2p().Connect(ctx, h.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	return s, swarm.Hop{Peer: h.ID(), Span: span}
}

// generate runs the prompt through route from a client holding the
// embedding and the head (loaded from the blocks), f32 on the wire, and
// returns len(fs.want) ids; after is called after each id.
func (fs *fixtureSwarm) generate(route []swarm.Hop, cfg swarm.ClientConfig, after func(int)) []int {
	t := fs.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := shards.Load(ctx, fs.st, fs.root, shards.Span{Embedding: true, Head: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model, cfg.DType = fs.root.String(), kernels.F32
	c, err := swarm.NewClient(fs.client.Libp2p(), l.Weights, backend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(ctx, route, len(fs.prompt)+len(fs.want)+1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []int
	if _, err := s.Generate(ctx, fs.prompt, model.GenerateOptions{MaxTokens: len(fs.want)}, func(id int) error {
		ids = append(ids, id)
		if after != nil {
			after(len(ids))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// promptLogits runs the prompt through route, MaxStep tokens a step, and
// returns the logits of its last position.
func (fs *fixtureSwarm) promptLogits(route []swarm.Hop) []float32 {
	t := fs.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := shards.Load(ctx, fs.st, fs.root, shards.Span{Embedding: true, Head: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := swarm.NewClient(fs.client.Libp2p(), l.Weights, backend(t), swarm.ClientConfig{Model: fs.root.String(), DType: kernels.F32})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(ctx, route, len(fs.prompt))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	logits := make([]float32, l.Weights.Config.Vocab)
	for p := 0; p < len(fs.prompt); {
		n := min(s.MaxStep(), len(fs.prompt)-p)
		if err := s.Step(ctx, fs.prompt[p:p+n], logits); err != nil {
			t.Fatal(err)
		}
		p += n
	}
	return logits
}

// localLogits is the logits of the prompt's last position, run by one
// engine over the file's weights.
func localLogits(t *testing.T, w *model.Weights, prompt []int) []float32 {
	t.Helper()
	e := model.NewEngine(w, backend(t))
	c := &w.Config
	cache, err := e.NewCache(0, c.Layers, len(prompt))
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(prompt)*c.Dim)
	if err := e.Embed(x, prompt); err != nil {
		t.Fatal(err)
	}
	if err := e.Forward(cache, x, len(prompt)); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, c.Vocab)
	if err := e.LogitsRows(out, x[(len(prompt)-1)*c.Dim:], 1); err != nil {
		t.Fatal(err)
	}
	return out
}

// Each architecture that runs, imported into blocks, split over two
// servers on real loopback hosts (all layers but the last on one, the
// last on the other, loaded from the blocks, all of its experts for a
// mixture of experts), gives the ids of the local run of the file, and
// the prompt's logits within float rounding of it. gemma3 has no fixture:
// a random-weight model of seven layers (five sliding, one global, one
// sliding, with heads of key_length) stands in for one.
func TestArchFixtureSpans(t *testing.T) {
	for _, name := range []string{"llama3", "qwen2", "qwen3", "gemma2", "phi3", "mixtral", "qwen3moe", "deepseek2", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			var fs *fixtureSwarm
			if name == "gemma3" {
				fs = newSynthSwarm(t, model.Config{
					Arch: "gemma3", Dim: 48, Hidden: 64, Layers: 7, Heads: 3, KVHeads: 1, HeadSize: 24,
					Vocab: 320, Context: 64, RopeTheta: 1e6, RopeStyle: kernels.RopeNeoX, NormEps: 1e-6,
					SharedClassifier: true, Act: model.ActGELU, EmbedScale: float32(math.Sqrt(48)),
					SlidingWindow: 5, SlidingEvery: 6, RopeLocalTheta: 10000, RopeScale: 8,
				}, 16)
			} else {
				fs = newFixtureSwarm(t, name+".F32", 16)
			}
			_, a := fs.server(swarm.Span{First: 0, Last: fs.layers - 1})
			_, b := fs.server(swarm.Span{First: fs.layers - 1, Last: fs.layers})
			route := []swarm.Hop{a, b}
			if d := firstDiff(fs.generate(route, swarm.ClientConfig{}, nil), fs.want); d != "" {
				t.Error(d)
			}
			got := fs.promptLogits(route)
			var maxDiff float64
			for i, v := range fs.logits {
				maxDiff = max(maxDiff, math.Abs(float64(got[i]-v)))
			}
			t.Logf("%s: prompt logits within %.3g of the local run's", name, maxDiff)
			if !(maxDiff <= 1e-4) {
				t.Errorf("prompt logits differ from the local run's by up to %.4g", maxDiff)
			}
		})
	}
}

// The Q4_K_M model (Q4_K and Q6_K weights) over three loopback servers:
// layer 0 on one, layer 1 on two. The second server of layer 1 closes
// after 8 ids; the client moves the span to the third, replays, and every
// id is the local run's; the prompt's logits through the first and the
// third are the local run's within float rounding.
func TestQ4KMSwarm(t *testing.T) {
	fs := newFixtureSwarm(t, "llama3.Q4_K_M", 20)
	_, a := fs.server(swarm.Span{First: 0, Last: 1})
	sb, b := fs.server(swarm.Span{First: 1, Last: 2})
	_, c := fs.server(swarm.Span{First: 1, Last: 2})
	var mu sync.Mutex
	var left []swarm.Event
	cfg := swarm.ClientConfig{Alternatives: []swarm.Hop{c}, OnEvent: func(ev swarm.Event) {
		if ev.Kind == swarm.EventLeft {
			mu.Lock()
			left = append(left, ev)
			mu.Unlock()
		}
	}}
	ids := fs.generate([]swarm.Hop{a, b}, cfg, func(k int) {
		if k == 8 {
			sb.Close()
		}
	})
	if d := firstDiff(ids, fs.want); d != "" {
		t.Error(d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(left) != 1 || left[0].Hop != c || left[0].Replaced != b.Peer {
		t.Errorf("left events %v, want one moving layer 1 from %s to %s", left, b.Peer, c.Peer)
	}
	got := fs.promptLogits([]swarm.Hop{a, c})
	var maxDiff float64
	for i, v := range fs.logits {
		maxDiff = max(maxDiff, math.Abs(float64(got[i]-v)))
	}
	t.Logf("prompt logits within %.3g of the local run's", maxDiff)
	if !(maxDiff <= 1e-4) {
		t.Errorf("prompt logits differ from the local run's by up to %.4g", maxDiff)
	}
}
