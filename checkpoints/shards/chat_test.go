package shards_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/kernels"
)

// synthWithTemplate writes Synth's stories260K-shaped model with a
// tokenizer.chat_template entry (src) and returns its path.
func synthWithTemplate(t *testing.T, src string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := checkpoints.Synth(&buf, "stories260K", kernels.F32, 7); err != nil {
		t.Fatal(err)
	}
	g, err := checkpoints.ParseGGUF(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	kvs := append(g.KVs, checkpoints.KV{Key: "tokenizer.chat_template", Value: checkpoints.Str(src)})
	var ts []checkpoints.TensorSpec
	for _, ti := range g.Tensors {
		ts = append(ts, checkpoints.TensorSpec{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: ti.Data})
	}
	var out bytes.Buffer
	if err := checkpoints.WriteGGUF(&out, kvs, ts); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "templated.gguf")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The chat template of a GGUF travels in the tokenizer part: a span with
// the tokenizer loads it, one without does not, and a model without a
// template has none.
func TestChatTemplateKept(t *testing.T) {
	ctx := context.Background()
	const src = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
	m, err := checkpoints.Load(synthWithTemplate(t, src))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st := newMem()
	im, err := shards.Import(ctx, m, st)
	if err != nil {
		t.Fatal(err)
	}
	l, err := shards.Load(ctx, st, im.Root, shards.Whole(5))
	if err != nil {
		t.Fatal(err)
	}
	if l.ChatTemplate != src {
		t.Errorf("whole model: chat template %q, want %q", l.ChatTemplate, src)
	}
	l, err = shards.Load(ctx, st, im.Root, shards.Span{Embedding: true, Head: true, Tokenizer: true})
	if err != nil || l.ChatTemplate != src {
		t.Errorf("embedding, head and tokenizer: chat template %q, %v", l.ChatTemplate, err)
	}
	l, err = shards.Load(ctx, st, im.Root, shards.Span{First: 0, Last: 2})
	if err != nil || l.ChatTemplate != "" || l.Tokenizer != nil {
		t.Errorf("layers only: chat template %q, tokenizer %v, %v", l.ChatTemplate, l.Tokenizer, err)
	}

	var plain bytes.Buffer
	if err := checkpoints.Synth(&plain, "stories260K", kernels.F32, 7); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plain.gguf")
	if err := os.WriteFile(path, plain.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	pm, err := checkpoints.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	im, err = shards.Import(ctx, pm, st)
	if err != nil {
		t.Fatal(err)
	}
	if l, err = shards.Load(ctx, st, im.Root, shards.Whole(5)); err != nil || l.ChatTemplate != "" {
		t.Errorf("model without a template: %q, %v", l.ChatTemplate, err)
	}
}
