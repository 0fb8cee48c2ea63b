package node

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
	"github.com/mycel-net/mycel/node/api"
)

// The node's tests run the built-in model (models/tales.gguf, in the
// repository), imported under builtinName where a name is wanted.
const builtinName = "tales"

// builtinLayers is the built-in model's number of layers.
const builtinLayers = 6

// importBuiltin imports the built-in model (a GGUF with its vocabulary)
// on n under name, converted to dtype ("" keeps its own).
func importBuiltin(ctx context.Context, t *testing.T, n *Node, name, dtype string) api.ImportResult {
	t.Helper()
	res, err := api.NewClient(n.APIURL()).Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t), Name: name, DType: dtype})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var builtin struct {
	once sync.Once
	m    *checkpoints.Model
	be   kernels.Backend
	err  error
	mu   sync.Mutex // one generation at a time on the engine's backend
}

// builtinRef is what greedy generation with the built-in model gives, by
// one engine in this process: what the node's APIs must answer, from a
// local model or through the swarm.
type builtinRef struct {
	Text                           string // the continuation, as the APIs print it
	PromptTokens, CompletionTokens int
	StoppedAtEOS                   bool
}

// builtinGreedy generates greedily with the built-in model from prompt
// ("" for BOS alone) for at most n tokens, stopping at its end of text
// unless ignoreEOS.
func builtinGreedy(t testing.TB, prompt string, n int, ignoreEOS bool) builtinRef {
	t.Helper()
	p := testmodels.Builtin(t)
	builtin.once.Do(func() {
		if builtin.m, builtin.err = checkpoints.Load(p); builtin.err != nil {
			return
		}
		builtin.be, builtin.err = kernels.Open("cpu", 1)
	})
	if builtin.err != nil {
		t.Fatal(builtin.err)
	}
	builtin.mu.Lock()
	defer builtin.mu.Unlock()
	tok := builtin.m.Tokenizer
	ids := tok.Encode(prompt, tokenizer.EncodeOptions{BOS: true})
	dec := tok.NewDecoder()
	for _, id := range ids {
		dec.Next(id)
	}
	var text strings.Builder
	st, err := model.NewEngine(builtin.m.Weights, builtin.be).Generate(context.Background(), ids,
		model.GenerateOptions{MaxTokens: n, Stop: tokenizer.StopRule(tok, ignoreEOS)},
		func(id int) error { text.WriteString(dec.Next(id)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	text.WriteString(dec.Flush())
	return builtinRef{Text: text.String(), PromptTokens: len(ids), CompletionTokens: st.Generated, StoppedAtEOS: st.StoppedAtEOS}
}

// builtinContinues is the built-in model's greedy continuation of
// testmodels.BuiltinPrompt, 20 tokens.
func builtinContinues(t testing.TB) string {
	t.Helper()
	return builtinGreedy(t, testmodels.BuiltinPrompt, 20, false).Text
}

// tinyLlama2C writes a llama2.c checkpoint (version 0: the header and
// zero weights) of a tiny model, and returns its path. It has no
// vocabulary: the format keeps it in a file of its own.
func tinyLlama2C(t *testing.T) string {
	t.Helper()
	const dim, hidden, layers, heads, vocab, seq = 8, 16, 1, 2, 300, 16
	hdr := []int32{dim, hidden, layers, heads, heads, vocab, seq}
	floats := vocab*dim + layers*(2*dim+4*dim*dim+3*dim*hidden) + dim + seq*dim/heads
	b := make([]byte, 0, 4*(len(hdr)+floats))
	for _, v := range hdr {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	b = append(b, make([]byte, 4*floats)...)
	p := filepath.Join(t.TempDir(), "tiny.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
