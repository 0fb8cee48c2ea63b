// Package jobs publishes fine-tuning jobs to the swarm: a researcher
// submits a job, volunteers' nodes learn of it and train it, and the job
// outlives its submitter's presence on the network.
//
// # A job
//
// A Job is a job file (TOML, train.ParseJob) whose model and data are
// CIDs, with the time it was created, sealed by its submitter into a
// libp2p signed envelope (domain JobDomain, payload type JobCodec). Its
// ID is derived from the submitter (the signing key), the creation time
// and the job file (IDOf), never read from the wire, so a job relayed by
// anyone is still its submitter's, and no one else can speak for it. The
// submitter stops a job by sealing it again with Stopped set: the same ID,
// a stopped version. Sealed by another key, the same fields make another
// job.
//
// # The directory
//
// A Directory spreads jobs as each node's record on one topic (namespace
// /mycel/train/jobs/, topic "all") through package p2p/records: pubsub,
// the DHT key of the topic and the pull protocol p2p.JobsProtocol. A
// node's record is the list of sealed jobs it carries (Carry): the ones it
// submitted and the ones it trains, at most MaxCarried in at most
// MaxRecordBytes. A record whose jobs do not all open is refused whole.
// Jobs lists every job of every valid record, one version per ID, a
// stopped one winning; a node that hears a stopped version of a job it
// carries carries that instead, so the stop spreads with the job.
//
// The caller's duties: Carry the jobs it submits and those it trains, Drop
// those it no longer wants to keep alive, Lookup when it starts (pubsub
// brings what changes after), and Close the directory.
package jobs
