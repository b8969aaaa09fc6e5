// Package sink holds the places a node writes its batches to: the embedded
// file sink (NDJSON segments under the data dir), an HTTP endpoint, and
// PostgreSQL. Every sink sits behind one interface, Sink.
package sink

import (
	"context"
	"errors"
)

// Batch is one flush of the batcher: complete JSON objects, one per record,
// each without a trailing newline. A sink must not keep Records or their
// bytes after Write returns; the node reuses them.
type Batch struct {
	Records [][]byte
	// Bytes is the sum of len(Records[i]).
	Bytes int
	// OnAttempt, when not nil, is told of every attempt the sink makes at
	// the batch as it ends, retries included (RetryPolicy calls it), from
	// the goroutine that called Write and before Write returns. The node
	// passes each attempt to its tuner, so that every controller sees each
	// answer of the downstream, not only the batch's final outcome.
	OnAttempt func(Attempt)
}

// Sink writes batches durably.
//
// Write is called concurrently from up to the node's flush concurrency
// goroutines; an implementation serialises what must be serialised. Write
// returns nil only once every record of the batch is durable (fsynced to disk,
// acknowledged by the remote end, committed): the node acknowledges its
// clients on that nil. On error, some, all or none of the batch may have been
// written; the node answers its clients with an error and they may retry, so
// a sink never retries forever. Write honours ctx's deadline and cancellation.
//
// Ready reports whether the sink can take writes now (for /readyz). Close is
// called once, after the last Write has returned.
type Sink interface {
	Write(ctx context.Context, b *Batch) error
	Ready(ctx context.Context) error
	Close() error
}

// ErrBackpressure marks an error caused by the downstream pushing back
// (HTTP 429 or 503, a timeout) rather than rejecting the data. Test with
// errors.Is. The tuner counts these as backpressure signals.
var ErrBackpressure = errors.New("downstream backpressure")

// ErrBatchTooLarge marks a batch the downstream refused for its size (HTTP
// 413): the downstream is well and the records are not at fault; a smaller
// batch would go through. The tuner shrinks on it; the breaker, which
// guards against a failing sink, does not count it.
var ErrBatchTooLarge = errors.New("batch too large for the downstream")

// ErrNoSpace marks a batch the file sink refused because its filesystem is
// (nearly) full: a write failed with ENOSPC or EDQUOT, or the batch would
// have taken the free space below the sink's floor. Nothing of the batch is
// kept. The sink takes batches again, by itself, once there is room.
var ErrNoSpace = errors.New("no space left on the sink's filesystem")

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("sink closed")
