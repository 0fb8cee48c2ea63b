// Package blocks stores and moves content-addressed blocks between Mycel
// nodes. A block is a byte slice named by its CID (CIDv1, raw codec,
// sha2-256); large content is cut into ChunkSize (1 MiB) blocks by Split or
// Import, and whoever lists the CIDs in order (a model manifest, for
// instance) can get the content back from any peers that hold the blocks,
// checking every byte against its name. Block is block.Block
// (checkpoints/shards/block), so layouts built on blocks take the store
// and the exchange through small interfaces of their own.
//
// The package keeps the libraries it uses (boxo's bitswap) behind types of
// its own, so that they can be replaced without touching callers.
//
// # Store
//
// Store keeps blocks in pack files under dir/packs: each block is a record
// (a small header with its multihash, its length and a CRC-32C of its
// data, then the data) appended to the current pack, and a new pack starts
// past 512 MiB. An index in memory, built at open by reading the record
// headers, says where each block is. Writes reserve their place in the pack
// and their bytes against the cap under a lock, then write in parallel;
// Store counts the bytes it holds and refuses, with ErrStoreFull, any write
// that would pass its cap; PutMany is all or nothing with respect to the
// cap. A delete flags the record in place; Sync then frees its disk space
// (punching a hole on Linux), and a pack whose blocks are all deleted is
// removed. Stores in the older one-file-per-block layout (flatfs) are moved
// into packs when opened.
//
// Every block is checked against its CID before it is written, and reads
// trust nothing on disk: Get checks the data it read against the CRC-32C
// written with it, and a block that fails (bit rot, a tampered file) is
// deleted and reported as ErrCorrupt. Both exchange protocols serve peers
// through the same path, so a node never sends a block the disk damaged,
// and the receiving peer checks every block against its CID anyway.
//
// Writes do not wait for the disk. Sync (and Close) flush the packs and
// record how far each is safe; after a crash, OpenStore re-checks every
// record written since the last Sync and drops those that are incomplete
// (a torn write, data that never reached the disk), so a block cut short
// never looks present. A damaged record header costs that record only:
// the scan finds the next valid header. SyncWrites makes every write wait
// for the disk instead.
//
// # Exchange
//
// Exchange moves blocks between nodes over two protocols. A Fetch first
// serves what the Store has, then asks the connected peers that speak
// BlocksProtocol (/mycel/blocks/1) for the rest, and gives what they did
// not deliver to bitswap 1.2 (BitswapProtocol), which also finds providers
// on the DHT. NoBulk turns the first protocol off.
//
// BlocksProtocol streams many blocks on one stream per peer: a request is
// an op (HAVE or GET) and up to 1024 CIDs, and the server answers each
// request in order on the same stream (a bitmap for HAVE; for GET, each
// block's length and bytes, or "missing"). A fetch asks up to 16 connected
// peers which CIDs they have (HAVE): first those its Session prefers (the
// providers the caller found, the peers that sent the session's earlier
// blocks), then those that sent blocks lately, then the others. Each is
// asked on a stream that the client keeps for later fetches, and a worker
// per peer starts as soon as its answer comes.
// The workers take batches of the CIDs their peer has from the front of a
// shared queue (16 per GET, fewer for small fetches, so that every peer
// gets a share) and keep two GETs outstanding, so that the peer always has
// the next request waiting when it finishes an answer; faster peers thus
// take more. A worker reads each block straight into the buffer that
// becomes Block.Data and hands it to the writers: goroutines beside the
// readers that hash the block against its CID (once; the Store then writes
// it without hashing again), store it, announce it to local bitswap so
// that peers waiting for it are served, and deliver it, so that reading a
// stream never waits on hashing or on the disk. A block that does not
// match its CID drops its peer from the fetch; a peer whose stream breaks,
// that sends nothing for the stall timeout (at most 10 s), or that sends a
// block slower than 64 KiB/s beyond it, is dropped too; either way the CIDs it still owed go back to the queue for the
// others. A worker whose peer has nothing queued waits while CIDs it has
// are still with other peers, in case they come back. When every worker is
// done, the CIDs not delivered go to bitswap, so a fetch keeps every
// guarantee below: stall timeout, NotFoundError, cancellation, ErrClosed.
// Session.Download is a fetch whose caller wants the blocks stored, not
// handed over (a model pull): its Results carry sizes, not data, so the
// block buffers are reused from one block to the next.
//
// The server reads blocks from the Store into a reused buffer (checked
// against their CRC-32C, never re-hashed) and writes through a buffered
// writer; it limits each peer to 8 streams, answers at most 16 requests at
// once over all peers (4 for one peer), and closes streams idle for 2
// minutes.
//
// Over bitswap, a Fetch opens one session for its CIDs: the session first
// asks the connected peers whether they have the blocks, and after
// ProviderSearchDelay also looks up providers on the DHT and dials them.
// Wants are then spread over every peer that has the blocks, so a large
// fetch pulls from many providers in parallel, and when a provider
// disconnects its wants move to the others. A received block is verified by
// bitswap itself (it derives the CID from the bytes, so a peer sending the
// wrong bytes sends an unwanted block, which is dropped), stored, announced
// to local bitswap so that peers waiting for it are served, and delivered.
//
// A peer that lies costs time, not correctness: over bitswap its wrong
// bytes are dropped, bitswap takes its silence on the wanted block for a
// DONT_HAVE after a timeout (at most about 7 s), and a stuck session asks
// every connected peer and the DHT again every 5 s. Liars are not yet
// banned beyond the fetch that caught them.
//
// Received blocks are written by a few writer goroutines beside the loop
// that takes them from bitswap, so that the network never waits on the disk.
// A Session runs several fetches in one bitswap session, so that the peers
// that had the first blocks (a manifest, say) are asked straight for the
// next ones. When serving, bitswap puts two 1 MiB blocks in a message,
// keeps up to 16 MiB on its way to each peer, and answers a want-have for a
// block of up to 32 KiB with the block itself (bitswap spaces its messages
// to a peer 20 ms apart, so every round trip saved on small blocks, like a
// manifest, counts).
//
// Every fetch ends: a CID for which no block arrives within the stall
// timeout fails with a NotFoundError ("not found in 30s"); the caller's
// context and Close end it early. A bitswap fetch asks for its CIDs in
// windows of 256, two windows at a time (so that one keeps the peers busy
// while the other drains), below the 1024 wants a bitswap server keeps per
// peer.
//
// Provide announces CIDs on the DHT, retrying with backoff while the routing
// table is still empty. A session searches the DHT for providers of the
// first block it still wants and then asks the peers it found for all of
// them. So a publisher that provides only a few roots (a manifest, one block
// per tensor) keeps the DHT load small, and a fetcher then connects to the
// root's providers (FindProviders, then Connect on the host) before it
// fetches the blocks under it: connected peers are asked first.
package blocks
