// Package node is the Mycel daemon: it wires a libp2p host with the DHT
// (package p2p), an on-disk block store and the block exchange
// (p2p/blocks), the stores of models (checkpoints/shards) and data sets
// (checkpoints/datasets), the swarm's directory, servers and clients
// (package swarm), and serves the HTTP APIs: on the loopback interface by
// default, and elsewhere only to requests that carry its API token.
//
// The node is split the way its requests travel:
//
//   - node/api: the control API's request and answer types and the Go
//     client (api.Client) that the mycel command line uses; it imports
//     nothing of the daemon.
//   - node/server: the HTTP handlers of the control API, over the
//     server.Backend interface that a Node implements, and the Guard in
//     front of both APIs (Host, Origin and token checks).
//   - node/openai: the OpenAI-compatible API, over openai.Backend (a Node
//     again) and the openai.Completer of each model: a LocalModel, or a
//     SwarmModel that generates through the swarm.
//   - node (this package): the wiring and lifecycle (node.go), the model
//     store (models.go), data sets (data.go), store GC (gc.go), the swarm
//     front end (swarm.go), the models the OpenAI API runs
//     (completers.go, local.go), and what the node tells of itself: the
//     last log records (logs.go) and its metrics for Prometheus at
//     /metrics, on a registry of its own (metrics.go).
//   - node/work: when the node works (a work.State, suspended for
//     reasons such as a pause, idle-only, the weekly schedule or the
//     day's transfer); work.go drives it and carries it out.
//
// A Node owns everything it starts: New opens the stores and the host,
// Start joins the network and begins serving the APIs, and Close stops it
// all in reverse order.
package node
