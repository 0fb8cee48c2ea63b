// Package swarm runs a model as a pipeline across peers: servers each hold
// a span of the transformer's layers, and a client drives generation
// through a route of them over the /mycel/infer/1 protocol
// (p2p.InferProtocol, specified byte by byte in docs/protocol.md).
//
// # The protocol in short
//
// A client opens one stream per hop and keeps a session on it. Every
// message is a frame: a uvarint length, a type byte and the body.
//
//	client                                   server
//	OPEN {model, span, max positions, dtype} →
//	                                         ← OK {session, span, limits} | ERROR
//	STEP {id, start, n, tensor [n, dim]}     →
//	                                         ← RESULT {id, tensor [n, dim]} | ERROR
//	… one STEP per prefill chunk or decoded token …
//	CLOSE                                    →
//
// Tensors are a header (dtype, shape) and raw little-endian bytes in the
// session's activation dtype (f32, f16 or bf16). Every length read from the
// network is bounded before anything is allocated: a frame by the largest
// step the session allows, a string by a fixed maximum, a tensor by the
// bytes its frame holds.
//
// # A session's life on the server
//
//  1. OPEN is checked (model, span within the layers served, positions,
//     dtype) and the session's memory, its KV cache for every position
//     plus step buffers, is reserved from the server's budget and the
//     peer's share of it. A request that does not fit is refused with
//     ERROR (code busy); the server goes on serving the others.
//  2. Each STEP is checked (shape [n, dim], dtype, 0 < n ≤ max step,
//     start ≤ positions held, start+n ≤ max positions) and handed to the
//     server's worker, the one goroutine that runs forward passes, so the
//     engine is never shared. Single-position steps of different sessions
//     (decode steps) run through the layers as one batch
//     (model.Engine.ForwardRows, MaxBatch rows at most), so that one read
//     of the weights serves all of them: the worker takes every step that
//     is waiting, then waits for the next step of each other session that
//     is decoding (sent a single-position step lately) and on its way back
//     (left this server at least half its usual round trip ago; one that
//     left more recently is ahead in the pipeline, not behind), and starts
//     the pass as soon as all of those are in, or after BatchWait (longer,
//     up to four times, while they are due later). It waits for nothing
//     when a step in hand spans several positions, or when its session's
//     next frame has already arrived (a replay). A lone session never
//     waits. A batched row may round differently from the same row run
//     alone where the backend's multi-row kernel does (the cpu backend's
//     Q4_0 kernels, and f32 from six rows on; its Q8_0 kernels give the
//     same bits). A step that fails its checks gets an ERROR and the
//     session stays open.
//  3. Step ids make retries safe. The KV cache of a session holds exactly
//     positions [0, start) before a step and [0, start+n) after it: a step
//     that starts below the positions held first truncates the cache to
//     its start, so no position is ever held twice. A repeat of the last
//     step (same id, start and n) is answered with the kept result without
//     running again; the same id with another start is an error.
//  4. The session ends with CLOSE, the end of the stream, a framing error,
//     IdleTimeout without a message, or a frame or write that outlives
//     IOTimeout (a stalled peer); its memory goes back to the budget.
//     Server.Close resets every stream and waits for every goroutine.
//     Server.Drain, before a Close, lets the clients go first: each
//     session's next STEP is answered with ERROR (shutting down), which a
//     client takes as the server's leaving and re-routes at once
//     (Serving.Suspend drains so, after withdrawing the record).
//
// # The client
//
// A Client holds the embedding and the output head. Session.Step embeds
// tokens, sends the hidden state through the hops in order and computes
// the logits of the last position; Session.Generate samples with
// model.Sampler as model.Engine.Generate does on one machine. A client
// runs many sessions at once (a node serving many requests); those that
// reach the output head together share one pass over its weights (the
// first waits up to ClientConfig.HeadWait for the others in a step).
// Each session may have its own listener (Client.OpenWithEvents).
//
// For every hop the session keeps the inputs it sent (the exact wire
// bytes). When a hop fails (a reset stream, a deadline, an ERROR or a
// malformed answer) the session marks the peer failed, takes a spare from
// ClientConfig.Alternatives with exactly that span or asks
// ClientConfig.Replan for a chain of hops covering it, replays the kept
// inputs step by step (pipelined: all STEPs are written while the results
// are read) so that each new server builds the same KV cache the old one
// had, and goes on with the step in flight. Steps are replayed as they
// were first sent, not merged, because a matrix kernel may round a batch
// of rows differently from single rows: so the output is the output
// without the failure (bit for bit, unless the server had batched the
// step with other sessions' in a kernel that rounds rows differently; see
// the server's section). Events (EventRoute, EventHopFailed,
// EventReroute and the others below) go to ClientConfig.OnEvent.
//
// Volunteers are strangers, so a failure is held against the server: a
// peer that fails a hop (deadline, ERROR, malformed answer), fails to
// take a hop's place, or is out-voted on its results is banned by the
// Client (EventBanned, Client.Ban, Client.Banned) for
// ClientConfig.BanDuration, across all its sessions. A server that went
// away (its stream or connection closed or reset, a dial that fails, a
// server shutting down or no longer serving the span: ErrLeft) is no
// liar: it is not banned but avoided for ClientConfig.LeftAvoid
// (Client.Excluded lists both), and its replacement is reported by one
// EventLeft instead of EventHopFailed and EventReroute. A banned peer is not
// opened (a route naming it is repaired at Open as if the hop had failed,
// or Open fails with an error wrapping ErrBanned that names it), banned
// alternatives are passed over, and Replan's exclude list holds the bans
// and the servers avoided as well as the session's own failures. A failure caused by the caller's
// context bans nobody, nor does a spare whose step limit is below the
// steps it would have to replay (it is only passed over).
//
// With ClientConfig.Verify each hop of the route gets a shadow: a second
// server of exactly its span, taken from the alternatives or from a
// single-hop answer of Replan, never the hop's own server or a banned or
// failed peer. Every step goes to both (both STEPs are written, then both
// RESULTs read, so the two compute at once) with the same id, start and
// n, and the two results are compared row by row: they agree when
// max|a-b| <= ClientConfig.VerifyTolerance × max(max|a|, max|b|, 1).
// DefaultVerifyTolerance, 1%, is far above what honest servers running
// the same kernels differ by in f32, f16 or bf16 and far below what a
// perturbed layer does; servers running other quantizations of the model
// need a larger one. The primary's result goes on, so an honest swarm
// gives exactly the output it gives without verification.
//
// When the two disagree (EventMismatch) the session replays the hop's
// kept inputs to a referee, a third server of the span, and to more if
// the referee agrees with neither; the servers that disagree with the
// majority are banned and dropped. (Servers that lie alike out-vote an
// honest one: verification catches a wrong server, not a coordinated
// majority.) If the primary lost, the agreeing shadow, whose cache is in
// step, becomes the primary and the referee its shadow; the hops after
// it, which were fed the loser's outputs, are fed the majority's again
// under new step ids (their servers recompute their caches from position
// 0) wherever the two differ beyond the tolerance. With no referee left
// the session ends with an error wrapping ErrVerification (and
// ErrNoRoute) that names both servers: the client cannot tell which one
// lies, and bans neither.
//
// A hop for which no shadow can be found runs unverified (EventUnverified
// says so and why) until a failover or a verdict gives it one: a shadow
// is sought at Open, after a failover and after a shadow is lost, not at
// every step. A failed shadow is dropped and replaced; a failed primary is
// replaced by its shadow, with nothing to replay; a new shadow joins
// after a replay of the hop's inputs, and its outputs are compared with
// the primary's (EventShadow). Shadows and referees added after Open
// count against ClientConfig.MaxReroutes.
//
// Every read and write on a stream has a deadline, enforced by a timer
// that resets the stream (libp2p's in-memory network ignores
// SetDeadline), so a silent peer cannot hold a goroutine.
//
// # Finding servers, choosing spans, planning routes
//
// A server announces a ServerRecord (model, span, measured throughput,
// free KV-cache room, state, expiry), sealed in a libp2p signed envelope.
// A Directory spreads and gathers records three ways: DHT providers of
// ServersKey(model), the model's gossipsub topic (TopicFor), and
// /mycel/servers/1, which asks a peer for the records it holds; every
// record is checked on arrival, and a record on the topic must be signed
// by the peer that published it. The machinery (envelopes, merging by
// sequence, expiry, the three paths) is p2p/records; the frames and
// tensors of /mycel/infer/1 are read and written with p2p/wire.
//
// Serve makes a node a volunteer: it reads the swarm's Coverage (each
// layer's summed throughput), takes the span ChooseSpan picks for the
// layers it can hold, loads and measures it, starts a Server and
// announces it; it re-announces before the record expires, and when the
// records change it asks Rebalance whether to move (hysteresis, never
// leaving a layer unserved), the servers that see the same gap electing
// one mover among them (Mover). Close withdraws the record first.
//
// Plan finds the fastest chain of hops over a span among the records
// (a shortest path over layer boundaries), and Planner.Replan serves as a
// client's ClientConfig.Replan; a missing layer is a NoRouteError that
// names it.
package swarm
