package credit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Checked is what Verify found in a ledger.
type Checked struct {
	// Receipts whose server's signature verifies; of them,
	// Countersigned also carry their client's.
	Receipts, Countersigned int
	// Rounds whose every signature verifies, and the signatures.
	Rounds, RoundSigs int
	// Summaries carry no signature: they are the node's own account of
	// receipts too old to keep whole, and cannot be checked.
	Summaries int
	// Records in all.
	Records int
}

// ErrForged is wrapped by Verify's error for every record whose
// signatures do not hold.
var ErrForged = errors.New("the ledger holds a record whose signatures do not hold")

// VerifyRecord checks rec's signatures: a receipt's server's, and its
// client's when it says it was countersigned; a round's members' (at
// least one). The error names the signer and what is wrong (ErrWrongKey,
// ErrBadSignature, ErrNotSigned).
func VerifyRecord(rec Record) error {
	switch r := rec.(type) {
	case *ServeRecord:
		msg := r.Receipt.Signed()
		what := fmt.Sprintf("receipt %d of %s for %s", r.Receipt.Seq, r.Receipt.Server, r.Receipt.Client)
		if err := r.ServerSig.verify(r.Receipt.Server, msg, what+": server"); err != nil {
			return err
		}
		if r.Status == Countersigned {
			if err := r.ClientSig.verify(r.Receipt.Client, msg, what+": client"); err != nil {
				return err
			}
		} else if !r.ClientSig.IsZero() {
			return fmt.Errorf("%s: a client signature on a receipt %s", what, r.Status)
		}
	case *RoundRecord:
		if err := r.Round.check(); err != nil {
			return err
		}
		if len(r.Sigs) == 0 {
			return fmt.Errorf("round %d of job %s: %w", r.Round.Round, r.Round.Job, ErrNotSigned)
		}
		msg := r.Round.Signed()
		seen := map[int]bool{}
		for _, s := range r.Sigs {
			if s.Member < 0 || s.Member >= len(r.Round.Members) || seen[s.Member] {
				return fmt.Errorf("round %d of job %s: signature of member %d twice or out of range", r.Round.Round, r.Round.Job, s.Member)
			}
			seen[s.Member] = true
			what := fmt.Sprintf("round %d of job %s: member", r.Round.Round, r.Round.Job)
			if err := s.Sig.verify(r.Round.Members[s.Member], msg, what); err != nil {
				return err
			}
		}
	}
	return nil
}

// Verify reads an exported ledger and checks every signature in it. A
// record that is damaged, cut short, forged or altered is refused: the
// error names each one (its index and offset) and why, and wraps
// ErrForged when a signature fails.
func Verify(r io.Reader) (Checked, error) {
	var c Checked
	var errs []error
	_, err := readRecords(bufio.NewReader(r), func(rec Record, off int64) error {
		i := c.Records
		c.Records++
		if err := VerifyRecord(rec); err != nil {
			if len(errs) < 20 {
				errs = append(errs, fmt.Errorf("%w: record %d at offset %d: %w", ErrForged, i, off, err))
			}
			return nil
		}
		switch r := rec.(type) {
		case *ServeRecord:
			c.Receipts++
			if r.Status == Countersigned {
				c.Countersigned++
			}
		case *RoundRecord:
			c.Rounds++
			c.RoundSigs += len(r.Sigs)
		case *Summary:
			c.Summaries++
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}
