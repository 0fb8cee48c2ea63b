package checkpoints

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/model"
)

// Gemma's queries are scaled by 1/√key_length, but in the 27B models (46
// blocks in Gemma 2, 62 in Gemma 3) by 1/√(embedding_length/head_count),
// as llama.cpp does: a file of each loads with that scale, writes back its
// keys, and a config of another scale has no Gemma form.
func TestGemmaQueryScale(t *testing.T) {
	for _, tc := range []struct {
		arch       string
		layers, at int
	}{{"gemma3", 26, 62}, {"gemma3", 62, 62}, {"gemma2", 26, 46}, {"gemma2", 46, 46}} {
		layers := tc.layers
		c := model.Config{
			Arch: tc.arch, Dim: 16, Hidden: 16, Layers: layers, Heads: 2, KVHeads: 1, HeadSize: 4,
			Vocab: 259, Context: 32, RopeTheta: 1e6, RopeStyle: kernels.RopeNeoX, NormEps: 1e-6,
			SharedClassifier: true, Act: model.ActGELU, EmbedScale: 4,
			SlidingWindow: 8, SlidingEvery: 6, RopeLocalTheta: 10000,
		}
		if tc.arch == "gemma2" {
			c.SlidingEvery, c.RopeLocalTheta = 2, 0
		}
		want := float32(0)
		if layers == tc.at {
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
			t.Errorf("%s, %d layers: loaded config %+v, written %+v", tc.arch, layers, m.Weights.Config, c)
		}
		m.Close()
		c.QueryScale = 0.25 + want
		if _, err := ArchKVs(c, ""); err == nil || !strings.Contains(err.Error(), "query scale") {
			t.Errorf("%s, %d layers: a query scale of %g: error %v, want one naming the query scale", tc.arch, layers, c.QueryScale, err)
		}
	}
}
