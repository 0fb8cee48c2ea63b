package swarm

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/libp2p/go-libp2p/core/network"
	lpswarm "github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/mycel-net/mycel/p2p/wire"
)

// ErrorCode is the code of an ERROR message.
type ErrorCode uint8

// Error codes. A client may retry a request refused with CodeBusy later or
// elsewhere; the others describe the request itself.
const (
	CodeBadMessage   ErrorCode = 1 // malformed, oversized or unexpected message
	CodeUnknownModel ErrorCode = 2 // the server does not serve this model
	CodeBadSpan      ErrorCode = 3 // the span is outside the layers served
	CodeBusy         ErrorCode = 4 // the memory budget or session limit is spent
	CodeBadStep      ErrorCode = 5 // wrong shape, dtype, position or step id
	CodeContextFull  ErrorCode = 6 // the step runs past the session's positions
	CodeInternal     ErrorCode = 7 // the forward pass failed
	CodeShutdown     ErrorCode = 8 // the server is closing
)

var codeNames = map[ErrorCode]string{
	CodeBadMessage: "bad message", CodeUnknownModel: "unknown model", CodeBadSpan: "bad span",
	CodeBusy: "busy", CodeBadStep: "bad step", CodeContextFull: "context full",
	CodeInternal: "internal error", CodeShutdown: "shutting down",
}

func (c ErrorCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint8(c))
}

var (
	// ErrBusy is wrapped by errors for a session the server refused for
	// lack of memory or session slots.
	ErrBusy = errors.New("server busy")
	// ErrDeadline is wrapped when a read or write on a stream did not
	// finish in time and the stream was reset (it is wire.ErrDeadline).
	ErrDeadline = wire.ErrDeadline
	// ErrClosed is returned by a closed Server or Session.
	ErrClosed = errors.New("closed")
	// ErrNoRoute is wrapped when a failed hop has no replacement left.
	ErrNoRoute = errors.New("no server left for the span")
	// ErrLeft is wrapped by the error of a hop whose server went away:
	// its stream or connection was closed or reset, it could not be
	// reached, or it is shutting down or no longer serves the model or
	// span its record named. That is no fault of the server's: a client
	// does not ban it, it only avoids it for a while (EventLeft).
	ErrLeft = errors.New("server left")
)

// left reports whether err says that a server went away (ErrLeft) rather
// than failed or misbehaved. A stream the client's own watchdog reset
// (ErrDeadline) is not a departure: a server that stalls is held against
// it, as are malformed answers and refusals of the request itself.
func left(err error) bool {
	switch {
	case err == nil || errors.Is(err, ErrDeadline) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrVerification):
		return false
	case errors.Is(err, ErrLeft):
		return true
	}
	if re := (*RemoteError)(nil); errors.As(err, &re) {
		return re.Code == CodeShutdown || re.Code == CodeUnknownModel || re.Code == CodeBadSpan
	}
	if de := (*lpswarm.DialError)(nil); errors.As(err, &de) {
		return true
	}
	for _, gone := range []error{network.ErrReset, network.ErrNoConn, network.ErrNoRemoteAddrs,
		lpswarm.ErrDialBackoff, lpswarm.ErrNoAddresses, lpswarm.ErrSwarmClosed,
		io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.EPIPE} {
		if errors.Is(err, gone) {
			return true
		}
	}
	return false
}

// markLeft wraps ErrLeft around err when it says the server went away.
func markLeft(err error) error {
	if left(err) && !errors.Is(err, ErrLeft) {
		return fmt.Errorf("%w: %w", ErrLeft, err)
	}
	return err
}

// RemoteError is an ERROR message received from a peer.
type RemoteError struct {
	Code    ErrorCode
	Step    uint64
	Message string
}

func (e *RemoteError) Error() string {
	if e.Step != 0 {
		return fmt.Sprintf("remote error (%s) at step %d: %s", e.Code, e.Step, e.Message)
	}
	return fmt.Sprintf("remote error (%s): %s", e.Code, e.Message)
}

// Is lets errors.Is match a busy refusal with ErrBusy.
func (e *RemoteError) Is(target error) bool {
	return target == ErrBusy && e.Code == CodeBusy
}
