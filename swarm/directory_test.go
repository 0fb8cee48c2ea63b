package swarm_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/p2p"
	"github.com/mycel-net/mycel/swarm"
)

// askRecords asks p for its records of model over the servers protocol.
func askRecords(t *testing.T, h host.Host, p peer.ID, model string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := h.NewStream(ctx, p, p2p.ServersProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Write(append(binary.AppendUvarint(nil, uint64(len(model))), model...))
	st.CloseWrite()
	br := bufio.NewReader(st)
	n, err := binary.ReadUvarint(br)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range n {
		size, err := binary.ReadUvarint(br)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// answerWith makes h answer every servers request with raws.
func answerWith(h host.Host, raws ...[]byte) {
	h.SetStreamHandler(p2p.ServersProtocol, func(st network.Stream) {
		defer st.Close()
		io.Copy(io.Discard, io.LimitReader(st, 256))
		out := binary.AppendUvarint(nil, uint64(len(raws)))
		for _, r := range raws {
			out = binary.AppendUvarint(out, uint64(len(r)))
			out = append(out, r...)
		}
		st.Write(out)
	})
}

// Records that lie are dropped wherever they come from. A liar takes an
// honest server's signed record and changes its span, signs records with
// a key that is not its own, and signs records of another model; it
// publishes them on the model's topic and hands them out over the
// servers protocol. The client keeps the honest record as signed and the
// liar's one genuine record, and nothing else.
func TestDirectoryRejectsForgedRecords(t *testing.T) {
	s := &dhtSwarm{t: t}
	honest := s.node()
	client := s.node()
	liar, err := p2p.New(p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(),
		p2p.MemoryDatastore(), p2p.Bootstrap(s.boot...))
	if err != nil {
		t.Fatal(err)
	}
	defer liar.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := liar.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*dhtNode{honest, client} {
		if err := liar.Connect(ctx, n.h.AddrInfo()); err != nil {
			t.Fatal(err)
		}
	}
	const model = "forgery-test"
	if _, err := client.dir.Servers(ctx, model); err != nil { // follow the topic
		t.Fatal(err)
	}
	if err := honest.dir.Announce(ctx, swarm.ServerRecord{Model: model, Span: swarm.Span{0, 2}, Throughput: 10, State: swarm.StateServing}); err != nil {
		t.Fatal(err)
	}
	raws := askRecords(t, liar.Libp2p(), honest.h.ID(), model)
	if len(raws) != 1 {
		t.Fatalf("honest server answered %d records", len(raws))
	}
	tampered := bytes.Replace(raws[0], []byte(`"Last":2`), []byte(`"Last":5`), 1)
	if bytes.Equal(tampered, raws[0]) {
		t.Fatal("the record does not hold the span as expected")
	}
	stranger, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	liarKey := liar.Libp2p().Peerstore().PrivKey(liar.ID())
	sign := func(key crypto.PrivKey, r swarm.ServerRecord) []byte {
		r.Expires = time.Now().Add(time.Minute)
		b, err := swarm.SignRecord(&r, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	strangers := sign(stranger, swarm.ServerRecord{Model: model, Span: swarm.Span{2, 4}, Throughput: 1e9, State: swarm.StateServing, Seq: 1})
	otherModel := sign(liarKey, swarm.ServerRecord{Model: "another", Span: swarm.Span{2, 4}, Throughput: 1e9, State: swarm.StateServing, Seq: 1})
	genuine := sign(liarKey, swarm.ServerRecord{Model: model, Span: swarm.Span{4, 5}, Throughput: 1, State: swarm.StateServing, Seq: 1})

	answerWith(liar.Libp2p(), tampered, otherModel, []byte("not a record"))
	topic, err := liar.PubSub().Join(swarm.TopicFor(model))
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	for deadline := time.Now().Add(10 * time.Second); len(topic.ListPeers()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the liar never saw the topic's peers")
		}
	}
	for _, m := range [][]byte{tampered, strangers, otherModel, genuine} {
		if err := topic.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// The genuine record arrives last on the topic; by then the others
	// have been judged. A lookup also asks the liar directly.
	var recs []swarm.ServerRecord
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := client.dir.Lookup(ctx, model); err != nil {
			t.Fatal(err)
		}
		recs = client.dir.Known(model)
		if len(recs) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	want := map[peer.ID]swarm.Span{honest.h.ID(): {0, 2}, liar.ID(): {4, 5}}
	if len(recs) != len(want) {
		t.Fatalf("client holds %v, want only the honest [0,2) and the liar's genuine [4,5)", recs)
	}
	for _, r := range recs {
		if want[r.Peer] != r.Span {
			t.Fatalf("client holds %v, want only the honest [0,2) and the liar's genuine [4,5)", recs)
		}
	}
	if recs := client.dir.Known("another"); len(recs) != 0 {
		t.Fatalf("records of a model the client never asked for: %v", recs)
	}
	if ms := client.dir.Models(); len(ms) != 1 || ms[0] != model {
		t.Fatalf("the client's directory lists models %v, want only %s", ms, model)
	}
}

// A peer that answers a servers request with absurd counts or lengths,
// or never answers, costs the asker nothing but the lookup's deadline:
// nothing is allocated from the numbers it sends.
func TestDirectoryBoundsAnswers(t *testing.T) {
	s := &dhtSwarm{t: t}
	client := s.node()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, answer := range [][]byte{
		binary.AppendUvarint(nil, 1<<40),                                   // records
		binary.AppendUvarint(binary.AppendUvarint(nil, 1), 1<<40),          // bytes of one record
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // an overlong varint
	} {
		bad, err := p2p.New(p2p.NoMDNS(), p2p.LoopbackOnly(), p2p.NoQUIC(), p2p.NoNAT(), p2p.NoRelay(), p2p.MemoryDatastore())
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		bad.Libp2p().SetStreamHandler(p2p.ServersProtocol, func(st network.Stream) {
			defer st.Close()
			st.Write(answer)
		})
		if err := client.h.Connect(ctx, bad.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := client.dir.Lookup(ctx, "bounds-test"); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
			t.Fatalf("answer %x: the lookup allocated %d bytes", answer, grew)
		}
		if recs := client.dir.Known("bounds-test"); len(recs) != 0 {
			t.Fatalf("records from garbage: %v", recs)
		}
	}
}
