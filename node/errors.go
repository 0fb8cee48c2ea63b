package node

import "errors"

// ErrClosed is returned by a node that is shutting down.
var ErrClosed = errors.New("node: closed")

// kindError gives an error one of the API's kinds (api.ErrBadRequest,
// api.ErrNotFound, api.ErrBusy) without changing its message, so that a
// message that already says what is wrong reaches the client as it is.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// kindOf marks err as of kind.
func kindOf(err, kind error) error { return kindError{err, kind} }
