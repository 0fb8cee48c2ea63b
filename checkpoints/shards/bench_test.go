package shards_test

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/p2p/blocks"
)

// benchModel writes a synthetic stories110M-shaped model in f16 (about
// 220 MB) once per run and loads it.
func benchModel(b *testing.B) *checkpoints.Model {
	b.Helper()
	path := filepath.Join(b.TempDir(), "synth110M-f16.gguf")
	if err := checkpoints.SynthFile(path, "stories110M", kernels.F16, 1); err != nil {
		b.Fatal(err)
	}
	m, err := checkpoints.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// discard counts what it is given.
type discard struct{ n int64 }

func (d *discard) PutMany(_ context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		d.n += int64(len(b.Data))
	}
	return nil
}

// BenchmarkImport imports a 220 MB model into nothing (hashing and
// chunking only) and into an on-disk flatfs store, next to a plain
// sha2-256 pass over the same tensor bytes: the floor any content
// addressing pays.
func BenchmarkImport(b *testing.B) {
	ctx := context.Background()
	src := benchModel(b)
	var total int64
	for _, t := range src.GGUF.Tensors {
		total += int64(len(t.Data))
	}
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			for _, t := range src.GGUF.Tensors {
				for off := 0; off < len(t.Data); off += blocks.ChunkSize {
					sha256.Sum256(t.Data[off:min(off+blocks.ChunkSize, len(t.Data))])
				}
			}
		}
	})
	b.Run("hash-only", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			if _, err := shards.Import(ctx, src, &discard{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("flatfs", func(b *testing.B) {
		b.SetBytes(total)
		var root cid.Cid
		for b.Loop() {
			b.StopTimer()
			st, err := blocks.OpenStore(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			im, err := shards.Import(ctx, src, st)
			if err != nil {
				b.Fatal(err)
			}
			root = im.Root
			b.StopTimer()
			st.Close()
			b.StartTimer()
		}
		_ = root
	})
}
