//go:build race

package p2p

// raceEnabled is set under the race detector, which makes every node
// several times slower: scale tests look for races on fewer nodes.
const raceEnabled = true
