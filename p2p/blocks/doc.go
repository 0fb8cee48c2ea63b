// Package blocks stores and moves content-addressed blocks between Mycel
// nodes. A block is a byte slice named by its CID (CIDv1, raw codec,
// sha2-256); large content is cut into ChunkSize (1 MiB) blocks by Split or
// Import, and whoever lists the CIDs in order (a model manifest, for
// instance) can get the content back from any peers that hold the blocks,
// checking every byte against its name.
//
// The package keeps the libraries it uses (boxo's bitswap and blockstore,
// go-ds-flatfs) behind two types of its own, so that they can be replaced
// without touching callers.
//
// # Store
//
// Store is a directory of files, one per block, sharded into subdirectories
// by the next-to-last two characters of the block's key (flatfs). A write
// goes to a temporary file that is renamed into place, so a block is either
// there whole or not at all. Store counts the bytes it holds (walking the
// directory once at open) and refuses, with ErrStoreFull, any write that
// would pass its cap; PutMany is all or nothing with respect to the cap.
//
// Reads trust nothing on disk: Get re-hashes every block, and a block whose
// bytes no longer match its CID (bit rot, a torn write after a crash, a
// tampered file) is deleted and reported as ErrCorrupt. Bitswap serves peers
// through the same path, so a node never sends a corrupt block.
//
// # Exchange
//
// Exchange runs bitswap 1.2 (BitswapProtocol) over the node's host with the
// Store as its blockstore. A Fetch opens one bitswap session for its CIDs:
// the session first asks the connected peers whether they have the blocks,
// and after ProviderSearchDelay also looks up providers on the DHT and dials
// them. Wants are then spread over every peer that has the blocks, so a
// large fetch pulls from many providers in parallel, and when a provider
// disconnects its wants move to the others. A received block is verified by
// bitswap itself (it derives the CID from the bytes, so a peer sending the
// wrong bytes sends an unwanted block, which is dropped), stored, announced
// to local bitswap so that peers waiting for it are served, and delivered.
//
// A peer that lies costs time, not correctness: its wrong bytes are dropped,
// bitswap takes its silence on the wanted block for a DONT_HAVE after a
// timeout (at most about 7 s), and a stuck session asks every connected peer
// and the DHT again every 5 s. Liars are not yet banned.
//
// Received blocks are written by a few writer goroutines beside the loop
// that takes them from bitswap, so that the network never waits on the disk.
//
// Every fetch ends: a CID for which no block arrives within the stall
// timeout fails with a NotFoundError ("not found in 30s"); the caller's
// context and Close end it early. A fetch asks for at most 256 CIDs at a
// time, below the 1024 wants a bitswap server keeps per peer.
//
// Provide announces CIDs on the DHT, retrying with backoff while the routing
// table is still empty. A session searches the DHT for providers of the
// first block it still wants and then asks the peers it found for all of
// them. So a publisher that provides only a few roots (a manifest, one block
// per tensor) keeps the DHT load small, and a fetcher then connects to the
// root's providers (FindProviders, then Connect on the host) before it
// fetches the blocks under it: connected peers are asked first.
package blocks
