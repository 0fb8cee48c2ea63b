// Package collab trains one job with other peers: each member trains its
// share, the group averages what they learned over the all-reduce
// (package train/allreduce), and every member ends each round with
// bitwise the same parameters.
//
// # Rounds and their members
//
// Members find each other through signed member records on the job's
// topic (a records.Directory over pubsub, the members protocol and the
// DHT), announced again every heartbeat: the round a member is ready for,
// the hash of its parameters, the newest checkpoint it serves. A round's
// members are the peers ready for it with the same parameters: the
// members of the last round (waited for at most ExpectWait), the peers
// that asked to join at this round (at most JoinWait), and, when others
// arrive, a set that has not changed for Settle. A try of a round that
// fails (the members disagreed on who takes part, a reducer vanished) is
// run again as the next attempt; members that see a higher attempt move
// to it.
//
// # Averaging
//
// Sync: every member computes the gradients of its share of the step's
// batch (train.Share, in member order), the group averages them weighted
// by trained tokens, with the loss riding along, and every member applies
// the same clipped AdamW update: the group trains as one machine with the
// whole batch (TestSyncFourPeersEqualOne).
//
// DiLoCo: InnerSteps local AdamW steps on the member's shares, then the
// change of the parameters is averaged and applied by an outer SGD step
// with Nesterov momentum (train.Outer). What travels may be int8 or 4-bit
// with error feedback: what quantisation drops this round is added to the
// next round's change.
//
// # Peers that fail, fall behind or lie
//
// A member that dies in the middle of a round is dropped from it by the
// all-reduce, and the others go on; it is left out until it announces
// anew. A contribution that is not finite or whose norm is far above the
// others' is refused: the group bans its sender for the rest of the job,
// and the sender's Run stops with ErrRefused. A member that finds others
// further on, or holding other parameters that more members hold, is
// behind: it asks to join; the members make a checkpoint at the start of
// the round they stand at (bitwise the same on all of them,
// so one CID) and wait for it; it fetches the checkpoint from all of them
// at once through the block exchange (States), checks it holds the
// parameters they announce, and takes part from that round on.
package collab
