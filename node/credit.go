package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/credit"
	"github.com/mycel-net/mycel/swarm"
	"github.com/mycel-net/mycel/train/collab"
)

// openCredit opens the ledger of signed receipts in the data directory
// and the service that fills it; Start starts the service.
func (n *Node) openCredit() error {
	self := n.host.ID()
	path := filepath.Join(n.cfg.DataDir, credit.LedgerFile)
	l, err := credit.OpenLedger(path, credit.Self(self), credit.Logger(log))
	if errors.Is(err, credit.ErrDamaged) {
		// A ledger damaged before its end: keep it aside, for a look,
		// and start a new one rather than refuse to work.
		aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("node: %w", err)
		}
		log.Warn("credit ledger damaged: moved aside, a new one begun", "err", err, "kept", aside)
		l, err = credit.OpenLedger(path, credit.Self(self), credit.Logger(log))
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.credit, err = credit.NewService(n.host.Libp2p(), l, credit.Config{Log: log})
	if err != nil {
		l.Close()
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// closeCredit ends the exchanges in flight and closes the ledger.
func (n *Node) closeCredit() error {
	if n.credit == nil {
		return nil
	}
	n.credit.Close()
	return n.credit.Ledger().Close()
}

// issueReceipt is a served span's ServerConfig.OnSessionEnd: a receipt
// for the client.
func (n *Node) issueReceipt(e swarm.SessionEnd) {
	n.credit.Issue(credit.Receipt{Client: e.Peer, Model: e.Model, First: e.Span.First, Last: e.Span.Last,
		Session: e.Session, Tokens: uint64(e.Positions), Start: e.Start, End: e.End})
}

// countResult is a swarm client's ClientConfig.OnResult: what a server's
// receipt is checked against.
func (n *Node) countResult(r swarm.ResultFrom) {
	n.credit.Used(r.Peer, r.Session, r.Model, r.Span.First, r.Span.Last, r.Positions)
}

// signRound signs a training round's summary with its other members.
func (n *Node) signRound(job string, rep collab.Report) {
	if len(rep.Members) < 2 || len(rep.Shares) != len(rep.Members) {
		return
	}
	r := credit.Round{Job: job, Round: uint64(rep.Round), State: rep.State, Members: rep.Members}
	for _, s := range rep.Shares {
		r.Shares = append(r.Shares, uint64(s))
	}
	if err := n.credit.SignRound(r); err != nil {
		log.Warn("training round not signed", "job", job, "round", rep.Round, "err", err)
	}
}

// Credit adds up the node's ledger.
func (n *Node) Credit() api.Credit {
	self := n.host.ID()
	t := n.credit.Ledger().Totals(self)
	out := api.Credit{ID: self.String(), Ledger: n.credit.Ledger().Path(),
		ServedTokens: t.Served, ServedCountersigned: t.ServedCountersigned, UsedTokens: t.Used,
		TrainedExamples: t.Trained, TrainedCountersigned: t.TrainedCountersigned,
		Receipts: t.Receipts, Rounds: t.Rounds, Summaries: t.Summaries, Rows: []api.CreditRow{}}
	for _, r := range t.Rows {
		row := api.CreditRow{Day: time.Unix(int64(r.Day)*86400, 0).UTC().Format(time.DateOnly), Kind: r.Kind.String(),
			Subject: r.Subject, Units: r.Units, Countersigned: r.Countersigned, Receipts: r.Receipts}
		if r.Peer != "" {
			row.Peer = r.Peer.String()
		}
		out.Rows = append(out.Rows, row)
	}
	return out
}

// CreditLedger is the ledger file, as written.
func (n *Node) CreditLedger() ([]byte, error) {
	b, err := os.ReadFile(n.credit.Ledger().Path())
	if err != nil {
		return nil, fmt.Errorf("node: credit ledger: %w", err)
	}
	return b, nil
}
