package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/credit"
)

// waitCredit polls n's credit until ok says so.
func waitCredit(ctx context.Context, t *testing.T, n *Node, what string, ok func(api.Credit) bool) api.Credit {
	t.Helper()
	for {
		cr, err := api.NewClient(n.APIURL()).Credit(ctx)
		if err == nil && ok(cr) {
			return cr
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never; last credit %+v, %v", what, cr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// A client generates through three volunteers' spans: each volunteer's
// ledger holds a receipt for the session's tokens countersigned by the
// client, its credit shows them, the client's ledger holds the same
// receipts, and the exported ledgers verify.
func TestSwarmCreditReceipts(t *testing.T) {
	cidStr, e, servers := servingSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const maxTokens = 12
	var done api.GenerateEvent
	err := api.NewClient(e.APIURL()).Generate(ctx, api.GenerateRequest{Model: cidStr, Prompt: testmodels.BuiltinPrompt, MaxTokens: maxTokens},
		func(ev api.GenerateEvent) error {
			if ev.Done {
				done = ev
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if done.CompletionTokens != maxTokens {
		t.Fatalf("generation ended %+v", done)
	}
	// Every prompt token and every generated token but the last ran
	// through each span once.
	tokens := uint64(done.PromptTokens + done.CompletionTokens - 1)
	eid := e.Host().ID()

	var receipts []*credit.ServeRecord
	for i, s := range servers {
		cr := waitCredit(ctx, t, s, "the server's receipt", func(cr api.Credit) bool { return cr.Receipts == 1 })
		if cr.ServedTokens != tokens || cr.ServedCountersigned != tokens || len(cr.Rows) != 1 ||
			cr.Rows[0].Peer != eid.String() || cr.Rows[0].Kind != "served" || cr.Rows[0].Subject != cidStr {
			t.Errorf("server %d: credit %+v, want %d tokens countersigned by %s", i, cr, tokens, eid)
		}
		var file bytes.Buffer
		if err := api.NewClient(s.APIURL()).CreditLedger(ctx, &file); err != nil {
			t.Fatal(err)
		}
		c, err := credit.Verify(bytes.NewReader(file.Bytes()))
		if err != nil || c.Countersigned != 1 {
			t.Errorf("server %d: its exported ledger: %+v, %v", i, c, err)
		}
		r := s.credit.Ledger().Records()[0].(*credit.ServeRecord)
		if r.Receipt.Client != eid || r.Receipt.Server != s.Host().ID() || r.Receipt.Tokens != tokens || r.Status != credit.Countersigned {
			t.Errorf("server %d: receipt %+v", i, r)
		}
		receipts = append(receipts, r)
	}
	// The client holds the same receipts, byte for byte.
	cr := waitCredit(ctx, t, e, "the client's receipts", func(cr api.Credit) bool { return cr.Receipts == len(servers) })
	if cr.UsedTokens != tokens*uint64(len(servers)) || cr.ServedTokens != 0 {
		t.Errorf("client's credit %+v", cr)
	}
	held := map[string]bool{}
	for _, r := range e.credit.Ledger().Records() {
		held[string(credit.EncodeRecord(nil, r))] = true
	}
	for i, r := range receipts {
		if !held[string(credit.EncodeRecord(nil, r))] {
			t.Errorf("the client does not hold server %d's receipt %+v", i, r.Receipt)
		}
	}
}

// B and C train a job together: after every round each holds the round's
// summary signed by both, crediting it with its share of the examples,
// and the two agree on the shares.
func TestSwarmCreditTraining(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := submitter(ctx, t)
	const steps = 3
	job, err := a.SubmitJob(ctx, foxJob(steps, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	b := volunteer(t, a.Status().Addrs[0])
	c := volunteer(t, a.Status().Addrs[0])
	for _, n := range []*Node{b, c} {
		waitStatus(ctx, t, n, job.ID, "the job done", func(st api.TrainStatus) bool { return st.State == "done" })
	}
	// 128 tokens a batch in sequences of 16: 8 examples a round, 4 each.
	const share = 4
	for i, n := range []*Node{b, c} {
		cr := waitCredit(ctx, t, n, "every round countersigned", func(cr api.Credit) bool {
			return cr.Rounds == steps && cr.TrainedCountersigned == steps*share
		})
		if cr.TrainedExamples != steps*share || len(cr.Rows) != 1 || cr.Rows[0].Kind != "trained" || cr.Rows[0].Subject != job.ID {
			t.Errorf("member %d: credit %+v", i, cr)
		}
		for _, r := range n.credit.Ledger().Records() {
			rr := r.(*credit.RoundRecord)
			if err := credit.VerifyRecord(rr); err != nil || len(rr.Sigs) != 2 || rr.Round.Job != job.ID ||
				rr.Round.Shares[0]+rr.Round.Shares[1] != 2*share {
				t.Errorf("member %d: round %+v: %v", i, rr.Round, err)
			}
		}
	}
	if cr, _ := api.NewClient(a.APIURL()).Credit(ctx); cr.Rounds != 0 {
		t.Errorf("the submitter, who did not train, holds %d rounds", cr.Rounds)
	}
}

// The ledger outlives a restart; a record torn by a crash is dropped at
// the next start and nothing else is lost; a ledger damaged before its
// end is moved aside and a new one begun.
func TestCreditLedgerRestart(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := n.Host().Libp2p()
	key := h.Peerstore().PrivKey(h.ID())
	client := startNode(t, testConfig(t)).Host().ID()
	rec := func(seq uint64) *credit.ServeRecord {
		now := time.Now()
		r := &credit.ServeRecord{Status: credit.Unanswered, Note: "could not reach the client",
			Receipt: credit.Receipt{Seq: seq, Server: h.ID(), Client: client, Model: "bafymodel", First: 0, Last: 2, Session: seq, Tokens: 10, Start: now, End: now}}
		r.ServerSig, _ = credit.Sign(key, r.Receipt.Signed())
		return r
	}
	for i := range 2 {
		if err := n.credit.Ledger().Append(rec(uint64(i + 1))); err != nil {
			t.Fatal(err)
		}
	}
	path := n.credit.Ledger().Path()
	n.Close()
	whole, _ := os.ReadFile(path)
	torn := credit.EncodeRecord(nil, rec(3))
	os.WriteFile(path, append(whole, torn[:len(torn)/2]...), 0o600)

	n, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cr := n.Credit(); cr.Receipts != 2 || cr.ServedTokens != 20 || cr.ServedCountersigned != 0 {
		t.Errorf("after a torn record: %+v", cr)
	}
	n.Close()
	if b, _ := os.ReadFile(path); !bytes.Equal(b, whole) {
		t.Errorf("the torn record was not cut: %d bytes, want %d", len(b), len(whole))
	}

	damaged := append([]byte(nil), whole...)
	damaged[5] ^= 0xff
	os.WriteFile(path, damaged, 0o600)
	n, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if cr := n.Credit(); cr.Receipts != 0 {
		t.Errorf("a damaged ledger's records: %+v", cr)
	}
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("the damaged ledger kept aside as %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !bytes.Equal(b, damaged) {
		t.Error("the damaged ledger was not kept as it was")
	}
}
