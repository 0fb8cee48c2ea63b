package node

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mycel-net/mycel/checkpoints"
	"github.com/mycel-net/mycel/kernels"
	"github.com/mycel-net/mycel/node/api"
)

// BenchmarkImportPull measures, in one run on loopback: the import rate of
// a synthetic stories110M-shaped model in f16 (about 220 MB; hashing and
// disk included), its pull from one node to another (into the second
// node's store, synced to disk before the pull reports done), and a raw
// libp2p stream copy of as many bytes over the same connection, transport
// and security. The raw copy runs just before and just after the pull and
// counts at the mean of the two, so that a change in the machine's load
// during the run weighs on both sides. Each iteration starts two fresh
// nodes. The CPU time of the process (both nodes) is reported for the
// pull and for one raw copy: less sensitive than rates to other work on
// the machine.
//
//	go test -run '^$' -bench ImportPull -benchtime 1x -count 5 ./node
func BenchmarkImportPull(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "s110m-f16.gguf")
	if err := checkpoints.SynthFile(path, "stories110M", kernels.F16, 1); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const rawProto = "/mycel/bench-raw/1"
	buf := make([]byte, 1<<20)
	for b.Loop() {
		b.StopTimer()
		a := startNode(b, testConfig(b))
		c := startNode(b, testConfig(b, a.Status().Addrs[0]))
		if err := c.Host().WaitRoutable(ctx); err != nil {
			b.Fatal(err)
		}
		a.Host().Libp2p().SetStreamHandler(rawProto, func(s network.Stream) {
			io.Copy(io.Discard, s)
			s.Close()
		})
		b.StartTimer()

		start := time.Now()
		res, err := a.Import(ctx, api.ImportRequest{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		importMBps := float64(res.Bytes) / 1e6 / time.Since(start).Seconds()

		raw := func() (time.Duration, time.Duration) {
			cpu := processCPU()
			s, err := c.Host().Libp2p().NewStream(ctx, a.Host().ID(), rawProto)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for sent := int64(0); sent < res.Bytes; sent += int64(len(buf)) {
				if _, err := s.Write(buf[:min(int64(len(buf)), res.Bytes-sent)]); err != nil {
					b.Fatal(err)
				}
			}
			s.CloseWrite()
			io.Copy(io.Discard, s)
			return time.Since(start), processCPU() - cpu
		}
		rawBefore, rawCPU := raw()

		cpu := processCPU()
		start = time.Now()
		if err := c.Pull(ctx, api.PullRequest{CID: res.CID}, func(api.PullProgress) {}); err != nil {
			b.Fatal(err)
		}
		pullMBps := float64(res.Bytes) / 1e6 / time.Since(start).Seconds()
		pullCPU := processCPU() - cpu

		rawAfter, rawCPU2 := raw()
		rawMBps := float64(res.Bytes) / 1e6 / ((rawBefore + rawAfter) / 2).Seconds()

		b.ReportMetric(float64(res.Bytes)/1e6, "MB")
		b.ReportMetric(importMBps, "import-MB/s")
		b.ReportMetric(pullMBps, "pull-MB/s")
		b.ReportMetric(rawMBps, "raw-stream-MB/s")
		b.ReportMetric(pullMBps/rawMBps, "pull/raw")
		b.ReportMetric(float64(pullCPU.Milliseconds()), "pull-cpu-ms")
		b.ReportMetric(float64((rawCPU+rawCPU2).Milliseconds())/2, "raw-cpu-ms")
	}
}
