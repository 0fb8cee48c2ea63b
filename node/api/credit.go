package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Credit is what the node's ledger of signed receipts credits it with
// (GET /api/v0/credit): the work it did for others, countersigned by
// them or not, and the work others did for it.
type Credit struct {
	ID     string `json:"id"`
	Ledger string `json:"ledger"` // the ledger file
	// ServedTokens are the tokens the node's served spans computed for
	// clients; ServedCountersigned those of them the clients signed.
	ServedTokens        uint64 `json:"served_tokens"`
	ServedCountersigned uint64 `json:"served_countersigned"`
	// UsedTokens are the tokens servers computed for this node's
	// generations (receipts it countersigned).
	UsedTokens uint64 `json:"used_tokens"`
	// TrainedExamples are the examples the node trained in the rounds
	// of jobs; TrainedCountersigned those every other member signed.
	TrainedExamples      uint64 `json:"trained_examples"`
	TrainedCountersigned uint64 `json:"trained_countersigned"`
	// Receipts and Rounds are the whole records (with signatures);
	// Summaries the days folded once older than the ledger keeps whole.
	Receipts  int `json:"receipts"`
	Rounds    int `json:"rounds"`
	Summaries int `json:"summaries"`
	// Rows break it down by day (newest first), kind, counterparty and
	// model or job.
	Rows []CreditRow `json:"rows"`
}

// CreditRow is the work of one day, of one kind, with one counterparty,
// on one model or job.
type CreditRow struct {
	Day  string `json:"day"`  // YYYY-MM-DD, UTC
	Kind string `json:"kind"` // "served", "used" or "trained"
	// Peer is the counterparty: the client served, or the server used;
	// none for training (the round's members sign together).
	Peer    string `json:"peer,omitempty"`
	Subject string `json:"subject"` // the model's CID, or the job's id
	// Units are tokens (served, used) or examples (trained).
	Units         uint64 `json:"units"`
	Countersigned uint64 `json:"countersigned"`
	Receipts      uint64 `json:"receipts"` // receipts or rounds
}

// Credit returns the node's credit.
func (c *Client) Credit(ctx context.Context) (Credit, error) {
	var cr Credit
	err := c.do(ctx, http.MethodGet, "/credit", nil, &cr)
	return cr, err
}

// CreditLedger copies the node's ledger file, with every signature,
// into w (GET /api/v0/credit/ledger): what anyone can check.
func (c *Client) CreditLedger(ctx context.Context, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/credit/ledger", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("node API GET /credit/ledger: %w", err)
	}
	return nil
}
