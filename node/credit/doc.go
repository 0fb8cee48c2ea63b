// Package credit keeps a node's signed account of the work it did for
// others, so that the credit can be shown and checked by anyone.
//
// # Receipts for inference
//
// When a session a node served ends (CLOSE, the end of the stream, an
// idle timeout), the server signs a Receipt: server, client, model, span,
// session, the tokens it ran (the positions of every RESULT it sent),
// when, and its own sequence number. It sends it to the client over
// /mycel/credit/1 (p2p.CreditProtocol). The client checks the server's
// signature and the count against what it received from that session
// (Service.Used counts it as results arrive) and signs the same bytes
// back; a receipt that claims more than the client received is refused,
// with the client's count and why. The server records the receipt
// countersigned, refused, or unanswered (the client could not be reached
// or did not answer in time); the client records what it countersigned.
//
// # Receipts for training
//
// After each training round every member builds the same Round (the
// job, the round, the parameters' hash after it, the members and each
// one's share in examples), signs its bytes and sends the signature to
// the other members; each keeps the round with every member's
// signature. A round whose members do not all agree on the summary gets
// only the signatures of those that agree; it is recorded after
// Config.RoundWait with what came.
//
// # The ledger
//
// Ledger is an append-only file (LedgerFile in the node's data
// directory). Each record is a uvarint length L, L bytes (a version byte,
// a type byte, the body) and the CRC-32C of those bytes. A record cut
// short or failing its checksum at the end of the file, what a crash in
// the middle of a write leaves, is dropped with a warning at open; one
// damaged before the end refuses the file. Receipts and rounds older than
// the days kept (DefaultKeepDays), or past the records kept
// (DefaultMaxRecords), are folded into one unsigned Summary per day, kind,
// counterparty and model or job. Verify checks every signature of an
// exported ledger and names every record that does not hold.
//
// docs/protocol.md specifies the messages and the records byte by byte.
package credit
