// Package allreduce averages a vector among the members of a training
// group over libp2p streams (protocol /mycel/allreduce/2), every member
// that succeeds ending with bitwise the same weighted average.
//
// # The round
//
// The members of a Round agree on its ID, the member list and its order,
// the vector's length, how it is cut into parts (one per member), the
// encoding and the aggregation; a hash of these travels in every message,
// and a member whose hash differs is refused. Member i is the reducer of
// part i. Each member sends its slice of every other part to that part's
// reducer (CONTRIB with the slice's sum of squares, answered by READY,
// then the data in pieces of PieceValues), and the reducer, once every
// contribution has begun or at the reduce time (half way to the deadline
// by default), settles which it keeps (weights, sums of squares that are
// not finite, norms far above the median), then averages piece after
// piece as each is in from every kept contribution, in member order in
// float64 (weighted mean or coordinate-wise trimmed mean), encodes it and
// sends the same bytes back to every contributor at once (PIECE), so the
// all-gather overlaps the reduce-scatter; a PART seals the pieces. On the
// way it adds up each kept contribution's squares: one whose sum differs
// from what its sender stated, or that holds a value that is not finite,
// or that does not arrive, is refused or left out and the part computed
// again from the complete contributions (each judged on its data) and
// sent again. Every member decodes the same bytes, the reducer included,
// so the results agree to the bit. A member closes the stream once it holds the part;
// that clean end is the reducer's acknowledgement, and a reducer whose
// part no member took fails its round rather than keep a part the others
// may have recomputed without it.
//
// Each member sends (N−1)/N of the vector and receives as much back, the
// bandwidth-optimal amount of a butterfly (reduce-scatter then
// all-gather).
//
// # Recovery
//
// A reducer that cannot be reached, breaks its streams or stays silent
// past the recover time (70 % of the way by default) loses its part to a
// replacement: the members after it in member order, wrapping around,
// each in turn. Members ask the replacement for the part (RECOVER). The
// replacement asks every other member (FETCH) for a copy of the part or,
// lacking one, for its slice; a member that gives its slice gives the part
// over and refuses the original reducer's answer from then on. A copy
// wins; else the replacement recomputes the part from the slices, but
// only with slices from a majority of the members, so that members cut
// off from each other never each make their own. Two replacements that
// meet settle on the earlier one in candidate order.
//
// # Caller's duties
//
//   - Give every member the same Round but for Weight and Deadline, and a
//     round ID never used before with the same members.
//   - Keep the vector untouched while AllReduce runs; it is replaced by
//     the average only on success, and left as it was on error.
//   - Read Result.Dropped: a member left out of some part (absent, late,
//     refused) is listed there, and Rejected says why a refused one was.
//   - With Int8 or Q4, keep the quantization error if error feedback is
//     wanted: the bytes sent for a part are exactly that part's blocks of
//     Quantize over the whole vector.
//
// A Service answers the other members' requests for the rounds it runs
// and for a while after (Linger); Close stops it and every goroutine it
// started.
package allreduce
