// Package train fine-tunes models: the job file that describes a run, the
// data sets it reads, the optimizer and its schedule, and the loop that
// runs forward, backward and update steps on one machine. The swarm's
// averaging builds on the same pieces.
//
// A job is deterministic: the same job file, seed, machine and thread count
// give bitwise the same parameters, which is what lets peers stay identical
// and lets any peer recompute another's work.
package train
