package node

import (
	"context"
	"net/http"
)

// Receiver is the one way records enter a node. Every intake decodes what
// it reads into records, each one JSON object, and hands them to a
// Receiver; *Node is the Receiver the agent wires in. The intakes, each in
// its own package beside this one:
//
//   - node/logs: the native body formats of POST /v1/logs (NDJSON, JSON,
//     text), served by Node.IngestHandler;
//   - node/otlp: OTLP/HTTP logs on POST /v1/logs (a BodyIntake);
//   - node/bulk: the Elasticsearch bulk API on its own listener;
//   - node/syslog: syslog over TCP, UDP and TLS.
//
// Admission is decided here and nowhere else: whatever refuses records
// (a full queue, the breaker, draining) does so inside Ingest and Offer, so
// every intake is covered by the same rules.
//
// Concurrency: every method may be called from any number of goroutines at
// once (one per HTTP request or syslog connection). Records handed over
// belong to the Receiver from then on: the caller must not change their
// bytes, though they may share memory with a request body that the caller
// keeps alive until Ingest returns.
type Receiver interface {
	// Ingest queues recs as one request and returns once every record is
	// durably written (nil: acknowledge them all to the client), or with
	// the first error: ErrQueueFull at once when they do not fit (answer
	// 429 with Retry-After), ErrDraining or ErrBreakerOpen (answer 503),
	// sink.ErrBadRecord when the sink can never write one of them, or the
	// sink's error. On ctx's error some records may still be written later:
	// they must not be acknowledged, and the client retries (at-least-once).
	// An intake that cannot acknowledge per request does not call Ingest.
	Ingest(ctx context.Context, recs [][]byte, src Source) error
	// Offer queues one record that nobody waits on (syslog, which has no
	// acknowledgement). With block it waits for room until ctx ends, which
	// is how a stream's reader applies backpressure; without, it returns
	// ErrQueueFull at once and the record is counted as dropped.
	Offer(ctx context.Context, rec []byte, src Source, block bool) error
	// Rejected counts records or requests an intake refused before they
	// reached the node (malformed, too_large, unauthorized), by reason, in
	// batchpilot_records_rejected_total.
	Rejected(reason string, count int)
	// RetryAfter is the Retry-After, in whole seconds, to answer a request
	// refused with ErrQueueFull, ErrDraining or ErrBreakerOpen: the time
	// the node's queue takes to drain (admission.go), at least 1.
	RetryAfter() int
}

var _ Receiver = (*Node)(nil)

// BodyIntake is an HTTP intake that shares POST /v1/logs with the native
// formats (OTLP does). The node's handler reads the body once, bounded and
// gunzipped, and asks each BodyIntake in turn whether it claims it; the
// first that does answers the request.
//
// Claims and ServeBody are called concurrently, one call per request. The
// body slice is valid only until ServeBody returns: the records it hands to
// the Receiver must not share memory with it.
type BodyIntake interface {
	// Claims reports whether this intake decodes a body of this
	// Content-Type (as sent) that starts as body does.
	Claims(contentType string, body []byte) bool
	// ServeBody answers the request from its body; it reaches the node
	// only through a Receiver.
	ServeBody(w http.ResponseWriter, r *http.Request, body []byte)
}

// BodyErrorWriter is implemented by a BodyIntake that answers a request
// refused before its body could be read (over the size limit, an unknown
// Content-Encoding, a corrupt gzip stream) in its own format. WriteBodyError
// reports whether it answered: it does only for a Content-Type that is
// its own whatever the body.
type BodyErrorWriter interface {
	WriteBodyError(w http.ResponseWriter, r *http.Request, status int, msg string) bool
}
