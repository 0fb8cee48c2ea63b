//go:build race

package main

// raceEnabled is set under the race detector: the command the tests run
// as a program is built with it too.
const raceEnabled = true
