// Package node is the Mycel daemon: it wires a libp2p host with the DHT
// (package p2p), an on-disk block store and the bitswap exchange
// (p2p/blocks), and the model store (checkpoints), and serves a control API
// over HTTP on the loopback interface that the mycel command line uses.
//
// A Node owns everything it starts: New opens the stores and the host,
// Start joins the network and begins serving the API, and Close stops it all
// in reverse order. Client is the API's Go client.
package node
