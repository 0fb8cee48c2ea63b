package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mycel-net/mycel/node/credit"
)

// mycel node credit shows a node's credit (as text and JSON), exports
// its ledger, and --verify checks a ledger with no node: a true one
// passes, one whose count was altered after signing is refused, named.
func TestNodeCredit(t *testing.T) {
	addr, data := startNodeOn(t, freeAddr(t))
	out, _, err := mycel(t, "--api", addr, "--data", data, "node", "credit")
	if err != nil || !strings.Contains(out, "served    0 tokens to clients, 0 countersigned") || !strings.Contains(out, credit.LedgerFile) {
		t.Fatalf("node credit: %q (%v)", out, err)
	}
	out, _, err = mycel(t, "--api", addr, "--data", data, "node", "credit", "--json")
	var cr struct {
		ServedTokens *uint64 `json:"served_tokens"`
		Rows         []any   `json:"rows"`
	}
	if err != nil || json.Unmarshal([]byte(out), &cr) != nil || cr.ServedTokens == nil || cr.Rows == nil {
		t.Fatalf("node credit --json: %q (%v)", out, err)
	}
	exported := filepath.Join(t.TempDir(), "export.ledger")
	if _, _, err := mycel(t, "--api", addr, "--data", data, "node", "credit", "--export", exported); err != nil {
		t.Fatalf("--export: %v", err)
	}
	if out, _, err := mycel(t, "node", "credit", "--verify", exported); err != nil || !strings.Contains(out, "every signature holds: 0 receipts") {
		t.Fatalf("--verify of the export: %q (%v)", out, err)
	}

	// A ledger of one true receipt, and the same with its count raised.
	key := func() (crypto.PrivKey, peer.ID) {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPrivateKey(k)
		return k, id
	}
	sk, server := key()
	ck, client := key()
	now := time.Now()
	rec := &credit.ServeRecord{Status: credit.Countersigned, Receipt: credit.Receipt{Seq: 1, Server: server, Client: client,
		Model: "bafymodel", First: 0, Last: 2, Session: 3, Tokens: 40, Start: now, End: now}}
	rec.ServerSig, _ = credit.Sign(sk, rec.Receipt.Signed())
	rec.ClientSig, _ = credit.Sign(ck, rec.Receipt.Signed())
	dir := t.TempDir()
	good, forged := filepath.Join(dir, "good.ledger"), filepath.Join(dir, "forged.ledger")
	os.WriteFile(good, credit.EncodeRecord(nil, rec), 0o600)
	if out, _, err := mycel(t, "node", "credit", "--verify", good); err != nil || !strings.Contains(out, "1 receipts (1 countersigned") {
		t.Fatalf("--verify of a true ledger: %q (%v)", out, err)
	}
	rec.Receipt.Tokens = 4000
	os.WriteFile(forged, credit.EncodeRecord(nil, rec), 0o600)
	_, _, err = mycel(t, "node", "credit", "--verify", forged)
	if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "record 0 at offset 0") ||
		!strings.Contains(err.Error(), "server "+server.String()+": signature does not verify") {
		t.Fatalf("--verify of an altered ledger: %v", err)
	}
}
