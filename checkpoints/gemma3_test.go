package checkpoints

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// Gemma 3's queries are scaled by 1/√key_length, but in the 27B model (62
// blocks) by 1/√(embedding_length/head_count), as llama.cpp does: a file
// of each loads with that scale, writes back its keys, and a config of
// another scale has no Gemma 3 form.
func TestGemma3QueryScale(t *testing.T) {
	for _, layers := range []int{26, 62} {
		c := model.Config{
			Arch: "gemma3", Dim: 16, Hidden: 16, Layers: layers, Heads: 2, KVHeads: 1, HeadSize: 4,
			Vocab: 259, Context: 32, RopeTheta: 1e6, RopeStyle: kernels.RopeNeoX, NormEps: 1e-6,
			SharedClassifier: true, Act: model.ActGELU, EmbedScale: 4,
			SlidingWindow: 8, SlidingEvery: 6, RopeLocalTheta: 10000,
		}
		want := float32(0)
		if layers == 62 {
			want = float32(1 / math.Sqrt(8))
		}
		c.QueryScale = want
		var buf bytes.Buffer
		if err := SynthArch(&buf, c, "", 1); err != nil {
			t.Fatal(err)
		}
		m, err := LoadBytes(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if m.Weights.Config != c {
			t.Errorf("%d layers: loaded config %+v, written %+v", layers, m.Weights.Config, c)
		}
		m.Close()
		c.QueryScale = 0.25 + want
		if _, err := ArchKVs(c, ""); err == nil || !strings.Contains(err.Error(), "query scale") {
			t.Errorf("%d layers: a query scale of %g: error %v, want one naming the query scale", layers, c.QueryScale, err)
		}
	}
}
