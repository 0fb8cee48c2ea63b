package blocks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Limits of the BlocksProtocol server.
const (
	// bulkStreamsPerPeer is how many streams one peer may hold open; the
	// next one is reset.
	bulkStreamsPerPeer = 8
	// bulkServing is how many requests the server answers at once, all
	// peers together. Each answer holds a buffer of up to MaxBlockSize and
	// a write buffer, so this bounds the server's memory. One peer gets at
	// most bulkServingPerPeer of them, so that a few slow readers cannot
	// take them all.
	bulkServing        = 16
	bulkServingPerPeer = 4
	// bulkServerIdle is how long a stream may wait for its next request
	// before the server closes it.
	bulkServerIdle = 2 * time.Minute
	// bulkWriteTimeout bounds the sending of one block (or of a HAVE
	// answer) to a peer that does not read.
	bulkWriteTimeout = 30 * time.Second
	// bulkWriteBuffer is the size of the write buffer of an answer.
	bulkWriteBuffer = 64 << 10
)

// bulkServer answers BlocksProtocol requests from the Store.
type bulkServer struct {
	store *Store
	ctx   context.Context // ends every stream when the exchange closes

	mu      sync.Mutex
	perPeer map[peer.ID]*servedPeer
	closed  bool
	wg      sync.WaitGroup // one per stream being served

	// slots hold the buffers of the answers in progress; taking one is
	// the right to answer.
	slots chan *serveSlot

	blocksSent, dataSent atomic.Uint64
}

// servedPeer is what one peer holds of the server.
type servedPeer struct {
	streams int
	turns   chan struct{} // one per request being answered
}

type serveSlot struct {
	bw   *bufio.Writer
	data []byte // a block read from the store
	head []byte // an answer's header, or a HAVE answer
}

func newBulkServer(ctx context.Context, store *Store) *bulkServer {
	sv := &bulkServer{store: store, ctx: ctx, perPeer: map[peer.ID]*servedPeer{}, slots: make(chan *serveSlot, bulkServing)}
	for range bulkServing {
		// Buffers are made when first used, so an idle node holds none.
		sv.slots <- &serveSlot{}
	}
	return sv
}

// handle serves one stream until the peer closes it, it stays idle too
// long, it breaks the protocol or the exchange closes.
func (sv *bulkServer) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	sv.mu.Lock()
	sp := sv.perPeer[p]
	if sp == nil {
		sp = &servedPeer{turns: make(chan struct{}, bulkServingPerPeer)}
		sv.perPeer[p] = sp
	}
	if sv.closed || sp.streams >= bulkStreamsPerPeer {
		open := sp.streams
		if open == 0 {
			delete(sv.perPeer, p)
		}
		sv.mu.Unlock()
		log.Debug("refusing a blocks stream", "peer", p, "open", open)
		s.Reset()
		return
	}
	sp.streams++
	sv.wg.Add(1)
	sv.mu.Unlock()
	defer func() {
		sv.mu.Lock()
		if sp.streams--; sp.streams == 0 {
			delete(sv.perPeer, p)
		}
		sv.mu.Unlock()
		sv.wg.Done()
	}()
	stop := context.AfterFunc(sv.ctx, func() { s.Reset() })
	defer stop()

	if err := sv.serve(s, sp); err != nil {
		log.Debug("blocks stream ended", "peer", p, "err", err)
		s.Reset()
		return
	}
	s.Close()
}

// close refuses new streams and waits for the running ones, which the
// exchange's context has ended.
func (sv *bulkServer) close() {
	sv.mu.Lock()
	sv.closed = true
	sv.mu.Unlock()
	sv.wg.Wait()
}

func (sv *bulkServer) serve(s network.Stream, sp *servedPeer) error {
	br := bufio.NewReaderSize(s, 4<<10)
	for {
		s.SetReadDeadline(time.Now().Add(bulkServerIdle))
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset) || isTimeout(err) {
				return nil // the peer is done with the stream, or left it idle
			}
			return fmt.Errorf("blocks: wait for a request: %w", err)
		}
		s.SetReadDeadline(time.Now().Add(bulkWriteTimeout))
		req, err := readRequest(br)
		if err != nil {
			return err
		}
		select {
		case sp.turns <- struct{}{}:
		case <-sv.ctx.Done():
			return ErrClosed
		}
		var slot *serveSlot
		select {
		case slot = <-sv.slots:
		case <-sv.ctx.Done():
			<-sp.turns
			return ErrClosed
		}
		err = sv.answer(s, slot, req)
		sv.slots <- slot
		<-sp.turns
		if err != nil {
			return err
		}
	}
}

// answer writes the answer to req.
func (sv *bulkServer) answer(s network.Stream, slot *serveSlot, req request) error {
	if slot.bw == nil {
		slot.bw = bufio.NewWriterSize(s, bulkWriteBuffer)
	} else {
		slot.bw.Reset(s)
	}
	defer slot.bw.Reset(nil)
	bw := slot.bw
	s.SetWriteDeadline(time.Now().Add(bulkWriteTimeout))
	if req.op == opHave {
		has := make([]bool, len(req.cids))
		for i, c := range req.cids {
			has[i], _ = sv.store.Has(sv.ctx, c)
		}
		slot.head = appendHave(slot.head[:0], has)
		if _, err := bw.Write(slot.head); err != nil {
			return fmt.Errorf("blocks: send HAVE answer: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("blocks: send HAVE answer: %w", err)
		}
		return nil
	}

	if err := bw.WriteByte(statusOK); err != nil {
		return fmt.Errorf("blocks: send GET answer: %w", err)
	}
	for _, c := range req.cids {
		data, err := sv.store.getInto(c, slot.data)
		if err != nil {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
				log.Debug("read a block to serve", "cid", c, "err", err)
			}
			if err := bw.WriteByte(entryMissing); err != nil {
				return fmt.Errorf("blocks: send GET answer: %w", err)
			}
			continue
		}
		if cap(data) > cap(slot.data) {
			slot.data = data[:0]
		}
		s.SetWriteDeadline(time.Now().Add(bulkWriteTimeout))
		slot.head = appendEntryHeader(slot.head[:0], true, len(data))
		if _, err := bw.Write(slot.head); err != nil {
			return fmt.Errorf("blocks: send %s: %w", c, err)
		}
		if _, err := bw.Write(data); err != nil {
			return fmt.Errorf("blocks: send %s: %w", c, err)
		}
		sv.blocksSent.Add(1)
		sv.dataSent.Add(uint64(len(data)))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("blocks: send GET answer: %w", err)
	}
	return nil
}

// isTimeout reports whether err is a stream deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
