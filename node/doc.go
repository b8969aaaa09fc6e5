// Package node is one node's data plane: ingest (every intake hands its
// records to one Receiver, see intake.go) into a bounded queue, a batcher
// that flushes at the current batch size or after the maximum linger,
// processors that enrich each record, and a sink, with end-to-end
// acknowledgements: a client hears "accepted" only once every record of its
// request is durable.
//
// The package knows nothing of Raft or memberlist: the cluster caps the batch
// size through SetGrant and reads the node's health through Health.
package node
