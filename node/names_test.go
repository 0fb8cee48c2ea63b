package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
)

// v1Models returns GET /v1/models as id → owned_by.
func v1Models(t *testing.T, n *Node) map[string]string {
	t.Helper()
	resp, err := http.Get(n.APIURL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID      string `json:"id"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range list.Data {
		out[m.ID] = m.OwnedBy
	}
	return out
}

// A model's name stands for its CID in every call of the control API and
// in the OpenAI API's "model"; /v1/models lists it by both. A name given
// to two models is refused with both CIDs, never guessed.
func TestModelNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := startNode(t, testConfig(t))
	cl := api.NewClient(a.APIURL())
	res := importBuiltin(ctx, t, a, "s260", "")

	if e, err := cl.Resolve(ctx, "s260"); err != nil || e.CID != res.CID || e.Name != "s260" {
		t.Errorf("resolve s260: %+v, %v; want %s", e, err, res.CID)
	}
	if e, err := cl.Resolve(ctx, res.CID); err != nil || e.CID != res.CID || e.Name != "s260" {
		t.Errorf("resolve by CID: %+v, %v", e, err)
	}
	if _, err := cl.Resolve(ctx, "no such model"); err == nil || !strings.Contains(err.Error(), `"no such model" is neither a CID nor the name`) {
		t.Errorf("resolve of an unknown name: %v", err)
	}
	if info, err := cl.Inspect(ctx, "s260"); err != nil || info.CID != res.CID || !info.Whole || info.LocalParts != builtinLayers+2 {
		t.Errorf("inspect by name: %+v, %v", info, err)
	}
	var gguf bytes.Buffer
	if err := cl.Export(ctx, "s260", &gguf); err != nil {
		t.Fatalf("export by name: %v", err)
	}
	p := filepath.Join(t.TempDir(), "s260.gguf")
	os.WriteFile(p, gguf.Bytes(), 0o600)
	if m, err := checkpoints.Load(p); err != nil || m.Tokenizer == nil || m.Weights.Config.Layers != builtinLayers {
		t.Errorf("the export by name does not load: %v", err)
	} else {
		m.Close()
	}

	// The OpenAI API: by name, the model runs from the node's blocks.
	code, m := post(t, a.APIURL()+"/v1/completions", `{"model":"s260","prompt":"`+testmodels.BuiltinPrompt+`","max_tokens":20,"temperature":0}`)
	if code != 200 {
		t.Fatalf("completion by name: status %d: %v", code, m)
	}
	if ch := m["choices"].([]any)[0].(map[string]any); ch["text"] != builtinContinues(t) {
		t.Errorf("completion by name: %v", ch)
	}
	if ms := v1Models(t, a); ms["s260"] != "mycel" || ms[res.CID] != "mycel" {
		t.Errorf("/v1/models: %v; want s260 and %s, whole here (mycel)", ms, res.CID)
	}

	// The same name on a second model: every call by name is refused.
	q8 := importBuiltin(ctx, t, a, "s260", "q8_0")
	for _, call := range []func() error{
		func() error { _, err := cl.Resolve(ctx, "s260"); return err },
		func() error { _, err := cl.Inspect(ctx, "s260"); return err },
		func() error { _, err := cl.Remove(ctx, "s260"); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), `2 models are named "s260"`) ||
			!strings.Contains(err.Error(), res.CID) || !strings.Contains(err.Error(), q8.CID) {
			t.Errorf("a name of two models: %v", err)
		}
	}
	if _, err := cl.Remove(ctx, q8.CID); err != nil {
		t.Fatal(err)
	}
	if n, err := cl.Remove(ctx, "s260"); err != nil || n == 0 {
		t.Errorf("remove by name: %d blocks, %v", n, err)
	}
	if _, err := cl.Resolve(ctx, "s260"); err == nil {
		t.Errorf("the name still resolves after its model was removed")
	}
}

// Serving by name, and the names of swarm models: a volunteer that pulled
// a model serves it by the name it came with; a client that runs it
// through the swarm lists it (by name and CID) in /v1/models and takes
// the name in requests.
func TestSwarmModelNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, res := publish(ctx, t)
	v := startNode(t, testConfig(t, addr))
	if err := v.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Pull(ctx, api.PullRequest{CID: res.CID, Layers: "0:6"}, func(api.PullProgress) {}); err != nil {
		t.Fatal(err)
	}
	sv, err := v.Serve(ctx, ServeRequest{Model: builtinName, Layers: "0:6", Threads: 1})
	if err != nil {
		t.Fatalf("serve by name: %v", err)
	}
	if sv.Span().First != 0 || sv.Span().Last != builtinLayers {
		t.Fatalf("serving %s", sv.Span())
	}
	e := startNode(t, testConfig(t, addr))
	if err := e.Host().WaitRoutable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Resolve(builtinName); err == nil {
		t.Fatal("a node that never saw the model resolves its name")
	}
	for {
		st, err := e.SwarmStatus(ctx, res.CID)
		if err == nil && len(st.Missing) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the client never saw the volunteer: %+v, %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ms := v1Models(t, e); ms[res.CID] != "mycel-swarm" {
		t.Errorf("/v1/models on the client: %v; want %s, known from the swarm", ms, res.CID)
	}
	code, m := post(t, e.APIURL()+"/v1/completions", `{"model":"`+res.CID+`","prompt":"`+testmodels.BuiltinPrompt+`","max_tokens":20,"temperature":0}`)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	ms := v1Models(t, e)
	if ms[builtinName] != "mycel-swarm" || ms[res.CID] != "mycel-swarm" {
		t.Errorf("/v1/models on the client: %v; want %s and %s through the swarm", ms, builtinName, res.CID)
	}
	code, m = post(t, e.APIURL()+"/v1/completions", `{"model":"`+builtinName+`","prompt":"`+testmodels.BuiltinPrompt+`","max_tokens":20,"temperature":0}`)
	if code != 200 {
		t.Fatalf("by the name /v1/models lists: status %d: %v", code, m)
	}
	if ch := m["choices"].([]any)[0].(map[string]any); ch["text"] != builtinContinues(t) {
		t.Errorf("through the swarm by name: %v", ch)
	}
}

// A llama2.c checkpoint without its tokenizer could never run: the import
// is refused, naming -z, and nothing is stored.
func TestImportWithoutTokenizer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startNode(t, testConfig(t))
	cl := api.NewClient(a.APIURL())
	_, err := cl.Import(ctx, api.ImportRequest{Path: tinyLlama2C(t), Name: "tiny"})
	if err == nil || !strings.Contains(err.Error(), "no tokenizer inside") || !strings.Contains(err.Error(), "-z") {
		t.Fatalf("import without a tokenizer: %v", err)
	}
	if list, err := cl.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("models after a refused import: %+v, %v", list, err)
	}
	if s := a.Store().Size(); s != 0 {
		t.Errorf("%d bytes stored by a refused import", s)
	}
	// A GGUF carries its vocabulary: no tokenizer needed.
	if _, err := cl.Import(ctx, api.ImportRequest{Path: testmodels.Builtin(t)}); err != nil {
		t.Errorf("import of a GGUF: %v", err)
	}
}

// An export the node cannot complete reports the node's reason to the
// client: a model not all here before the stream starts, a block that
// turns out damaged while it streams (in the answer's trailer).
func TestExportErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startNode(t, testConfig(t))
	cl := api.NewClient(a.APIURL())
	res := importBuiltin(ctx, t, a, "s260", "")
	root := mustCID(t, res.CID)
	m, err := shards.GetManifest(ctx, a.Store(), root)
	if err != nil {
		t.Fatal(err)
	}
	chunkOf := func(s shards.Span) shards.Link {
		refs := m.PartRefs(s)
		p, err := m.GetPart(ctx, a.Store(), refs[len(refs)-1])
		if err != nil {
			t.Fatal(err)
		}
		ts := p.Tensors[len(p.Tensors)-1]
		return ts.Chunks[len(ts.Chunks)-1]
	}

	// The last block of the head, damaged on disk: the stream has begun
	// when the node reads it.
	head := chunkOf(shards.Span{Head: true})
	b, err := a.Store().Get(ctx, head.CID)
	if err != nil {
		t.Fatal(err)
	}
	corruptOnDisk(t, a.Store().Dir(), b.Data)
	var out bytes.Buffer
	err = cl.Export(ctx, "s260", &out)
	if err == nil || errors.Is(err, api.ErrNoNode) || !strings.Contains(err.Error(), "changed on disk") || out.Len() == 0 {
		t.Errorf("export with a damaged block: %v after %d bytes; want the node's error after the stream began", err, out.Len())
	}

	// A block missing (now the damaged one is deleted, and a layer's):
	// refused before the stream, with what to do.
	if err := a.Store().Delete(ctx, chunkOf(shards.Span{First: 2, Last: 3}).CID); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = cl.Export(ctx, res.CID, &out)
	if err == nil || errors.Is(err, api.ErrNoNode) || !strings.Contains(err.Error(), "only part of model "+res.CID) ||
		!strings.Contains(err.Error(), fmt.Sprintf("%d of %d parts", builtinLayers, builtinLayers+2)) || !strings.Contains(err.Error(), "mycel models pull") || out.Len() != 0 {
		t.Errorf("export of a partial model: %v (%d bytes)", err, out.Len())
	}
}

// corruptOnDisk flips a byte of data in the file under dir that holds it.
func corruptOnDisk(t *testing.T, dir string, data []byte) {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || found {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		i := bytes.Index(b, data)
		if i < 0 {
			return nil
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		at := i + len(data)/2
		_, err = f.WriteAt([]byte{b[at] ^ 0xff}, int64(at))
		found = err == nil
		return err
	})
	if !found {
		t.Fatalf("no file under %s holds the block", dir)
	}
}

// "No node is running" is said only when nothing listens: an address that
// answers and then hangs up gets its own error.
func TestClientErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 512))
			c.Close()
		}
	}()
	_, err = api.NewClient(ln.Addr().String()).Status(context.Background())
	if err == nil || errors.Is(err, api.ErrNoNode) || !strings.Contains(err.Error(), "closed the connection without answering") {
		t.Errorf("a listener that hangs up: %v", err)
	}
}
