// Package api is the node's control API as Go sees it: the request and
// answer types of every /api/v0 endpoint, their JSON shapes (which
// docs/protocol.md specifies), and Client, which calls a running node.
// It imports nothing of the daemon, so a program that only talks to a
// node (the mycel command line) needs no more than this package.
//
// The daemon answers through package node/server; errors keep their
// message end to end. A call the node answers with an error returns a
// *StatusError, which errors.Is matches against ErrBadRequest,
// ErrNotFound and ErrBusy by its status, the same sentinels the node's own
// functions wrap; a call nothing answers returns ErrNoNode.
package api
