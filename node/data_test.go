package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mycel-net/mycel/checkpoints/datasets"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/train"
)

// pairsData is a data set of prompts and completions.
func pairsData(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"prompt":"Lily wanted to","completion":" play with ball number %d. She was happy."}`+"\n", i)
	}
	return b.Bytes()
}

// A data set imported on A by name: listed, inspected (a sample, and the
// token counts with a model's tokenizer, as training counts them), pulled
// by CID by C, which knows only B and takes the name with it, and fetched
// whole by B through DataBytes, which pulls what is not here.
func TestDataSets(t *testing.T) {
	a, b, c := swarm3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := pairsData(5)
	ca := api.NewClient(a.APIURL())
	res, err := ca.ImportData(ctx, "pairs", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != train.FormatJSONPair || res.Examples != 5 || res.Bytes != int64(len(data)) || res.Name != "pairs" || res.Blocks != 2 {
		t.Errorf("import: %+v", res)
	}
	if again, err := ca.ImportData(ctx, "pairs", bytes.NewReader(data)); err != nil || again.CID != res.CID {
		t.Errorf("the same file again: %+v, %v; want %s", again, err, res.CID)
	}
	list, err := ca.ListData(ctx)
	if err != nil || len(list) != 1 || list[0].CID != res.CID || list[0].Name != "pairs" || list[0].Format != train.FormatJSONPair ||
		list[0].Examples != 5 || list[0].Bytes != int64(len(data)) || !list[0].Whole {
		t.Fatalf("list: %+v, %v", list, err)
	}

	_, recs, _ := train.ParseData(data)
	info, err := ca.InspectData(ctx, "pairs", api.DataInspectOptions{Sample: 2})
	if err != nil || info.CID != res.CID || len(info.Sample) != 2 || info.Sample[1].Record != recs[1] || info.Tokens != nil {
		t.Fatalf("inspect by name: %+v, %v", info, err)
	}
	// Token counts with the built-in model's tokenizer, as training
	// tokenizes.
	model := importBuiltin(ctx, t, a, "s260", "")
	l, err := shards.Load(ctx, a.Store(), mustCID(t, model.CID), shards.Span{Tokenizer: true})
	if err != nil {
		t.Fatal(err)
	}
	want := api.DataTokens{Model: model.CID}
	exs := train.Tokenize(recs, l.Tokenizer)
	for _, ex := range exs {
		want.Tokens += int64(len(ex.Tokens))
		want.Longest = max(want.Longest, len(ex.Tokens))
		for _, trained := range ex.Loss {
			if trained {
				want.Trained++
			}
		}
	}
	info, err = ca.InspectData(ctx, res.CID, api.DataInspectOptions{Sample: 1, Model: "s260"})
	if err != nil || info.Tokens == nil || *info.Tokens != want || info.Sample[0].Tokens != len(exs[0].Tokens) ||
		want.Trained == 0 || want.Trained >= want.Tokens {
		t.Fatalf("inspect with a model: %+v (tokens %+v), %v; want %+v", info, info.Tokens, err, want)
	}

	// C pulls by CID from A, whom it finds through the DHT.
	cc := api.NewClient(c.APIURL())
	var last api.PullProgress
	if err := cc.PullData(ctx, api.DataPullRequest{CID: res.CID}, func(p api.PullProgress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.CID != res.CID || last.DoneBytes != int64(len(data)) || last.DoneBlocks != last.TotalBlocks {
		t.Errorf("last progress %+v", last)
	}
	got, err := cc.DataBytes(ctx, "pairs") // the name came with the manifest
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("C's copy by name: %d bytes, %v", len(got), err)
	}
	// B has never seen it: DataBytes fetches it, and B keeps it.
	got, err = b.DataBytes(ctx, res.CID)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("B's fetch: %d bytes, %v", len(got), err)
	}
	if list := b.ListData(ctx); len(list) != 1 || list[0].Name != "pairs" || !list[0].Whole {
		t.Errorf("B's list after the fetch: %+v", list)
	}

	// A model's name is not a data set's, nor the other way round.
	if _, err := ca.InspectData(ctx, "s260", api.DataInspectOptions{}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("a model's name as a data set: %v", err)
	}
	if _, err := ca.InspectData(ctx, model.CID, api.DataInspectOptions{}); !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "not a data set manifest") {
		t.Errorf("a model's CID as a data set: %v", err)
	}
	if _, err := ca.Resolve(ctx, "pairs"); err == nil {
		t.Error("a data set's name resolves as a model")
	}

	// Removing it from C deletes its blocks there.
	if n, err := cc.RemoveData(ctx, "pairs"); err != nil || n != 2 {
		t.Errorf("remove: %d blocks, %v", n, err)
	}
	if c.Store().Size() != 0 || len(c.ListData(ctx)) != 0 {
		t.Errorf("after removing C's only data set: %d bytes, %+v", c.Store().Size(), c.ListData(ctx))
	}
}

// A file that does not parse is refused with the parser's own error, and
// nothing is stored.
func TestDataImportRefusesBadFiles(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, testConfig(t))
	cl := api.NewClient(n.APIURL())
	for _, bad := range []string{
		"",
		"  \n\t",
		"{\"text\":\"one\"}\n{\"text\": oops}\n",
		"{\"text\":\"one\"}\n{\"prompt\":\"p\",\"completion\":\"c\"}\n",
		"{\"text\":\"one\",\"label\":3}\n",
		"not UTF-8 \xff\xfe",
	} {
		_, _, want := train.ParseData([]byte(bad))
		_, err := cl.ImportData(ctx, "bad", strings.NewReader(bad))
		if err == nil || want == nil || err.Error() != want.Error() || !errors.Is(err, api.ErrBadRequest) || strings.Contains(err.Error(), "\n") {
			t.Errorf("import of %q: %v; want the parser's %v", bad, err, want)
		}
	}
	if n.Store().Size() != 0 || len(n.ListData(ctx)) != 0 {
		t.Errorf("refused imports left %d bytes, data sets %+v", n.Store().Size(), n.ListData(ctx))
	}
	if _, err := cl.ImportData(ctx, strings.Repeat("n", datasets.MaxNameBytes+1), strings.NewReader("text")); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("a name over the limit: %v", err)
	}
}

// Store GC keeps data sets, and the node keeps them across a restart; two
// data sets of one name are told apart by CID only.
func TestDataSetsKeptByGC(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	n := startNode(t, cfg)
	text := []byte("Once upon a time, a data set was kept.\n")
	res, err := n.ImportData(ctx, "story", bytes.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != train.FormatText || res.Examples != 1 {
		t.Errorf("import of plain text: %+v", res)
	}
	size := n.Store().Size()
	if st := n.Status(); st.UnreferencedBytes != 0 {
		t.Errorf("a data set's %d bytes counted as unreferenced", st.UnreferencedBytes)
	}
	if gc, err := n.GC(ctx, api.GCRequest{}); err != nil || gc.Blocks != 0 {
		t.Fatalf("gc: %+v, %v", gc, err)
	}
	n.Close()
	n2 := startNode(t, cfg)
	if n2.Store().Size() != size {
		t.Fatalf("the gc at start left %d of the data set's %d bytes", n2.Store().Size(), size)
	}
	if got, err := n2.DataBytes(ctx, "story"); err != nil || !bytes.Equal(got, text) {
		t.Fatalf("after a restart: %q, %v", got, err)
	}

	other, err := n2.ImportData(ctx, "story", strings.NewReader("Another story.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.DataBytes(ctx, "story"); err == nil || !strings.Contains(err.Error(), `2 data sets are named "story"`) ||
		!strings.Contains(err.Error(), res.CID) || !strings.Contains(err.Error(), other.CID) {
		t.Errorf("a name of two data sets: %v", err)
	}
	if _, err := n2.RemoveData(ctx, other.CID); err != nil {
		t.Fatal(err)
	}
	if gc, err := n2.GC(ctx, api.GCRequest{}); err != nil || gc.Blocks != 0 || n2.Store().Size() != size {
		t.Errorf("gc after removing one: %+v, %v, %d bytes left of %d", gc, err, n2.Store().Size(), size)
	}
}
