package main

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
	"github.com/mycel-net/mycel/model/tokenizer"
)

// builtinLayers is the built-in model's number of layers.
const builtinLayers = 6

// localRun runs `mycel run` greedily on the built-in model file, on this
// machine alone, with args (-n, the prompt, ...), and returns its stdout
// and stderr: what a run through a node or the swarm must print.
func localRun(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out, stderr, err := mycel(t, append([]string{"run", "-m", testmodels.Builtin(t), "--temp", "0"}, args...)...)
	if err != nil {
		t.Fatalf("mycel run on the built-in model: %v\n%s", err, stderr)
	}
	return out, stderr
}

// builtinStory is the built-in model's greedy generation from BOS by one
// engine in this process, as mycel run prints it (with its newline),
// stopping at the model's end of text unless ignoreEOS, for at most n
// tokens; and the number of tokens generated.
func builtinStory(t *testing.T, n int, ignoreEOS bool) (string, int) {
	t.Helper()
	m, err := checkpoints.Load(testmodels.Builtin(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	be, err := kernels.Open("cpu", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	tok := m.Tokenizer
	dec := tok.NewDecoder()
	dec.Next(tok.BOS())
	var b strings.Builder
	st, err := model.NewEngine(m.Weights, be).Generate(context.Background(), []int{tok.BOS()},
		model.GenerateOptions{MaxTokens: n, Stop: tokenizer.StopRule(tok, ignoreEOS)},
		func(id int) error { b.WriteString(dec.Next(id)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(dec.Flush())
	return b.String() + "\n", st.Generated
}

// tinyLlama2C writes a llama2.c checkpoint (version 0: the header and
// zero weights) of a tiny model with a vocabulary of 300, and returns its
// path. The format keeps the vocabulary in a file of its own.
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
